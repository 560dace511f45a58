import { parseCniArgs } from "../../lib/cni/args.ts";
import { BaseConfig, parseWith } from "../../lib/cni/config.ts";
import { CniError, Code } from "../../lib/cni/errors.ts";
import type { DNS, Route } from "../../lib/cni/result.ts";
import { DNSSchema, RouteSchema } from "../../lib/cni/result-schema.ts";
import { canonicalRoute } from "../../lib/cni/route-config.ts";
import { compareVersions } from "../../lib/cni/versions.ts";
import * as z from "../../lib/cni/zod.ts";
import { formatIP, isMapped, maskOf, parseCIDR, parseIP, type IP } from "../../lib/ip/address.ts";

/**
 * The static IPAM configuration with the reference's sources and precedence: `ipam.addresses`,
 * then CNI_ARGS `IP` appended (with `GATEWAY` attached to those), then `args.cni.ips` replacing all
 * of them, then `runtimeConfig.ips` replacing again. Messages are the reference's (code 7 rather
 * than 999, as for host-local).
 */

const IpList = z.nullish(z.array(z.string()));

const StaticSchema = z.extend(BaseConfig, {
  ipam: z.nullish(
    z.looseObject({
      type: z.optional(z.string()),
      addresses: z.nullish(
        z.array(z.looseObject({ address: z._default(z.string(), ""), gateway: z.nullish(z.string()) })),
      ),
      routes: z.nullish(z.array(RouteSchema)),
      dns: z.nullish(DNSSchema),
    }),
  ),
  runtimeConfig: z.nullish(z.looseObject({ ips: IpList })),
  args: z.nullish(z.looseObject({ cni: z.nullish(z.looseObject({ ips: IpList })) })),
});

/** An address with its prefix as Go's IPNet prints it: IPv4-mapped IPv6 folds to IPv4. */
export interface StaticCidr {
  ip: IP;
  prefix: number;
}

export interface StaticAddress {
  cidr: StaticCidr;
  gateway?: IP;
}

/** Everything ADD and CHECK need, validated. */
export interface StaticConfig {
  cniVersion: string;
  addresses: StaticAddress[];
  routes: Route[];
  dns?: DNS;
  prevResult?: unknown;
}

const invalid = (msg: string) => new CniError(Code.InvalidConfig, msg);

/** Go's ParseCIDR followed by canonicalizeIP: a mapped address keeps the low 32 bits of its mask. */
export function parseStaticCidr(text: string): StaticCidr | undefined {
  const c = parseCIDR(text);
  if (!c) return undefined;
  if (!isMapped(c.ip)) return { ip: c.ip, prefix: c.prefix };
  return { ip: { family: 4, n: c.ip.n & 0xffffffffn }, prefix: Math.max(0, c.prefix - 96) };
}

export const formatCidr = (c: StaticCidr) => `${formatIP(c.ip)}/${c.prefix}`;

export function cidrContains(c: StaticCidr, ip: IP): boolean {
  if (ip.family !== c.ip.family) return false;
  const mask = maskOf(c.ip.family, c.prefix);
  return (ip.n & mask) === (c.ip.n & mask);
}

/** A gateway as JSON decoding takes it: empty is none, anything else must be an address. */
function configGateway(text: string | null | undefined): IP | undefined {
  if (!text) return undefined;
  const ip = parseIP(text);
  if (!ip) throw invalid(`invalid IP address: ${text}`);
  return ip;
}

/** One address before validation: the config's are parsed last, so a replaced bad one is never seen. */
interface Pending {
  text: string;
  cidr?: StaticCidr;
  gateway?: IP;
}

function fromIpList(list: readonly string[]): Pending[] {
  return list.map((text) => {
    const cidr = parseStaticCidr(text);
    if (!cidr) throw invalid(`an entry in the 'ips' field is NOT in CIDR notation, got: '${text}'`);
    return { text, cidr };
  });
}

/** CNI_ARGS IP (appended) and GATEWAY (attached to every CNI_ARGS address whose subnet holds it). */
function applyCniArgs(pending: Pending[], cniArgs: string) {
  const { IP: ips, GATEWAY: gateways } = parseCniArgs(cniArgs, ["IP", "GATEWAY"]);
  if (ips) {
    for (const item of ips.split(",")) {
      const text = item.trim();
      const cidr = parseStaticCidr(text);
      if (!cidr) throw invalid(`the 'ip' field is expected to be in CIDR notation, got: '${text}'`);
      pending.push({ text, cidr });
    }
  }
  if (gateways) {
    for (const item of gateways.split(",")) {
      const gw = parseIP(item.trim());
      if (!gw) throw invalid(`invalid gateway address: ${item}`);
      // The config's own addresses are not parsed yet, so a GATEWAY never reaches them (as the reference).
      for (const p of pending) if (p.cidr && cidrContains(p.cidr, gw)) p.gateway = gw;
    }
  }
}

export function loadStaticConfig(raw: Record<string, unknown>, cniArgs: string): StaticConfig {
  const conf = parseWith(StaticSchema, raw);
  const ipam = conf.ipam;
  if (!ipam) throw invalid("IPAM config missing 'ipam' key");
  // Decoding the JSON checks gateways and route destinations before anything else.
  let pending: Pending[] = (ipam.addresses ?? []).map((a) => ({ text: a.address, gateway: configGateway(a.gateway) }));
  const routes = (ipam.routes ?? []).map(canonicalRoute);

  if (cniArgs !== "") applyCniArgs(pending, cniArgs);
  const argsIps = conf.args?.cni?.ips ?? [];
  if (argsIps.length > 0) pending = fromIpList(argsIps);
  const runtimeIps = conf.runtimeConfig?.ips ?? [];
  if (runtimeIps.length > 0) pending = fromIpList(runtimeIps);

  const addresses = pending.map((p): StaticAddress => {
    const cidr = p.cidr ?? parseStaticCidr(p.text);
    if (!cidr) throw invalid(`the 'address' field is expected to be in CIDR notation, got: '${p.text}'`);
    return p.gateway ? { cidr, gateway: p.gateway } : { cidr };
  });
  const perFamily = (f: 4 | 6) => addresses.filter((a) => a.cidr.ip.family === f).length;
  if ((perFamily(4) > 1 || perFamily(6) > 1) && compareVersions(conf.cniVersion, "0.3.0") < 0)
    throw invalid(`CNI version ${conf.cniVersion} does not support more than 1 address per family`);

  return {
    cniVersion: conf.cniVersion,
    addresses,
    routes,
    ...(ipam.dns ? { dns: ipam.dns } : {}),
    ...(conf.prevResult !== undefined ? { prevResult: conf.prevResult } : {}),
  };
}
