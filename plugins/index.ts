import type { PluginSpec } from "../lib/cni/skel.ts";

/**
 * Every plugin of the multicall executable, by the name the runtime calls it (the link's name).
 * Implementations load lazily so VERSION and the "about" text pay for none of them.
 */
export const PLUGINS: Record<string, PluginSpec> = {
  loopback: { name: "loopback", load: async () => (await import("./loopback.ts")).default },
  "host-local": { name: "host-local", load: async () => (await import("./host-local.ts")).default },
  bridge: { name: "bridge", load: async () => (await import("./bridge.ts")).default },
  portmap: { name: "portmap", load: async () => (await import("./portmap.ts")).default },
  firewall: { name: "firewall", versions: ["0.4.0", "1.0.0", "1.1.0"], load: async () => (await import("./firewall.ts")).default },
  tuning: { name: "tuning", load: async () => (await import("./tuning.ts")).default },
};
