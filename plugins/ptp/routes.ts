import { CniError, Code } from "../../lib/cni/errors.ts";
import type { IPConfig } from "../../lib/cni/result.ts";
import { bitsOf, formatIP, formatNetwork } from "../../lib/ip/address.ts";
import type { LinkOp } from "../../lib/kernel/link.ts";
import { cidrOf } from "../../lib/net/gateways.ts";

/**
 * The point-to-point routing of the reference: veth does not do IFF_POINTOPOINT, so the container
 * keeps its address with the IPAM prefix but loses the kernel's subnet route; a link-scope host
 * route to the gateway and the subnet via the gateway replace it, so everything goes through the
 * node. On the node, the host end holds each gateway as a host address and routes each container
 * address to the veth.
 */

interface P2P {
  addr: string;
  bits: number;
  prefix: number;
  network: string;
  gateway: string;
}

function p2pOf(ip: IPConfig): P2P {
  const c = cidrOf(ip.address);
  if (ip.gateway === undefined)
    throw new CniError(Code.Internal, `ptp: IPAM result address ${ip.address} has no gateway (ptp routes through it)`);
  return {
    addr: formatIP(c.ip),
    bits: bitsOf(c.ip.family),
    prefix: c.prefix,
    network: formatNetwork(c),
    gateway: ip.gateway,
  };
}

/** Fails before anything is created when an address has no gateway. */
export function requireGateways(ips: readonly IPConfig[]) {
  for (const ip of ips) p2pOf(ip);
}

/** In the container, after the addresses are on `ifname`. */
export function containerRouteOps(ifname: string, ips: readonly IPConfig[]): LinkOp[] {
  const ops: LinkOp[] = [];
  for (const p of ips.map(p2pOf)) {
    // A full-length prefix has no kernel subnet route to replace (the reference fails deleting it).
    const subnet = p.prefix < p.bits;
    if (subnet) ops.push({ op: "route", verb: "del", dst: p.network, dev: ifname });
    ops.push({ op: "route", verb: "replace", dst: `${p.gateway}/${p.bits}`, dev: ifname, scope: 253, src: p.addr });
    if (subnet) ops.push({ op: "route", verb: "replace", dst: p.network, via: p.gateway, dev: ifname, src: p.addr });
  }
  return ops;
}

/** On the node's end of the pair. Replace, not add: an existing route is fine (the reference ignores EEXIST). */
export function hostOps(host: string, ips: readonly IPConfig[]): LinkOp[] {
  const ops: LinkOp[] = [];
  for (const p of ips.map(p2pOf)) {
    const v6 = p.bits === 128;
    // nodad: the gateway must answer the container at once.
    ops.push({
      op: "addr",
      verb: "replace",
      cidr: `${p.gateway}/${p.bits}`,
      dev: host,
      ...(v6 ? { nodad: true } : {}),
    });
    ops.push({ op: "route", verb: "replace", dst: `${p.addr}/${p.bits}`, dev: host });
  }
  return ops;
}
