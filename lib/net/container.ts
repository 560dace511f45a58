import { CniError, Code } from "../cni/errors.ts";
import { isV6, type Result, type Route } from "../cni/result.ts";
import { writeSysctls, type SysctlPath } from "../kernel/procfs.ts";
import { addrFlags, cidrOf } from "./gateways.ts";
import { applyLinkOps, showLink, type IpLink, type LinkOp } from "../kernel/link.ts";
import { sleepMs } from "../sleep.ts";

/**
 * The container side of an attachment (the reference's ConfigureIface and DelLinkByNameAddr): the
 * sysctls written in-process and one run of link operations inside the container namespace for ADD,
 * one run for DEL.
 */

/** Per-interface sysctls written before the addresses: DAD policy, gratuitous ARP, IPv6 enabled. */
export function containerSysctls(ifname: string, enableDad: boolean, hasV6: boolean): [SysctlPath, string][] {
  const v6 = `net/ipv6/conf/${ifname}`;
  const s: [SysctlPath, string][] = enableDad
    ? [
        [`${v6}/enhanced_dad`, "1"],
        [`${v6}/accept_dad`, "1"],
      ]
    : [[`${v6}/accept_dad`, "0"]];
  s.push([`net/ipv4/conf/${ifname}/arp_notify`, "1"]);
  if (hasV6)
    s.push(["net/ipv6/conf/lo/disable_ipv6", "0"], [`${v6}/disable_ipv6`, "0"], [`${v6}/keep_addr_on_down`, "1"]);
  return s;
}

/**
 * Addresses, link up, then routes (each via its own gateway or the first gateway of its family),
 * then the interface read back for its MAC. Routes are appended, so equal destinations coexist.
 */
export function configureOps(ifname: string, result: Result, containerIndex: number): LinkOp[] {
  const ops: LinkOp[] = [];
  const firstGw: { 4?: string; 6?: string } = {};
  for (const ip of result.ips ?? []) {
    if (ip.interface === undefined) continue;
    if (ip.interface !== containerIndex)
      throw new CniError(Code.Internal, `failed to add IP addr ${ip.address} to "${ifname}": invalid interface index`);
    const c = cidrOf(ip.address);
    const fam = c.ip.family;
    if (ip.gateway !== undefined && firstGw[fam] === undefined) firstGw[fam] = ip.gateway;
    ops.push({ op: "addr", verb: "add", cidr: ip.address, dev: ifname, ...(fam === 4 ? addrFlags(c) : {}) });
  }
  ops.push({ op: "link-set", dev: ifname, up: true });
  for (const r of result.routes ?? []) ops.push(routeOp(ifname, r, firstGw[isV6(r.dst) ? 6 : 4]));
  ops.push({ op: "show", dev: ifname });
  return ops;
}

function routeOp(ifname: string, r: Route, familyGw: string | undefined): LinkOp {
  return {
    op: "route",
    verb: "append",
    dst: r.dst,
    via: r.gw ?? familyGw,
    dev: ifname,
    metric: r.priority,
    table: r.table,
    scope: r.scope,
  };
}

/**
 * Applies the IPAM result inside the container; returns the interface as configured. `lo` comes up
 * in the same batch: a list that starts with loopback is undone step by step by a DEL racing its
 * ADD, and a DEL that runs whole between ADD's loopback and bridge steps sets lo down under a
 * container that then ends attached.
 */
export function configureContainer(
  netns: string,
  ifname: string,
  result: Result,
  enableDad: boolean,
  containerIndex: number,
): IpLink {
  const hasV6 = (result.ips ?? []).some((ip) => isV6(ip.address));
  writeSysctls(containerSysctls(ifname, enableDad, hasV6), { netns, bestEffort: true });
  const r = applyLinkOps([{ op: "link-set", dev: "lo", up: true }, ...configureOps(ifname, result, containerIndex)], {
    netns,
  });
  if (!r.ok) throw new CniError(Code.Internal, `failed to configure "${ifname}" in ${netns}: ${r.stderr}`);
  const link = r.shown.find((l) => l.ifname === ifname);
  if (!link) throw new CniError(Code.Internal, `could not read back "${ifname}" in ${netns}`);
  if (enableDad && hasV6 && (result.ips ?? []).some((ip) => isV6(ip.address) && ip.gateway !== undefined))
    settleIPv6(netns, ifname);
  return link;
}

/** Layer 2 only: the interface up (or left down), read back for its MAC. */
export function layer2Container(netns: string, ifname: string, up: boolean): IpLink {
  const r = applyLinkOps([...(up ? [{ op: "link-set", dev: ifname, up } as const] : []), { op: "show", dev: ifname }], {
    netns,
  });
  const link = r.shown.find((l) => l.ifname === ifname);
  if (!r.ok || !link) throw new CniError(Code.Internal, `failed to set "${ifname}" up: ${r.stderr}`);
  return link;
}

const DAD_POLL_MS = 50;
const DAD_TIMEOUT_MS = 5000;

/**
 * Waits until no address of `ifname` is tentative; a failed DAD is an error. With DAD on, that is
 * DAD's end; with it off, an IPv6 address still starts tentative until the kernel has seen the
 * link's carrier come up (asynchronously), and until then it cannot be a route's `src`.
 */
export function settleIPv6(netns: string, ifname: string) {
  let tentative = true;
  let up = false;
  for (let waited = 0; waited <= DAD_TIMEOUT_MS; waited += DAD_POLL_MS) {
    const link = showLink(ifname, { netns });
    if (!link) throw new CniError(Code.Internal, `"${ifname}" disappeared while waiting for DAD`);
    const addrs = link.addr_info ?? [];
    const failed = addrs.find((a) => a.dadfailed);
    if (failed) throw new CniError(Code.Internal, `failed DAD for ${failed.local} on "${ifname}"`);
    tentative = addrs.some((a) => a.tentative);
    up = link.operstate === "UP";
    if (!tentative) return;
    sleepMs(DAD_POLL_MS);
  }
  if (tentative && up)
    throw new CniError(Code.Internal, `"${ifname}" still has tentative IPv6 addresses after ${DAD_TIMEOUT_MS / 1000}s`);
}

/**
 * Deletes the container interface (its veth peer goes with it) and returns the global addresses it
 * had, which DEL needs for the iptables masquerade. An interface that is already gone is fine.
 */
export function removeContainerIface(netns: string, ifname: string): string[] {
  const r = applyLinkOps(
    [
      { op: "show", dev: ifname },
      { op: "link-del", dev: ifname },
    ],
    { netns },
  );
  if (!r.ok && r.failedOp !== 0)
    throw new CniError(Code.Internal, `failed to delete "${ifname}" in ${netns}: ${r.stderr}`);
  if (!r.ok && !/does not exist|Cannot find device/.test(r.stderr))
    throw new CniError(Code.Internal, `failed to read "${ifname}" in ${netns}: ${r.stderr}`);
  const link = r.shown.find((l) => l.ifname === ifname);
  return (link?.addr_info ?? []).filter((a) => a.scope === "global").map((a) => `${a.local}/${a.prefixlen}`);
}
