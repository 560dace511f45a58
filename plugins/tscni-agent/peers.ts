import type { IpFdb, IpNeigh, IpRoute, LinkOp } from "../../lib/kernel/link.ts";
import { maskOf, parseCIDR, parseIP } from "../../lib/ip/address.ts";
import type { Peer } from "./lease.ts";
import { subnetCidr } from "./network.ts";

/**
 * The kernel objects the agent owns for its peers, as plain data, and the diff that turns "what
 * should be" and "what is" into link ops. Pure: the same diff serves the start-up reconcile (what
 * is = the kernel's dump) and a watch event (what is = what that one lease had programmed), so an
 * event costs a few ops whatever the number of peers.
 */
export type PeerObject =
  | { kind: "neigh"; dev: string; ip: string; mac: string }
  | { kind: "fdb"; dev: string; mac: string; dst: string }
  | { kind: "route"; dst: string; dev: string; via: string; onlink: boolean };

/** How this node reaches its peers. */
export interface Routing {
  backend: "vxlan" | "host-gw";
  /** `flannel.<VNI>` (vxlan backend). */
  vxlanDev?: string;
  /** The underlay device and its IPv4 prefixes (CIDRs): a peer whose PublicIP is in one is on our L2. */
  underlay: string;
  underlayNets: readonly string[];
  /** vxlan's DirectRouting: peers on our L2 get a plain route via their PublicIP. */
  directRouting: boolean;
  /** The cluster Network and SubnetLen: which underlay routes are ours to remove. */
  network: string;
  subnetLen: number;
}

const inside = (cidr: string, ip: string) => {
  const c = parseCIDR(cidr);
  const a = parseIP(ip);
  if (!c || !a || c.ip.family !== a.family) return false;
  const m = maskOf(a.family, c.prefix);
  return (c.ip.n & m) === (a.n & m);
};

/** Whether the peer's PublicIP is on one of the underlay's own prefixes (no router in between). */
export const onOurL2 = (r: Routing, publicIp: string) => r.underlayNets.some((n) => inside(n, publicIp));

/**
 * A peer's objects: a direct route via its PublicIP (host-gw, or DirectRouting on our L2), else the
 * vxlan trio. A host-gw peer off our L2 gets nothing: no gateway could reach it.
 */
export function objectsOf(r: Routing, p: Peer): PeerObject[] {
  const dst = subnetCidr(p.subnet);
  if ((r.backend === "host-gw" || r.directRouting) && onOurL2(r, p.publicIp))
    return [{ kind: "route", dst, dev: r.underlay, via: p.publicIp, onlink: false }];
  if (r.backend === "host-gw" || !r.vxlanDev || !p.vtepMac) return [];
  const dev = r.vxlanDev;
  return [
    { kind: "neigh", dev, ip: p.subnet.addr, mac: p.vtepMac },
    { kind: "fdb", dev, mac: p.vtepMac, dst: p.publicIp },
    { kind: "route", dst, dev, via: p.subnet.addr, onlink: true },
  ];
}

/** What names an object in the kernel: a second object with the same key replaces it (FDB: adds). */
export const keyOf = (o: PeerObject) =>
  o.kind === "neigh" ? `n ${o.dev} ${o.ip}` : o.kind === "fdb" ? `f ${o.dev} ${o.mac} ${o.dst}` : `r ${o.dst}`;

const contentOf = (o: PeerObject) =>
  o.kind === "neigh" ? o.mac : o.kind === "fdb" ? "" : `${o.dev} ${o.via} ${o.onlink}`;
const same = (a: PeerObject, b: PeerObject) => keyOf(a) === keyOf(b) && contentOf(a) === contentOf(b);

/**
 * desired vs present → what to delete and what to put. An object whose key is still wanted is not
 * deleted (the put replaces it in place, so a route or neighbour never goes missing meanwhile)
 * unless another present object already is the wanted one.
 */
export function diff(
  desired: readonly PeerObject[],
  present: readonly PeerObject[],
): { del: PeerObject[]; put: PeerObject[] } {
  const want = new Map(desired.map((d) => [keyOf(d), d]));
  const wanted = (p: PeerObject) => want.get(keyOf(p));
  const satisfied = new Set(present.filter((p) => wanted(p) !== undefined && same(p, wanted(p)!)).map(keyOf));
  const del = present.filter((p) => {
    const w = wanted(p);
    return !w || (!same(p, w) && satisfied.has(keyOf(p)));
  });
  const put = [...want.values()].filter((d) => !satisfied.has(keyOf(d)));
  return { del, put };
}

/**
 * The ops of a diff in an order that batches: route deletions and neighbour deletions (ip), FDB
 * deletions and puts (bridge), neighbour and route puts (ip), so one diff is at most three tool
 * runs; routes go first out and last in, so the kernel never routes to a missing neighbour.
 */
export function opsOf({ del, put }: { del: readonly PeerObject[]; put: readonly PeerObject[] }): LinkOp[] {
  const of = <K extends PeerObject["kind"]>(list: readonly PeerObject[], kind: K) =>
    list.filter((o): o is Extract<PeerObject, { kind: K }> => o.kind === kind);
  return [
    ...of(del, "route").map((o): LinkOp => ({ op: "route", verb: "del", dst: o.dst, dev: o.dev })),
    ...of(del, "neigh").map((o): LinkOp => ({ op: "neigh", verb: "del", dev: o.dev, ip: o.ip })),
    ...of(del, "fdb").map((o): LinkOp => ({ op: "fdb", verb: "del", dev: o.dev, mac: o.mac, dst: o.dst })),
    ...of(put, "fdb").map((o): LinkOp => ({ op: "fdb", verb: "replace", dev: o.dev, mac: o.mac, dst: o.dst })),
    ...of(put, "neigh").map(
      (o): LinkOp => ({ op: "neigh", verb: "replace", dev: o.dev, ip: o.ip, lladdr: o.mac, permanent: true }),
    ),
    ...of(put, "route").map(
      (o): LinkOp => ({
        op: "route",
        verb: "replace",
        dst: o.dst,
        via: o.via,
        dev: o.dev,
        ...(o.onlink && { onlink: true }),
      }),
    ),
  ];
}

/** The objects of ours in the kernel's dumps: everything on the vxlan device, and underlay routes to node subnets. */
export function presentObjects(
  r: Routing,
  routes: readonly IpRoute[],
  neighs: readonly IpNeigh[],
  fdbs: readonly IpFdb[],
): PeerObject[] {
  const out: PeerObject[] = [];
  const nodeSubnet = (dst: string) => {
    const c = parseCIDR(dst);
    return c?.prefix === r.subnetLen && inside(r.network, dst.split("/")[0]!);
  };
  for (const rt of routes) {
    if ((rt.table !== undefined && rt.table !== "main") || (rt.type !== undefined && rt.type !== "unicast")) continue;
    // A multipath route has no dev: never one of ours.
    const dev = rt.dev;
    if (dev === undefined) continue;
    if (dev === r.vxlanDev || (dev === r.underlay && rt.gateway !== undefined && nodeSubnet(rt.dst)))
      out.push({
        kind: "route",
        dst: rt.dst,
        dev,
        via: rt.gateway ?? "",
        onlink: rt.flags?.includes("onlink") ?? false,
      });
  }
  if (r.vxlanDev) {
    const dev = r.vxlanDev;
    for (const n of neighs) out.push({ kind: "neigh", dev, ip: n.dst, mac: n.lladdr?.toLowerCase() ?? "" });
    for (const f of fdbs) out.push({ kind: "fdb", dev, mac: f.mac.toLowerCase(), dst: f.dst ?? "" });
  }
  return out;
}
