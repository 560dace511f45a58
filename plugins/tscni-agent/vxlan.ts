import {
  applyLinkOpsAsync,
  type IpFdb,
  type IpLink,
  type IpNeigh,
  type IpRoute,
  type LinkOp,
  lineOf,
} from "../../lib/kernel/link.ts";
import { diff, opsOf, type PeerObject, presentObjects, type Routing } from "./peers.ts";
import type { Subnet } from "./network.ts";

/** The underlay: where VXLAN packets leave, and the address peers send to. */
export interface Underlay {
  dev: string;
  publicIp: string;
  mtu: number;
  /** Its IPv4 prefixes (CIDRs): who is on our L2, for host-gw and DirectRouting. */
  nets: string[];
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
  const v4 = (l: IpLink) => (l.addr_info ?? []).filter((a) => a.family === "inet");
  let link: IpLink | undefined;
  if (iface) link = all.find((l) => l.ifname === iface);
  else if (publicIp) link = all.find((l) => v4(l).some((a) => a.local === publicIp));
  else {
    const routes = (r.groups[1] ?? []) as IpRoute[];
    const dflt = routes.find((rt) => rt.dst === "default" && (rt.table === undefined || rt.table === "main"));
    link = dflt?.dev ? all.find((l) => l.ifname === dflt.dev) : undefined;
    if (!link) throw new Error("no default route: name the underlay with --iface or --public-ip");
  }
  if (!link) throw new Error(iface ? `interface ${iface} not found` : `no interface has address ${publicIp}`);
  const ip = publicIp ?? v4(link)[0]?.local;
  if (!ip) throw new Error(`interface ${link.ifname} has no IPv4 address`);
  const nets = v4(link).map((a) => `${a.local}/${a.prefixlen}`);
  return { dev: link.ifname, publicIp: ip, mtu: link.mtu, nets };
}

export const deviceName = (vni: number) => `flannel.${vni}`;

/** Whether a device there can be kept: a vxlan with our VNI, source, underlay, port and no learning. */
const compatible = (l: IpLink, vni: number, port: number, under: Underlay) => {
  const d = l.linkinfo?.info_data;
  return (
    l.linkinfo?.info_kind === "vxlan" &&
    d?.id === vni &&
    d.local === under.publicIp &&
    (d.link === undefined || d.link === under.dev) &&
    d.port === port &&
    d.learning === false
  );
};

/**
 * Creates `flannel.<VNI>` (learning off, local = PublicIP, on the underlay) or keeps the one there:
 * a kept device keeps its MAC, so our lease's VtepMAC and the peers' FDB entries stay valid. One
 * that no longer fits (the node's address changed) is recreated with the same MAC, for the same
 * reason. Address `<subnet network address>/32`: a source for host-to-remote-pod traffic, no subnet route.
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
  const keep = have !== undefined && compatible(have, vni, port, under);
  const ops: LinkOp[] = [];
  if (have && !keep) ops.push({ op: "link-del", dev });
  if (!keep)
    ops.push({
      op: "link-add",
      dev,
      kind: { type: "vxlan", id: vni, local: under.publicIp, parent: under.dev, port, learning: false },
      mtu,
      mac: have?.linkinfo?.info_kind === "vxlan" ? have.address : undefined,
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

const describe = (o: LinkOp) => lineOf(o).join(" ");

/**
 * Runs a diff's ops, a few tool runs whatever their number. A deletion the kernel refuses (the
 * object was already gone) is skipped and the run goes on after it; a failed put is an error.
 */
export async function applyPeerOps(ops: readonly LinkOp[], log: (m: string) => void): Promise<void> {
  let rest = ops;
  while (rest.length > 0) {
    const r = await applyLinkOpsAsync(rest);
    if (r.ok) return;
    const bad = r.failedOp === undefined ? undefined : rest[r.failedOp];
    if (!bad || !("verb" in bad) || bad.verb !== "del") throw new Error(`${bad ? describe(bad) : "ip"}: ${r.stderr}`);
    log(`${describe(bad)}: ${r.stderr} (already gone)`);
    rest = rest.slice(r.failedOp! + 1);
  }
}

/**
 * Makes our routes, neighbours and FDB entries exactly `desired` (flannel leaves those of peers
 * that vanished while it was down, its issue 2554): a dump, a diff, and the ops of the diff.
 */
export async function reconcile(r: Routing, desired: readonly PeerObject[], log: (m: string) => void): Promise<void> {
  const dumps: LinkOp[] = [{ op: "routes", family: 4 }];
  if (r.vxlanDev) dumps.push({ op: "neighs", dev: r.vxlanDev }, { op: "fdbs", dev: r.vxlanDev });
  const d = await ask(dumps);
  const present = presentObjects(
    r,
    (d.groups[0] ?? []) as IpRoute[],
    (d.groups[1] ?? []) as IpNeigh[],
    (d.groups[2] ?? []) as IpFdb[],
  );
  const change = diff(desired, present);
  for (const o of change.del)
    log(`removing stale ${o.kind} ${o.kind === "route" ? o.dst : o.kind === "neigh" ? o.ip : o.mac}`);
  await applyPeerOps(opsOf(change), log);
}
