import { bitsOf, formatIP, isMapped, maskOf, parseCIDR, parseIP, type Family, type IP } from "../../lib/ip/address.ts";

/** A validated range: every address of [start, end] lies in subnet; gateway is never handed out. */
export interface Range {
  readonly family: Family;
  readonly network: bigint;
  readonly prefix: number;
  readonly start: bigint;
  readonly end: bigint;
  readonly gateway: bigint;
}

/** The ranges of one set form one pool; each set yields exactly one address per ADD. */
export type RangeSet = readonly Range[];

/** A range as written in the configuration (all strings, as in the JSON). */
export interface RangeInput {
  subnet: string;
  rangeStart?: string;
  rangeEnd?: string;
  gateway?: string;
}

/** Thrown for an invalid range; the caller prefixes "invalid range set <i>: ". */
export class InvalidRange extends Error {}

const text = (family: Family, n: bigint) => formatIP({ family, n });

/**
 * The reference's Range.Canonicalize: the subnet must be a network address with at least two host
 * bits; rangeStart defaults to network+1, rangeEnd to the last address (broadcast-1 for IPv4) and
 * gateway to network+1; start and end must lie in the subnet, in order.
 */
export function canonicalizeRange(r: RangeInput): Range {
  const cidr = parseCIDR(r.subnet);
  if (!cidr) throw new InvalidRange(`invalid CIDR address: ${r.subnet}`);
  if (cidr.prefix > cidr.maskBits - 2)
    throw new InvalidRange(`Network ${formatIP(cidr.ip)}/${cidr.prefix} too small to allocate from`);
  // An IPv4-mapped address in IPv6 notation folds to IPv4 while its mask stays 128 bits long.
  if (isMapped(cidr.ip)) throw new InvalidRange("IPNet IP and Mask version mismatch");
  const family = cidr.ip.family;
  const network = cidr.ip.n & maskOf(family, cidr.prefix);
  if (network !== cidr.ip.n) {
    throw new InvalidRange(
      `Network has host bits set. For a subnet mask of length ${cidr.prefix} the network address is ${text(family, network)}`,
    );
  }
  const subnetText = `${text(family, network)}/${cidr.prefix}`;
  const last = network | ((1n << BigInt(bitsOf(family) - cidr.prefix)) - 1n);
  const inSubnet = (ip: IP) => ip.family === family && (ip.n & maskOf(family, cidr.prefix)) === network;
  const address = (field: string, value: string | undefined): IP | undefined => {
    if (value === undefined) return undefined;
    const ip = parseIP(value);
    if (!ip) throw new InvalidRange(`invalid IP address: ${value} (${field})`);
    return ip;
  };

  const gw = address("gateway", r.gateway);
  // The reference never checks the gateway; one outside the subnet is a configuration error we refuse.
  if (gw && !inSubnet(gw)) throw new InvalidRange(`Gateway ${formatIP(gw)} not in network ${subnetText}`);
  const startIP = address("rangeStart", r.rangeStart);
  const endIP = address("rangeEnd", r.rangeEnd);
  if (startIP && !inSubnet(startIP))
    throw new InvalidRange(`RangeStart ${formatIP(startIP)} not in network ${subnetText}`);
  if (startIP && endIP && inSubnet(endIP) && startIP.n > endIP.n) {
    // The reference says only "not in network" here; naming rangeEnd tells the user what to fix.
    throw new InvalidRange(
      `RangeStart ${formatIP(startIP)} not in network ${subnetText} (it is after RangeEnd ${formatIP(endIP)})`,
    );
  }
  const start = startIP ? startIP.n : network + 1n;
  if (endIP && !inSubnet(endIP)) throw new InvalidRange(`RangeEnd ${formatIP(endIP)} not in network ${subnetText}`);
  if (endIP && endIP.n < start)
    throw new InvalidRange(
      `RangeEnd ${formatIP(endIP)} not in network ${subnetText} (it is before RangeStart ${text(family, start)})`,
    );
  const end = endIP ? endIP.n : family === 4 ? last - 1n : last;
  const gateway = gw ? gw.n : network + 1n;
  return { family, network, prefix: cidr.prefix, start, end, gateway };
}

export function canonicalizeRangeSet(set: readonly RangeInput[]): RangeSet {
  if (set.length === 0) throw new InvalidRange("empty range set");
  const ranges = set.map(canonicalizeRange);
  if (ranges.some((r) => r.family !== ranges[0]!.family)) throw new InvalidRange("mixed address families");
  for (let i = 0; i < ranges.length; i++) {
    for (let j = i + 1; j < ranges.length; j++) {
      if (rangesOverlap(ranges[i]!, ranges[j]!))
        throw new InvalidRange(`subnets ${rangeText(ranges[i]!)} and ${rangeText(ranges[j]!)} overlap`);
    }
  }
  return ranges;
}

/** Whether addr is in the range's subnet and within [start, end]. */
export function rangeContains(r: Range, addr: IP): boolean {
  return (
    addr.family === r.family &&
    (addr.n & maskOf(r.family, r.prefix)) === r.network &&
    addr.n >= r.start &&
    addr.n <= r.end
  );
}

export function rangesOverlap(a: Range, b: Range): boolean {
  if (a.family !== b.family) return false;
  const at = (n: bigint): IP => ({ family: a.family, n });
  return (
    rangeContains(a, at(b.start)) ||
    rangeContains(a, at(b.end)) ||
    rangeContains(b, at(a.start)) ||
    rangeContains(b, at(a.end))
  );
}

export const setsOverlap = (a: RangeSet, b: RangeSet) => a.some((r) => b.some((r1) => rangesOverlap(r, r1)));

/** The range of the set that holds addr, if any. */
export const rangeFor = (set: RangeSet, addr: IP) => set.find((r) => rangeContains(r, addr));

/** "<start>-<end>", the reference's Range.String(). */
export const rangeText = (r: Range) => `${text(r.family, r.start)}-${text(r.family, r.end)}`;

/** Comma-joined range texts, the reference's RangeSet.String(). */
export const rangeSetText = (set: RangeSet) => set.map(rangeText).join(",");
