import type { PluginSpec } from "../lib/cni/skel.ts";

/**
 * Everything the multicall executable can be, by the name it is started under (a link's name):
 * CNI plugins, run through the CNI contract, and commands with a command line of their own. The
 * build links one name per entry. Implementations load lazily, so VERSION and the "about" text pay
 * for none of them.
 */
export interface PluginEntry extends PluginSpec {
  kind: "plugin";
  /** Commands of the same name's command line (`dhcp daemon`), run instead of the CNI contract. */
  subcommands?: Record<string, (args: string[]) => Promise<number>>;
}

export interface CommandEntry {
  kind: "command";
  name: string;
  /** Runs the command with its arguments; resolves to the exit status. */
  run(args: string[]): Promise<number>;
}

export type RegistryEntry = PluginEntry | CommandEntry;

const plugin = (name: string, load: PluginSpec["load"], versions?: readonly string[]): PluginEntry => ({
  kind: "plugin",
  name,
  load,
  versions,
});

export const REGISTRY: readonly RegistryEntry[] = [
  plugin("loopback", async () => (await import("./loopback/index.ts")).default),
  plugin("host-local", async () => (await import("./host-local/index.ts")).default),
  plugin("static", async () => (await import("./static/index.ts")).default),
  plugin("bridge", async () => (await import("./bridge/index.ts")).default),
  plugin("portmap", async () => (await import("./portmap/index.ts")).default),
  plugin("firewall", async () => (await import("./firewall/index.ts")).default, ["0.4.0", "1.0.0", "1.1.0"]),
  plugin("tuning", async () => (await import("./tuning/index.ts")).default),
  plugin("macvlan", async () => (await import("./macvlan/index.ts")).default),
  plugin("ipvlan", async () => (await import("./ipvlan/index.ts")).default),
  plugin("vlan", async () => (await import("./vlan/index.ts")).default),
  plugin("dummy", async () => (await import("./dummy/index.ts")).default),
  plugin("tap", async () => (await import("./tap/index.ts")).default),
  plugin("ptp", async () => (await import("./ptp/index.ts")).default),
  plugin("host-device", async () => (await import("./host-device/index.ts")).default),
  plugin("sbr", async () => (await import("./sbr/index.ts")).default),
  plugin("vrf", async () => (await import("./vrf/index.ts")).default, ["0.3.1", "0.4.0", "1.0.0", "1.1.0"]),
  plugin("bandwidth", async () => (await import("./bandwidth/index.ts")).default, [
    "0.3.0",
    "0.3.1",
    "0.4.0",
    "1.0.0",
    "1.1.0",
  ]),
  plugin("dnsname", async () => (await import("./dnsname/index.ts")).default),
  plugin("flannel", async () => (await import("./flannel/index.ts")).default),
  {
    ...plugin("dhcp", async () => (await import("./dhcp/index.ts")).default),
    subcommands: { daemon: async (args) => (await import("./dhcp/daemon.ts")).daemon(args) },
  },
  { kind: "command", name: "cnitool", run: async (args) => (await import("./cnitool/index.ts")).cnitool(args) },
  { kind: "command", name: "tscni-agent", run: async (args) => (await import("./tscni-agent/index.ts")).agent(args) },
];

export const findEntry = (name: string): RegistryEntry | undefined => REGISTRY.find((e) => e.name === name);

/** A CNI plugin of this executable by type (delegation runs it in-process). */
export function findPlugin(type: string): PluginEntry | undefined {
  const e = findEntry(type);
  return e?.kind === "plugin" ? e : undefined;
}

export const PLUGIN_NAMES: readonly string[] = REGISTRY.filter((e) => e.kind === "plugin").map((e) => e.name);
