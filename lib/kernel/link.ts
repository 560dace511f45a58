import { splitJsonArrays, tryIpBatch, type BatchOutcome } from "./batch.ts";
import { checkBatchWord, ipBatch, ipJson, runAsync, type RunOptions } from "./exec.ts";

/** The subset of `ip -j -d addr show` output the suite reads: the one shape of a link everywhere. */
export interface IpLink {
  ifindex: number;
  ifname: string;
  flags: string[];
  mtu: number;
  address?: string;
  master?: string;
  link_type?: string;
  /** A veth's peer ifindex (in the namespace link_netnsid names). */
  link_index?: number;
  operstate?: string;
  promiscuity?: number;
  linkinfo?: { info_kind?: string; info_slave_kind?: string; info_data?: { vlan_default_pvid?: number } };
  addr_info?: { family: "inet" | "inet6"; local: string; prefixlen: number; scope?: string }[];
}

export const isBridge = (l: IpLink) => l.linkinfo?.info_kind === "bridge";

type NsOpts = Pick<RunOptions, "netns">;

/** Runs link changes then reads the link back, all in one `ip` process; throws on a failure. */
export function changeAndShow(changes: readonly LinkOp[], dev: string, opts: NsOpts = {}): IpLink | undefined {
  const out = ipBatch([...changes, { op: "show", dev } as const].map(lineOf), { ...opts, json: true }).stdout;
  const parsed = splitJsonArrays(out).flat() as IpLink[];
  return parsed.find((l) => l.ifname === dev);
}

/** Details of one link, or undefined when it does not exist. */
export function showLink(dev: string, opts: NsOpts = {}): IpLink | undefined {
  const links = ipJson<IpLink[]>(["-d", "addr", "show", "dev", dev], { ...opts, allowFailure: true });
  return links.find((l) => l.ifname === dev);
}

/**
 * Changes to links, addresses, routes and neighbours as data: what a plugin asks for, whatever
 * carries it out. Today one `ip -batch` process per list (`lineOf` renders them); the plugins do
 * not see that, so the carrier can become netlink without touching them. Results report the index
 * of the failing op, which is how callers tell "created, must roll back" from "name taken".
 */
export type LinkOp =
  | {
      op: "link-set";
      dev: string;
      up?: boolean;
      mtu?: number;
      mac?: string;
      /** A bridge to enslave to, or null to release from its master. */
      master?: string | null;
      promisc?: boolean;
    }
  | { op: "link-del"; dev: string }
  | { op: "addr"; verb: "add" | "del" | "replace"; dev: string; cidr: string; flags?: readonly string[] }
  | { op: "route"; verb: "append" | "replace" | "del"; dst: string; dev: string; via?: string; metric?: number }
  | { op: "neigh"; verb: "replace" | "del"; dev: string; ip: string; lladdr?: string; permanent?: boolean }
  | { op: "show"; dev: string };

/** The iproute2 batch line of one op. */
export function lineOf(o: LinkOp): string[] {
  switch (o.op) {
    case "link-set":
      return [
        "link",
        "set",
        o.dev,
        ...(o.mac !== undefined ? ["address", o.mac] : []),
        ...(o.mtu !== undefined ? ["mtu", String(o.mtu)] : []),
        ...(o.master === null ? ["nomaster"] : o.master !== undefined ? ["master", o.master] : []),
        ...(o.promisc !== undefined ? ["promisc", o.promisc ? "on" : "off"] : []),
        ...(o.up !== undefined ? [o.up ? "up" : "down"] : []),
      ];
    case "link-del":
      return ["link", "del", o.dev];
    case "addr":
      return ["addr", o.verb, o.cidr, ...(o.flags ?? []), "dev", o.dev];
    case "route":
      return [
        "route",
        o.verb,
        o.dst,
        ...(o.via ? ["via", o.via] : []),
        "dev",
        o.dev,
        ...(o.metric !== undefined ? ["metric", String(o.metric)] : []),
      ];
    case "neigh":
      return [
        "neigh",
        o.verb,
        o.ip,
        ...(o.lladdr ? ["lladdr", o.lladdr] : []),
        ...(o.permanent ? ["nud", "permanent"] : []),
        "dev",
        o.dev,
      ];
    case "show":
      return ["addr", "show", "dev", o.dev];
  }
}

export interface LinkOutcome extends Omit<BatchOutcome, "failedLine" | "shown"> {
  /** What the show ops reported, in order. */
  shown: IpLink[];
  /** Index of the op that failed, when known. */
  failedOp?: number;
}

/** Applies the ops in order, in one process, stopping at the first failure (which it reports). */
export function applyLinkOps(ops: readonly LinkOp[], opts: NsOpts = {}): LinkOutcome {
  const r = tryIpBatch(ops.map(lineOf), { ...opts, json: ops.some((o) => o.op === "show") });
  return { ok: r.ok, groups: r.groups, shown: r.shown as IpLink[], failedOp: r.failedLine, stderr: r.stderr };
}

/** The same without blocking the caller's event loop (for the node agent). */
export async function applyLinkOpsAsync(ops: readonly LinkOp[], opts: NsOpts = {}): Promise<LinkOutcome> {
  const lines = ops.map(lineOf);
  for (const l of lines) for (const w of l) checkBatchWord(w, "ip");
  const json = ops.some((o) => o.op === "show");
  const r = await runAsync(["ip", ...(json ? ["-j", "-d"] : []), "-batch", "-"], {
    ...opts,
    input: `${lines.map((l) => l.join(" ")).join("\n")}\n`,
    allowFailure: true,
  });
  const m = /Command failed -:(\d+)/.exec(r.stderr);
  const groups = json ? splitJsonArrays(r.stdout) : [];
  return {
    ok: r.status === 0,
    groups,
    shown: groups.flat() as IpLink[],
    failedOp: m ? Number(m[1]) - 1 : undefined,
    stderr: r.stderr.replace(/\n?Command failed -:\d+\s*$/, "").trim(),
  };
}
