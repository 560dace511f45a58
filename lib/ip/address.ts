/**
 * IP addresses as (family, bigint) with Go's `net` text rules, because file names in the store and
 * every message must be byte-identical to the reference: strict dotted-quad IPv4 (no leading
 * zeros), RFC 5952 IPv6 output, IPv4-mapped IPv6 treated as IPv4 (Go's To4/canonicalizeIP).
 * Hand-written rather than ip-num: importing ip-num costs 4-7 ms per plugin process.
 */
export type Family = 4 | 6;

export interface IP {
  readonly family: Family;
  readonly n: bigint;
}

export const bitsOf = (family: Family) => (family === 4 ? 32 : 128);

/** Go's net.ParseIP: IPv4, or IPv6 (an IPv4-mapped IPv6 address comes back as IPv4). */
export function parseIP(text: string): IP | undefined {
  const raw = parseRaw(text);
  return raw && isMapped(raw) ? { family: 4, n: raw.n & 0xffffffffn } : raw;
}

/** Parses without folding IPv4-mapped addresses, as Go's ParseCIDR keeps a 16-byte IP. */
function parseRaw(text: string): IP | undefined {
  if (text.includes(":")) {
    const n = parseV6(text);
    return n === undefined ? undefined : { family: 6, n };
  }
  const n = parseV4(text);
  return n === undefined ? undefined : { family: 4, n: BigInt(n) };
}

function parseV4(s: string): number | undefined {
  const parts = s.split(".");
  if (parts.length !== 4) return undefined;
  let v = 0;
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return undefined;
    const b = Number(p);
    if (b > 255) return undefined;
    v = v * 256 + b;
  }
  return v;
}

function parseV6(s: string): bigint | undefined {
  const halves = s.split("::");
  if (halves.length > 2) return undefined;
  const groupsOf = (part: string, allowV4Tail: boolean): number[] | undefined => {
    if (part === "") return [];
    const out: number[] = [];
    const items = part.split(":");
    for (let i = 0; i < items.length; i++) {
      const it = items[i]!;
      if (allowV4Tail && i === items.length - 1 && it.includes(".")) {
        const v4 = parseV4(it);
        if (v4 === undefined) return undefined;
        out.push(v4 >>> 16, v4 & 0xffff);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(it)) out.push(parseInt(it, 16));
      else return undefined;
    }
    return out;
  };
  const head = groupsOf(halves[0]!, halves.length === 1);
  const tail = halves.length === 2 ? groupsOf(halves[1]!, true) : [];
  if (!head || !tail) return undefined;
  const given = head.length + tail.length;
  // Without "::" exactly eight groups; with it, "::" must stand for at least one zero group.
  if (halves.length === 1 ? given !== 8 : given > 7) return undefined;
  const groups = [...head, ...new Array<number>(8 - given).fill(0), ...tail];
  let n = 0n;
  for (const g of groups) n = (n << 16n) | BigInt(g);
  return n;
}

/** Go's IP.String(): dotted quad, or RFC 5952 (longest run of two or more zero groups, first wins). */
export function formatIP(ip: IP): string {
  if (ip.family === 4 || isMapped(ip)) {
    const v = Number(ip.n & 0xffffffffn);
    return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
  }
  const g: number[] = [];
  for (let i = 7; i >= 0; i--) g.push(Number((ip.n >> BigInt(i * 16)) & 0xffffn));
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (a: number[]) => a.map((x) => x.toString(16)).join(":");
  if (bestLen < 2) return hex(g);
  return `${hex(g.slice(0, bestStart))}::${hex(g.slice(bestStart + bestLen))}`;
}

export interface CIDR {
  /** The address as written (host bits kept), like Go's types.IPNet. */
  readonly ip: IP;
  readonly prefix: number;
  /** Length of the mask in bits: 128 for any address written in IPv6 syntax, even IPv4-mapped. */
  readonly maskBits: 32 | 128;
}

/** Go's net.ParseCIDR, keeping the written address (types.IPNet does not mask it). */
export function parseCIDR(text: string): CIDR | undefined {
  const slash = text.indexOf("/");
  if (slash < 0) return undefined;
  const addr = parseRaw(text.slice(0, slash));
  const p = text.slice(slash + 1);
  if (!addr || !/^[0-9]{1,3}$/.test(p)) return undefined;
  const prefix = Number(p);
  const maskBits = addr.family === 4 ? 32 : 128;
  if (prefix > maskBits) return undefined;
  return { ip: addr, prefix, maskBits };
}

/** The network address of a CIDR (host bits cleared). */
export const networkOf = (c: CIDR): IP => ({ family: c.ip.family, n: c.ip.n & maskOf(c.ip.family, c.prefix) });

/** "network/prefix", the form iptables and nft print for a subnet (`-d 10.22.0.0/24`). */
export const formatNetwork = (c: CIDR): string => `${formatIP(networkOf(c))}/${c.prefix}`;

/** ::ffff:a.b.c.d, which Go folds to IPv4 wherever it canonicalizes. */
export const isMapped = (ip: IP) => ip.family === 6 && ip.n >> 32n === 0xffffn;

export function maskOf(family: Family, prefix: number): bigint {
  const bits = BigInt(bitsOf(family));
  return ((1n << bits) - 1n) ^ ((1n << (bits - BigInt(prefix))) - 1n);
}

export const sameIP = (a: IP, b: IP) => a.family === b.family && a.n === b.n;
export const ipAt = (family: Family, n: bigint): IP => ({ family, n });

/** An address in the text iptables-save and nft print (undefined when it is not one). */
export function canonicalIp(text: string): string | undefined {
  const ip = parseIP(text);
  return ip ? formatIP(ip) : undefined;
}

/** A CIDR, or a bare address taken as a full-length prefix (how iptables prints "-s 127.0.0.1/32"). */
export function addressOrCidr(text: string): CIDR | undefined {
  if (text.includes("/")) return parseCIDR(text);
  const ip = parseIP(text);
  return ip ? { ip, prefix: ip.family === 4 ? 32 : 128, maskBits: ip.family === 4 ? 32 : 128 } : undefined;
}
