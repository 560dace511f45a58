import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { BIN, REF_BIN, type Sandbox, cniEnv } from "./sandbox.ts";
import { runPlugin, type PluginRun } from "./plugin-run.ts";

/**
 * Pieces for the macvlan, ipvlan and vlan tests: an L2 segment (a veth pair whose one end is the
 * master, in the node or in a container, and whose other end is eth0 of an "external host"
 * namespace), configurations, calls of ours or the reference plugin, and what a container holds.
 */
export const ours = (type: string) => join(BIN, type);
export const reference = (type: string) => join(REF_BIN, type);

export const SUBNET = "192.0.2.0/24";
export const EXT_ADDR = "192.0.2.2";

export interface Segment {
  /** The external host's namespace (its eth0 is on the master's L2). */
  ext: string;
  master: string;
}

/**
 * A master interface `master` in `ns` (the node by default) whose veth peer is eth0 of a new external
 * host with `extAddr` (none when "").
 */
export function addSegment(
  sb: Sandbox,
  opts: { master?: string; ns?: string; extAddr?: string; mtu?: number } = {},
): Segment {
  const master = opts.master ?? "mv0";
  const ns = opts.ns ?? sb.node;
  const ext = sb.addNamespace("ext");
  const mtu = opts.mtu ? ["mtu", String(opts.mtu)] : [];
  sb.inNs(ns, ["ip", "link", "add", master, ...mtu, "type", "veth", "peer", "name", "eth0", ...mtu, "netns", ext]);
  sb.inNs(ns, ["ip", "link", "set", master, "up"]);
  sb.inNs(ext, ["ip", "link", "set", "lo", "up"]);
  sb.inNs(ext, ["ip", "link", "set", "eth0", "up"]);
  if (opts.extAddr !== "") sb.inNs(ext, ["ip", "addr", "add", `${opts.extAddr ?? EXT_ADDR}/24`, "dev", "eth0"]);
  return { ext, master };
}

export function ipamOf(sb: Sandbox, extra: Record<string, unknown> = {}) {
  return {
    type: "host-local",
    dataDir: join(sb.tmp, "ipam"),
    subnet: SUBNET,
    rangeStart: "192.0.2.10",
    rangeEnd: "192.0.2.50",
    ...extra,
  };
}

export function conf(sb: Sandbox, type: string, extra: Record<string, unknown> = {}, ipam: unknown = ipamOf(sb)) {
  return {
    cniVersion: "1.0.0",
    name: `${type}net`,
    type,
    ...(ipam ? { ipam } : {}),
    ...extra,
  };
}

export interface Call {
  netns: string;
  id?: string;
  ifname?: string;
  args?: string;
}

export function cni(sb: Sandbox, bin: string, command: string, c: Call, config: unknown): PluginRun {
  return runPlugin(
    sb,
    bin,
    cniEnv(command, {
      CNI_CONTAINERID: c.id ?? "ctr1",
      CNI_IFNAME: c.ifname ?? "eth0",
      CNI_NETNS: c.netns,
      ...(c.args ? { CNI_ARGS: c.args } : {}),
    }),
    config,
  );
}

export function ok(r: PluginRun, what: string): any {
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}): ${r.stdout}${r.stderr}`);
  return r.json;
}

export interface LinkJson {
  ifname: string;
  ifindex: number;
  mtu: number;
  address: string;
  flags: string[];
  link?: string;
  link_index?: number;
  promiscuity?: number;
  linkinfo?: { info_kind?: string; info_data?: Record<string, unknown> };
  addr_info?: { family: string; local: string; prefixlen: number }[];
}

export const linksIn = (sb: Sandbox, ns: string): LinkJson[] =>
  JSON.parse(sb.inNs(ns, ["ip", "-d", "-j", "addr", "show"]).stdout) as LinkJson[];

export const linkIn = (sb: Sandbox, ns: string, name: string): LinkJson | undefined =>
  linksIn(sb, ns).find((l) => l.ifname === name);

export const linkNames = (sb: Sandbox, ns: string): string[] =>
  linksIn(sb, ns)
    .map((l) => l.ifname)
    .sort();

export const addressOf = (l: LinkJson | undefined) => l?.addr_info?.find((a) => a.family === "inet")?.local;

/** IPs host-local holds for `network`. */
export function reservations(sb: Sandbox, network: string): string[] {
  const dir = join(sb.tmp, "ipam", network);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f !== "lock" && !f.startsWith("last_reserved_ip"))
    .sort();
}

/** One ICMP echo (busybox ping), a few tries while neighbours resolve. */
export function ping(sb: Sandbox, ns: string, addr: string, tries = 3): boolean {
  for (let i = 0; i < tries; i++) {
    if (sb.inNs(ns, ["busybox", "ping", "-c", "1", "-W", "1", addr], { allowFailure: true }).code === 0) return true;
  }
  return false;
}

/** The MAC `ns` has learnt for `addr`, if any. */
export function neighbourMac(sb: Sandbox, ns: string, addr: string): string | undefined {
  const entries = JSON.parse(sb.inNs(ns, ["ip", "-j", "neigh", "show", addr]).stdout) as { lladdr?: string }[];
  return entries[0]?.lladdr;
}
