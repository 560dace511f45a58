import { CniError, Code } from "../cni/errors.ts";
import type { Result } from "../cni/result.ts";
import { formatIP, maskOf, networkOf, parseCIDR, type CIDR } from "../ip/address.ts";
import type { LinkOp } from "../kernel/link.ts";

/**
 * Layer-3 decisions shared by ADD and the gateway set-up, as pure functions of the IPAM result:
 * which gateway each address uses, which default routes to add, and how the gateway addresses go
 * onto the bridge without clobbering what is already there.
 */
export interface Gateways {
  /** `<gateway>/<prefix of the container address>` per family, in result order, for the bridge. */
  4: string[];
  6: string[];
}

const DEFAULT_DST = { 4: "0.0.0.0/0", 6: "::/0" } as const;

export function cidrOf(text: string): CIDR {
  const c = parseCIDR(text);
  if (!c) throw new CniError(Code.Internal, `invalid IP address ${JSON.stringify(text)} in IPAM result`);
  return c;
}

/** Network address + 1 (10.22.0.0/24 -> 10.22.0.1), the reference's default gateway. */
export const firstHost = (c: CIDR) => formatIP({ family: c.ip.family, n: networkOf(c).n + 1n });

/**
 * The reference's calcGateways: every IP belongs to the container interface (index 2); a missing
 * gateway is filled in when isGateway; with isDefaultGateway a default route via this IP's gateway
 * is appended once per family unless the result already has a default route with a gateway.
 */
export function calcGateways(
  result: Result,
  isGateway: boolean,
  isDefaultGateway: boolean,
  containerIndex = 2,
): Gateways {
  const gws: Gateways = { 4: [], 6: [] };
  result.routes ??= [];
  const routes = result.routes;
  const haveDefault = { 4: false, 6: false };
  // Rebuilt rather than patched so the keys print in the reference's order.
  result.ips = (result.ips ?? []).map(({ interface: _i, address, gateway, ...rest }) => ({
    interface: containerIndex,
    address,
    ...(gateway !== undefined ? { gateway } : {}),
    ...rest,
  }));
  for (const ip of result.ips) {
    const c = cidrOf(ip.address);
    const family = c.ip.family;
    if (ip.gateway === undefined && isGateway) ip.gateway = firstHost(c);
    if (isDefaultGateway && !haveDefault[family]) {
      haveDefault[family] = routes.some((r) => r.gw !== undefined && sameNet(r.dst, DEFAULT_DST[family]));
      if (!haveDefault[family]) {
        routes.push(
          ip.gateway === undefined ? { dst: DEFAULT_DST[family] } : { dst: DEFAULT_DST[family], gw: ip.gateway },
        );
        haveDefault[family] = true;
      }
    }
    if (isGateway && ip.gateway !== undefined) gws[family].push(`${ip.gateway}/${c.prefix}`);
  }
  if (routes.length === 0) delete result.routes;
  return gws;
}

function sameNet(a: string, b: string): boolean {
  const x = parseCIDR(a);
  const y = parseCIDR(b);
  return !!x && !!y && x.ip.family === y.ip.family && x.prefix === y.prefix && networkOf(x).n === networkOf(y).n;
}

export interface DevAddr {
  family: "inet" | "inet6";
  local: string;
  prefixlen: number;
}

/**
 * The reference's ensureAddr for a set of gateways on one device: an identical address is left
 * alone; another IPv4 address, or an IPv6 address whose prefix overlaps, is a conflict that
 * forceAddress resolves by deleting it. Returns the address changes, or [] when all is in place.
 * (Unlike the reference, gateways added in the same call do not conflict with each other.)
 */
export function gatewayAddrOps(
  dev: string,
  present: readonly DevAddr[],
  gateways: readonly string[],
  forceAddress: boolean,
): LinkOp[] {
  const ops: LinkOp[] = [];
  const removed = new Set<string>();
  const wanted = new Set(gateways);
  for (const gw of gateways) {
    const g = cidrOf(gw);
    const fam = g.ip.family === 4 ? "inet" : "inet6";
    const same = present.filter((a) => a.family === fam);
    if (same.some((a) => `${a.local}/${a.prefixlen}` === gw)) continue;
    for (const a of same) {
      const text = `${a.local}/${a.prefixlen}`;
      if (wanted.has(text) || removed.has(text)) continue;
      if (g.ip.family === 6 && !overlaps(cidrOf(text), g)) continue;
      if (!forceAddress) throw new CniError(Code.Internal, `"${dev}" already has an IP address different from ${gw}`);
      removed.add(text);
      ops.push({ op: "addr", verb: "del", cidr: text, dev });
    }
    // The gateway must answer at once: DAD on our own bridge would only delay the first pod.
    ops.push({ op: "addr", verb: "replace", cidr: gw, dev, ...addrFlags(g) });
  }
  return ops;
}

/** IPv4 gets the subnet broadcast (as netlink's AddrAdd computes it); IPv6 skips DAD. */
export function addrFlags(c: CIDR): { broadcast?: boolean; nodad?: boolean } {
  if (c.ip.family === 6) return { nodad: true };
  return c.prefix < 31 ? { broadcast: true } : {};
}

export function overlaps(a: CIDR, b: CIDR): boolean {
  if (a.ip.family !== b.ip.family) return false;
  const p = Math.min(a.prefix, b.prefix);
  const m = maskOf(a.ip.family, p);
  return (a.ip.n & m) === (b.ip.n & m);
}
