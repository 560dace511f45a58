import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { BIN, REF_BIN, cniEnv, type Sandbox } from "./sandbox.ts";
import { runPlugin, startPlugin, type PluginRun } from "./plugin-run.ts";

/** Ours and the reference Go plugin, run the same way inside the sandbox's node namespace. */
export const OURS = join(BIN, "host-local");
export const REF = join(REF_BIN, "host-local");

export type Outcome = PluginRun;

/** One network of host-local in a sandbox: its config, its store directory and ways to call plugins on it. */
export class IpamNet {
  readonly dataDir: string;
  readonly netns: string;

  constructor(
    readonly sb: Sandbox,
    readonly name = "hlnet",
    readonly ipam: Record<string, unknown> = { ranges: [[{ subnet: "10.77.0.0/24" }], [{ subnet: "fd00:77::/64" }]] },
    readonly extra: Record<string, unknown> = {},
  ) {
    this.dataDir = join(sb.tmp, "networks");
    this.netns = sb.addContainer().path;
  }

  get dir() {
    return join(this.dataDir, this.name);
  }

  config(overrides: { ipam?: Record<string, unknown>; extra?: Record<string, unknown>; cniVersion?: string } = {}) {
    return {
      cniVersion: overrides.cniVersion ?? "1.1.0",
      name: this.name,
      type: "host-local",
      ipam: { type: "host-local", dataDir: this.dataDir, ...this.ipam, ...overrides.ipam },
      ...this.extra,
      ...overrides.extra,
    };
  }

  env(command: string, id: string, more: Record<string, string> = {}) {
    return { ...cniEnv(command, { CNI_CONTAINERID: id, CNI_NETNS: this.netns }), ...more };
  }

  run(
    bin: string,
    command: string,
    id: string,
    config: unknown = this.config(),
    more: Record<string, string> = {},
  ): Outcome {
    return runPlugin(this.sb, bin, this.env(command, id, more), config);
  }

  /** Starts a plugin without waiting; `kill` is there for the crash tests. */
  start(bin: string, command: string, id: string, config: unknown = this.config()) {
    return startPlugin(this.sb, bin, this.env(command, id), config);
  }

  runAsync(bin: string, command: string, id: string, config: unknown = this.config()): Promise<Outcome> {
    return this.start(bin, command, id, config).done;
  }

  /** Every reservation file: address -> exact content. */
  reservations(): Map<string, string> {
    const out = new Map<string, string>();
    if (!existsSync(this.dir)) return out;
    for (const name of readdirSync(this.dir).sort()) {
      if (name === "lock" || name.startsWith("last_reserved_ip.")) continue;
      out.set(name, readFileSync(join(this.dir, name), "latin1"));
    }
    return out;
  }

  /** Addresses whose file names this attachment as owner. */
  addressesOf(id: string, ifname = "eth0"): string[] {
    return [...this.reservations()].filter(([, c]) => c === `${id}\r\n${ifname}`).map(([n]) => n);
  }
}

export const addresses = (o: Outcome): string[] => (o.json?.ips ?? []).map((ip: { address: string }) => ip.address);
