import { KernelError } from "./errors.ts";
import { checkBatchWord, run, runAsync, type RunOptions, type RunResult } from "./exec.ts";

/**
 * Links, addresses, routes, neighbours and bridge ports as typed operations and typed reports: what
 * a plugin asks of the kernel, whatever carries it out. Today the carrier is iproute2 (`ip -batch`,
 * and `bridge -batch` for port VLANs and FDB entries), one process per run of same-tool ops, or an
 * installed in-process carrier (rtnetlink, lib/kernel/netlink) for the ops it takes; the plugins
 * see only these types and cannot tell which carried them. An outcome
 * names the index of the failing op, which is how callers tell "created, must roll back" from "name
 * taken".
 */

// --- what the kernel reports ----------------------------------------------------------------------

export interface IpAddr {
  family: "inet" | "inet6";
  local: string;
  prefixlen: number;
  scope?: string;
  tentative?: boolean;
  dadfailed?: boolean;
}

/** A link as `ip -j -d addr show` reports it: the one shape of a link everywhere. */
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
  txqlen?: number;
  /** The parent's ifindex (macvlan, ipvlan, vlan; in the namespace link_netnsid names). */
  link?: string;
  link_netnsid?: number;
  /** The link's alias (IFLA_IFALIAS); host-device keeps a moved device's own name there. */
  ifalias?: string;
  linkinfo?: {
    info_kind?: string;
    info_slave_kind?: string;
    info_data?: {
      vlan_default_pvid?: number;
      /** macvlan and ipvlan mode ("bridge", "l2", ...). */
      mode?: string;
      /** A vlan's or vxlan's id. */
      id?: number;
      bcqueuelen?: number;
      /** vxlan: source address, underlay device, UDP port, MAC learning. */
      local?: string;
      link?: string;
      port?: number;
      learning?: boolean;
      /** A tun/tap device's type ("tap" or "tun") and queue mode. */
      type?: string;
      multi_queue?: boolean;
      /** A vrf's routing table. */
      table?: number;
    };
  };
  addr_info?: IpAddr[];
}

/** A route as `ip -j route show` reports it ("default", or a prefix without length for a host). */
export interface IpRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  table?: string;
  metric?: number;
  /** "unicast", "local", "broadcast", ... */
  type?: string;
  scope?: string;
  prefsrc?: string;
  /** e.g. "onlink". */
  flags?: string[];
  /** Who made it: "kernel" for the routes of an address, "boot" for ip's, ... (ip prints it with -d). */
  protocol?: string;
  /** A multipath (ECMP) route's nexthops; such a route has no dev or gateway of its own. */
  nexthops?: { gateway?: string; dev?: string; weight?: number }[];
}

/** A policy routing rule as `ip -j rule show` reports it (the table by name or number). */
export interface IpRule {
  priority: number;
  /** An address or "all"; srclen is absent for a full-length source. */
  src: string;
  srclen?: number;
  table: string;
}

/** A neighbour as `ip -j neigh show dev D` reports it (no dev field: the dump names the device). */
export interface IpNeigh {
  dst: string;
  lladdr?: string;
  state?: string[];
}

/** A forwarding entry as `bridge -j fdb show dev D` reports it. */
export interface IpFdb {
  mac: string;
  dst?: string;
  flags?: string[];
  state?: string;
}

export const isBridge = (l: IpLink) => l.linkinfo?.info_kind === "bridge";

// --- what a plugin asks for -----------------------------------------------------------------------

/** The kind of a new link and what only that kind takes. */
export type LinkKind =
  | { type: "veth"; peer: { name: string; mtu?: number; mac?: string; netns?: string } }
  | { type: "bridge"; vlanFiltering?: boolean }
  | {
      type: "macvlan";
      parent: string;
      mode: "bridge" | "private" | "vepa" | "passthru" | "source";
      /** Requested length of the broadcast/multicast queue (shared by the parent's macvlans). */
      bcqueuelen?: number;
    }
  | { type: "ipvlan"; parent: string; mode: "l2" | "l3" | "l3s"; flag?: "bridge" | "private" | "vepa" }
  | { type: "vlan"; parent: string; id: number }
  | { type: "vxlan"; id: number; local?: string; parent?: string; port?: number; learning?: boolean; gbp?: boolean }
  | { type: "dummy" }
  | { type: "ifb" }
  /** An L3 master device whose slaves' routes live in `table`. */
  | { type: "vrf"; table: number };

export type LinkOp =
  | {
      op: "link-add";
      dev: string;
      kind: LinkKind;
      mtu?: number;
      mac?: string;
      /** Created directly in this namespace (a path works where ip takes a netns). */
      netns?: string;
    }
  | {
      op: "link-set";
      dev: string;
      up?: boolean;
      mtu?: number;
      mac?: string;
      /** A master (bridge, vrf) to enslave to, or null to release from its master. */
      master?: string | null;
      promisc?: boolean;
      allmulti?: boolean;
      txqlen?: number;
      /** Moves the link to this namespace (a path works). */
      netns?: string;
      /** Renames the link (with netns: its name there). */
      name?: string;
      /** Sets the link's alias, or with null clears it. */
      alias?: string | null;
    }
  | { op: "link-del"; dev: string }
  /**
   * A persistent tap device (`ip tuntap add`): `user`/`group` may open it without CAP_NET_ADMIN,
   * `multiQueue` lets the opener attach several queues, `vnetHdr` gives frames the virtio header.
   * Created down, without packet information (ip's default).
   */
  | { op: "tuntap-add"; dev: string; multiQueue?: boolean; vnetHdr?: boolean; user?: number; group?: number }
  /** A bridge port's own settings, each set explicitly either way. */
  | { op: "port-set"; dev: string; hairpin: boolean; isolated: boolean }
  | {
      op: "addr";
      verb: "add" | "del" | "replace";
      dev: string;
      cidr: string;
      /** IPv4: the subnet broadcast, as netlink's AddrAdd computes it. */
      broadcast?: boolean;
      /** IPv6: no duplicate address detection. */
      nodad?: boolean;
    }
  | {
      op: "route";
      verb: "append" | "replace" | "del";
      dst: string;
      dev: string;
      via?: string;
      metric?: number;
      table?: number;
      scope?: number;
      onlink?: boolean;
      /** Preferred source address. */
      src?: string;
    }
  | { op: "neigh"; verb: "replace" | "del"; dev: string; ip: string; lladdr?: string; permanent?: boolean }
  /** A VLAN of a bridge port (`bridge vlan ... master`). */
  | { op: "port-vlan"; verb: "add" | "del"; dev: string; vid: number; pvid?: boolean; untagged?: boolean }
  /** A policy routing rule: traffic from `src` (a CIDR) looks up `table`. */
  | { op: "rule"; verb: "add" | "del"; src: string; table: number; priority?: number }
  /** A permanent forwarding entry of a VXLAN device (`bridge fdb ... self permanent`). */
  | { op: "fdb"; verb: "append" | "replace" | "del"; dev: string; mac: string; dst?: string }
  // Reports, in op order in the outcome's groups:
  /** One link with its addresses (IpLink[]; a missing link fails the op). */
  | { op: "show"; dev: string }
  /** Every port of a bridge (IpLink[]). */
  | { op: "ports"; master: string }
  /** Every link of the namespace (IpLink[]). */
  | { op: "links" }
  /** Every route of one family in every table (IpRoute[]). */
  | { op: "routes"; family: 4 | 6 }
  /** Every policy routing rule of one family (IpRule[]). */
  | { op: "rules"; family: 4 | 6 }
  /** The neighbours of one device (IpNeigh[]), so the node agent can diff them against its peers. */
  | { op: "neighs"; dev: string }
  /** The forwarding entries of one device (IpFdb[]). */
  | { op: "fdbs"; dev: string };

export type LinkSet = Extract<LinkOp, { op: "link-set" }>;

const REPORTS = new Set<LinkOp["op"]>(["show", "ports", "links", "routes", "rules", "neighs", "fdbs"]);
const BRIDGE_TOOL = new Set<LinkOp["op"]>(["port-vlan", "fdb", "fdbs"]);

const onOff = (b: boolean) => (b ? "on" : "off");
const opt = (cond: unknown, ...words: string[]) => (cond ? words : []);
const num = (key: string, n: number | undefined) => (n !== undefined ? [key, String(n)] : []);

function kindWords(k: LinkKind): string[] {
  switch (k.type) {
    case "veth":
      return [
        "peer",
        "name",
        k.peer.name,
        ...num("mtu", k.peer.mtu),
        ...opt(k.peer.mac, "address", k.peer.mac!),
        ...opt(k.peer.netns, "netns", k.peer.netns!),
      ];
    case "bridge":
      return opt(k.vlanFiltering, "vlan_filtering", "1");
    case "macvlan":
      return ["mode", k.mode, ...num("bcqueuelen", k.bcqueuelen)];
    case "ipvlan":
      return ["mode", k.mode, ...opt(k.flag, k.flag!)];
    case "vlan":
      return ["id", String(k.id)];
    case "vxlan":
      return [
        "id",
        String(k.id),
        ...opt(k.local, "local", k.local!),
        ...opt(k.parent, "dev", k.parent!),
        ...num("dstport", k.port),
        ...(k.learning === false ? ["nolearning"] : []),
        ...opt(k.gbp, "gbp"),
      ];
    case "vrf":
      return ["table", String(k.table)];
    case "dummy":
    case "ifb":
      return [];
  }
}

const parentOf = (k: LinkKind) => ("parent" in k && k.type !== "vxlan" ? k.parent : undefined);

/** How a batch line spells an empty argument (ip's parser reads `""` as one); only lineOf writes it. */
const EMPTY_WORD = '""';

/** The iproute2 batch line of one op (for `ip`, or `bridge` for port-vlan and fdb). */
export function lineOf(o: LinkOp): string[] {
  switch (o.op) {
    case "link-add":
      return [
        "link",
        "add",
        o.dev,
        ...opt(parentOf(o.kind), "link", parentOf(o.kind)!),
        ...num("mtu", o.mtu),
        ...opt(o.mac, "address", o.mac!),
        ...opt(o.netns, "netns", o.netns!),
        "type",
        o.kind.type,
        ...kindWords(o.kind),
      ];
    case "link-set":
      return [
        "link",
        "set",
        o.dev,
        ...opt(o.netns, "netns", o.netns!),
        ...opt(o.name, "name", o.name!),
        ...(o.alias === null ? ["alias", EMPTY_WORD] : opt(o.alias, "alias", o.alias!)),
        ...opt(o.mac !== undefined, "address", o.mac!),
        ...num("mtu", o.mtu),
        ...(o.master === null ? ["nomaster"] : opt(o.master !== undefined, "master", o.master!)),
        ...opt(o.promisc !== undefined, "promisc", onOff(o.promisc!)),
        ...opt(o.allmulti !== undefined, "allmulticast", onOff(o.allmulti!)),
        ...num("txqueuelen", o.txqlen),
        ...opt(o.up !== undefined, o.up ? "up" : "down"),
      ];
    case "link-del":
      return ["link", "del", o.dev];
    case "tuntap-add":
      return [
        "tuntap",
        "add",
        "dev",
        o.dev,
        "mode",
        "tap",
        ...opt(o.multiQueue, "multi_queue"),
        ...opt(o.vnetHdr, "vnet_hdr"),
        ...num("user", o.user),
        ...num("group", o.group),
      ];
    case "port-set":
      return ["link", "set", o.dev, "type", "bridge_slave", "hairpin", onOff(o.hairpin), "isolated", onOff(o.isolated)];
    case "addr":
      return ["addr", o.verb, o.cidr, ...opt(o.broadcast, "brd", "+"), ...opt(o.nodad, "nodad"), "dev", o.dev];
    case "route":
      return [
        "route",
        o.verb,
        o.dst,
        ...opt(o.via, "via", o.via!),
        "dev",
        o.dev,
        ...num("metric", o.metric),
        ...num("table", o.table),
        ...num("scope", o.scope),
        ...opt(o.onlink, "onlink"),
        ...opt(o.src, "src", o.src!),
      ];
    case "neigh":
      return [
        "neigh",
        o.verb,
        o.ip,
        ...opt(o.lladdr, "lladdr", o.lladdr!),
        ...opt(o.permanent, "nud", "permanent"),
        "dev",
        o.dev,
      ];
    case "port-vlan":
      return [
        "vlan",
        o.verb,
        "dev",
        o.dev,
        "vid",
        String(o.vid),
        ...opt(o.pvid, "pvid"),
        ...opt(o.untagged, "untagged"),
        "master",
      ];
    case "rule":
      return ["rule", o.verb, ...num("priority", o.priority), "from", o.src, "lookup", String(o.table)];
    case "fdb":
      return ["fdb", o.verb, o.mac, "dev", o.dev, ...opt(o.dst, "dst", o.dst!), "self", "permanent"];
    case "show":
      return ["addr", "show", "dev", o.dev];
    case "ports":
      return ["link", "show", "master", o.master];
    case "links":
      return ["link", "show"];
    case "routes":
      return ["route", "show", "table", "all", "root", o.family === 4 ? "0.0.0.0/0" : "::/0"];
    case "rules":
      return ["rule", "show"];
    case "neighs":
      return ["neigh", "show", "dev", o.dev];
    case "fdbs":
      return ["fdb", "show", "dev", o.dev];
  }
}

// --- carrying it out ------------------------------------------------------------------------------

export interface LinkOutcome {
  ok: boolean;
  /** What each report op printed, one array per report op, in op order. */
  groups: unknown[][];
  /** Every link the report ops printed. */
  shown: IpLink[];
  /** Index of the op that failed, when known. */
  failedOp?: number;
  stderr: string;
}

type NsOpts = Pick<RunOptions, "netns" | "execLabel">;

// --- the carrier seam -----------------------------------------------------------------------------

/** What a carrier other than iproute2 gives back for a run of ops it took. */
export interface CarrierRun {
  /** One array per report op, in op order. */
  groups: unknown[][];
  /** The op that failed (its index in the run) and what ip would have printed for it. */
  failed?: { index: number; stderr: string };
}

/**
 * Another way to carry ops out: lib/kernel/netlink (rtnetlink from inside the process), installed
 * by the skel under Bun. It takes every op it `carries`, in runs of consecutive ones; the rest, and
 * everything under plain Node, go to iproute2 as before. A carrier must do and report exactly what
 * ip would for the ops it takes, failures included.
 */
export interface LinkCarrier {
  carries(o: LinkOp): boolean;
  /** Runs the ops in order, stopping at the first failure; throws only when it cannot run at all. */
  apply(ops: readonly LinkOp[], opts: NsOpts): CarrierRun;
}

let carrier: LinkCarrier | undefined;

/** Installs (or with undefined removes) the in-process carrier. */
export function setLinkCarrier(c: LinkCarrier | undefined) {
  carrier = c;
}

/** One tool process (argv, input), or one run of the installed carrier (ops): consecutive ops. */
interface Batch {
  argv: string[];
  input: string;
  first: number;
  reports: boolean;
  ops?: readonly LinkOp[];
}

/**
 * What runs an op: the in-process carrier when it takes it, else `bridge`, or `ip`, or `ip -6` for
 * the IPv6 rule dump (a batch line cannot choose its family, and `rule show` lists IPv4 only).
 */
type Tool = "carrier" | "bridge" | "ip" | "ip -6";
const toolOf = (o: LinkOp): Tool =>
  carrier?.carries(o)
    ? "carrier"
    : BRIDGE_TOOL.has(o.op)
      ? "bridge"
      : o.op === "rules" && o.family === 6
        ? "ip -6"
        : "ip";

/** The one empty word a line may hold: the value of a cleared alias, which no input can spell. */
const isClearedAlias = (o: LinkOp, line: string[], n: number) =>
  o.op === "link-set" && o.alias === null && line[n] === EMPTY_WORD && line[n - 1] === "alias";

function batchesOf(ops: readonly LinkOp[]): Batch[] {
  const out: Batch[] = [];
  let i = 0;
  while (i < ops.length) {
    const tool = toolOf(ops[i]!);
    const [bin, ...family] = (tool === "carrier" ? "ip" : tool).split(" ") as ["ip" | "bridge", ...string[]];
    const first = i;
    const lines: string[][] = [];
    let reports = false;
    for (; i < ops.length && toolOf(ops[i]!) === tool; i++) {
      // Checked whatever the carrier: the same op is refused the same way everywhere.
      const line = lineOf(ops[i]!);
      for (const [n, w] of line.entries()) if (!isClearedAlias(ops[i]!, line, n)) checkBatchWord(w, bin);
      lines.push(line);
      reports ||= REPORTS.has(ops[i]!.op);
    }
    if (tool === "carrier") {
      out.push({ argv: [], input: "", first, reports, ops: ops.slice(first, i) });
      continue;
    }
    const flags = reports ? ["-j", "-d"] : [];
    out.push({
      argv: [bin, ...family, ...flags, "-batch", "-"],
      input: `${lines.map((l) => l.join(" ")).join("\n")}\n`,
      first,
      reports,
    });
  }
  return out;
}

function absorbGroups(outcome: LinkOutcome, groups: unknown[][]) {
  outcome.groups.push(...groups);
  for (const g of groups)
    for (const item of g) if ((item as IpLink).ifname !== undefined) outcome.shown.push(item as IpLink);
}

/** Folds one batch's result into the outcome; false when the batch failed (later ones must not run). */
function absorb(outcome: LinkOutcome, b: Batch, r: RunResult): boolean {
  if (b.reports) absorbGroups(outcome, splitJsonArrays(r.stdout));
  if (r.status === 0) return true;
  const m = /Command failed -:(\d+)/.exec(r.stderr);
  outcome.ok = false;
  outcome.failedOp = m ? b.first + Number(m[1]) - 1 : undefined;
  outcome.stderr = r.stderr.replace(/\n?Command failed -:\d+\s*$/, "").trim() || `${b.argv[0]} exited ${r.status}`;
  return false;
}

/** The same for a carrier's run. */
function absorbCarrier(outcome: LinkOutcome, b: Batch, opts: NsOpts): boolean {
  const r = carrier!.apply(b.ops!, opts);
  absorbGroups(outcome, r.groups);
  if (!r.failed) return true;
  outcome.ok = false;
  outcome.failedOp = b.first + r.failed.index;
  outcome.stderr = r.failed.stderr;
  return false;
}

const emptyOutcome = (): LinkOutcome => ({ ok: true, groups: [], shown: [], stderr: "" });

/** Applies the ops in order, stopping at the first failure (which it reports); never throws for one. */
export function applyLinkOps(ops: readonly LinkOp[], opts: NsOpts = {}): LinkOutcome {
  const outcome = emptyOutcome();
  for (const b of batchesOf(ops)) {
    const ok = b.ops
      ? absorbCarrier(outcome, b, opts)
      : absorb(outcome, b, run(b.argv, { ...opts, input: b.input, allowFailure: true }));
    if (!ok) break;
  }
  return outcome;
}

/** The same without blocking the caller's event loop (for the node agent); a carrier's run is synchronous. */
export async function applyLinkOpsAsync(ops: readonly LinkOp[], opts: NsOpts = {}): Promise<LinkOutcome> {
  const outcome = emptyOutcome();
  for (const b of batchesOf(ops)) {
    const ok = b.ops
      ? absorbCarrier(outcome, b, opts)
      : absorb(outcome, b, await runAsync(b.argv, { ...opts, input: b.input, allowFailure: true }));
    if (!ok) break;
  }
  return outcome;
}

/** The ops whose failure is an error: a KernelError naming the failing op's line. */
export function mustApplyLinkOps(ops: readonly LinkOp[], opts: NsOpts = {}): LinkOutcome {
  const r = applyLinkOps(ops, opts);
  if (!r.ok) {
    const line = r.failedOp === undefined ? undefined : lineOf(ops[r.failedOp]!).join(" ");
    throw new KernelError("failed", `${line ?? "ip"}: ${r.stderr}`, { line: r.failedOp, stderr: r.stderr });
  }
  return r;
}

/** Runs link changes then reads the link back, in one process; throws on a failure. */
export function changeAndShow(changes: readonly LinkOp[], dev: string, opts: NsOpts = {}): IpLink | undefined {
  return mustApplyLinkOps([...changes, { op: "show", dev }], opts).shown.find((l) => l.ifname === dev);
}

/** One link with its addresses, or undefined when it does not exist. */
export function showLink(dev: string, opts: NsOpts = {}): IpLink | undefined {
  return applyLinkOps([{ op: "show", dev }], opts).shown.find((l) => l.ifname === dev);
}

/** Every link of the namespace. */
export function listLinks(opts: NsOpts = {}): IpLink[] {
  return mustApplyLinkOps([{ op: "links" }], opts).shown;
}

/** `ip -j -batch` prints one JSON array per show command, back to back. */
export function splitJsonArrays(out: string): unknown[][] {
  const groups: unknown[][] = [];
  let depth = 0;
  let start = -1;
  let inString = false;
  for (let i = 0; i < out.length; i++) {
    const c = out[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === "[" || c === "{") {
      if (depth++ === 0) start = i;
    } else if (c === "]" || c === "}") {
      if (--depth === 0) {
        const v = JSON.parse(out.slice(start, i + 1)) as unknown;
        groups.push(Array.isArray(v) ? (v as unknown[]) : [v]);
      }
    }
  }
  return groups;
}
