import {
  applyLinkOpsAsync,
  type IpFdb,
  type IpLink,
  type IpNeigh,
  type IpRoute,
  type LinkOp,
} from "../../lib/kernel/link.ts";
import type { Peer } from "./lease.ts";
import { type Subnet, subnetCidr } from "./network.ts";

/** The underlay: where VXLAN packets leave, and the address peers send to. */
export interface Underlay {
  dev: string;
  publicIp: string;
  mtu: number;
}

const ask = async (ops: LinkOp[]) => {
  const r = await applyLinkOpsAsync(ops);
  if (!r.ok) throw new Error(r.stderr);
  return r;
};

/** The underlay from --iface, --public-ip, or the default route's device. */
export async function findUnderlay(iface?: string, publicIp?: string): Promise<Underlay> {
  const r = await ask([{ op: "links" }, { op: "routes", family: 4 }]);
  const names = r.shown.map((l) => l.ifname);
  const all = (await ask(names.map((dev) => ({ op: "show" as const, dev })))).shown;
  const v4 = (l: IpLink) => (l.addr_info ?? []).filter((a) => a.family === "inet").map((a) => a.local);
  let link: IpLink | undefined;
  if (iface) link = all.find((l) => l.ifname === iface);
  else if (publicIp) link = all.find((l) => v4(l).includes(publicIp));
  else {
    const routes = (r.groups[1] ?? []) as IpRoute[];
    const dflt = routes.find((rt) => rt.dst === "default" && (rt.table === undefined || rt.table === "main"));
    link = dflt?.dev ? all.find((l) => l.ifname === dflt.dev) : undefined;
    if (!link) throw new Error("no default route: name the underlay with --iface or --public-ip");
  }
  if (!link) throw new Error(iface ? `interface ${iface} not found` : `no interface has address ${publicIp}`);
  const ip = publicIp ?? v4(link)[0];
  if (!ip) throw new Error(`interface ${link.ifname} has no IPv4 address`);
  return { dev: link.ifname, publicIp: ip, mtu: link.mtu };
}

export const deviceName = (vni: number) => `flannel.${vni}`;

/**
 * Creates `flannel.<VNI>` (learning off, local = PublicIP, on the underlay) or keeps the one there:
 * a kept device keeps its MAC, so our lease's VtepMAC and the peers' FDB entries stay valid.
 * Address `<subnet network address>/32`: a source for host-to-remote-pod traffic, no subnet route.
 */
export async function ensureDevice(
  vni: number,
  port: number,
  under: Underlay,
  mtu: number,
  subnet?: Subnet,
): Promise<{ dev: string; mac: string }> {
  const dev = deviceName(vni);
  const shown = await applyLinkOpsAsync([{ op: "show", dev }]);
  const have = shown.shown.find((l) => l.ifname === dev);
  const ops: LinkOp[] = [];
  if (have && have.linkinfo?.info_kind !== "vxlan") ops.push({ op: "link-del", dev });
  if (have?.linkinfo?.info_kind !== "vxlan")
    ops.push({
      op: "link-add",
      dev,
      kind: { type: "vxlan", id: vni, local: under.publicIp, parent: under.dev, port, learning: false },
      mtu,
    });
  ops.push({ op: "link-set", dev, mtu, up: true });
  if (subnet) ops.push({ op: "addr", verb: "replace", dev, cidr: `${subnet.addr}/32` });
  ops.push({ op: "show", dev });
  const r = await ask(ops);
  const link = r.shown.find((l) => l.ifname === dev);
  // Addresses of an older subnet (the config changed) would be wrong sources: dropped.
  const stale = subnet ? (link?.addr_info ?? []).filter((a) => a.family === "inet" && a.local !== subnet.addr) : [];
  if (stale.length > 0)
    await applyLinkOpsAsync(stale.map((a) => ({ op: "addr", verb: "del", dev, cidr: `${a.local}/${a.prefixlen}` })));
  return { dev, mac: link!.address! };
}

export const deviceExists = async (dev: string) => (await applyLinkOpsAsync([{ op: "show", dev }])).ok;

/** A peer's three objects, route last so the kernel never has to resolve the gateway. */
export const peerOps = (dev: string, p: Peer): LinkOp[] => [
  { op: "neigh", verb: "replace", dev, ip: p.subnet.addr, lladdr: p.vtepMac, permanent: true },
  { op: "fdb", verb: "replace", dev, mac: p.vtepMac, dst: p.publicIp },
  { op: "route", verb: "replace", dst: subnetCidr(p.subnet), via: p.subnet.addr, dev, onlink: true },
];

/**
 * Makes the device's routes, neighbours and FDB entries exactly the peers' (flannel leaves those of
 * peers that vanished while it was down, its issue 2554): what matches no lease, or a lease whose
 * MAC or address changed, is deleted, then every peer's objects are (re)placed. Idempotent.
 */
export async function reconcile(dev: string, peers: readonly Peer[], log: (m: string) => void): Promise<void> {
  const r = await ask([
    { op: "routes", family: 4 },
    { op: "neighs", dev },
    { op: "fdbs", dev },
  ]);
  const routes = ((r.groups[0] ?? []) as IpRoute[]).filter((rt) => rt.dev === dev);
  const neighs = (r.groups[1] ?? []) as IpNeigh[];
  const fdbs = (r.groups[2] ?? []) as IpFdb[];
  const bySubnet = new Map(peers.map((p) => [subnetCidr(p.subnet), p]));
  const byAddr = new Map(peers.map((p) => [p.subnet.addr, p]));
  const byMac = new Map(peers.map((p) => [p.vtepMac, p]));
  const stale: LinkOp[] = [];
  for (const rt of routes) {
    const p = bySubnet.get(rt.dst);
    if (!p || rt.gateway !== p.subnet.addr) stale.push({ op: "route", verb: "del", dst: rt.dst, dev });
  }
  for (const n of neighs) {
    const p = byAddr.get(n.dst);
    if (!p || n.lladdr?.toLowerCase() !== p.vtepMac) stale.push({ op: "neigh", verb: "del", dev, ip: n.dst });
  }
  for (const f of fdbs) {
    const p = byMac.get(f.mac.toLowerCase());
    if (!p || f.dst !== p.publicIp) stale.push({ op: "fdb", verb: "del", dev, mac: f.mac, dst: f.dst });
  }
  // One op at a time: a stale entry another deletion already took must not stop the rest.
  for (const o of stale) {
    const res = await applyLinkOpsAsync([o]);
    if (res.ok)
      log(
        `removed stale ${o.op} ${"dst" in o && o.op === "route" ? o.dst : "ip" in o ? o.ip : o.op === "fdb" ? o.mac : ""}`,
      );
  }
  if (peers.length > 0) await ask(peers.flatMap((p) => peerOps(dev, p)));
}
