/**
 * DHCPv4 messages (RFC 2131/2132) as bytes: the fixed BOOTP header, the magic cookie and the
 * options. Only what a client needs: build DISCOVER/REQUEST/RELEASE, read OFFER/ACK/NAK.
 */

export const MessageType = { DISCOVER: 1, OFFER: 2, REQUEST: 3, DECLINE: 4, ACK: 5, NAK: 6, RELEASE: 7 } as const;

export const Opt = {
  SUBNET_MASK: 1,
  ROUTER: 3,
  DNS: 6,
  HOST_NAME: 12,
  DOMAIN_NAME: 15,
  STATIC_ROUTES: 33,
  REQUESTED_IP: 50,
  LEASE_TIME: 51,
  MESSAGE_TYPE: 53,
  SERVER_ID: 54,
  PARAM_REQUEST: 55,
  RENEWAL_TIME: 58,
  REBINDING_TIME: 59,
  CLIENT_ID: 61,
  CLASSLESS_ROUTES: 121,
  END: 255,
} as const;

const MAGIC = [99, 130, 83, 99];
const HEADER = 236;
const BROADCAST_FLAG = 0x8000;

export interface Message {
  op: 1 | 2;
  xid: number;
  flags: number;
  ciaddr: Uint8Array;
  yiaddr: Uint8Array;
  chaddr: Uint8Array;
  /** Option code to its raw value; a code given twice is concatenated (RFC 3396). */
  options: Map<number, Uint8Array>;
}

export const ZERO4 = new Uint8Array(4);
export const BROADCAST4 = new Uint8Array([255, 255, 255, 255]);

export interface Outgoing {
  type: number;
  xid: number;
  mac: Uint8Array;
  ciaddr?: Uint8Array;
  broadcast: boolean;
  /** In order after the message type; values longer than 255 bytes are split. */
  options: [number, Uint8Array][];
}

export function encode(m: Outgoing): Uint8Array {
  const opts: number[] = [Opt.MESSAGE_TYPE, 1, m.type];
  for (const [code, value] of m.options) {
    for (let i = 0; i === 0 || i < value.length; i += 255) {
      const part = value.subarray(i, i + 255);
      opts.push(code, part.length, ...part);
    }
  }
  opts.push(Opt.END);
  const out = new Uint8Array(Math.max(HEADER + 4 + opts.length, 300)); // BOOTP's minimum of 300
  const v = new DataView(out.buffer);
  out[0] = 1; // BOOTREQUEST
  out[1] = 1; // Ethernet
  out[2] = 6;
  v.setUint32(4, m.xid);
  v.setUint16(10, m.broadcast ? BROADCAST_FLAG : 0);
  out.set(m.ciaddr ?? ZERO4, 12);
  out.set(m.mac.subarray(0, 16), 28);
  out.set(MAGIC, HEADER);
  out.set(opts, HEADER + 4);
  return out;
}

/** A reply, or undefined for anything that is not a well-formed BOOTREPLY. */
export function decode(b: Uint8Array): Message | undefined {
  if (b.length < HEADER + 4 || b[0] !== 2) return undefined;
  if (MAGIC.some((x, i) => b[HEADER + i] !== x)) return undefined;
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const options = new Map<number, Uint8Array>();
  for (let i = HEADER + 4; i < b.length; ) {
    const code = b[i]!;
    if (code === Opt.END) break;
    if (code === 0) {
      i++;
      continue;
    }
    const len = b[i + 1];
    if (len === undefined || i + 2 + len > b.length) return undefined;
    const value = b.slice(i + 2, i + 2 + len);
    const prev = options.get(code);
    options.set(code, prev ? Uint8Array.from([...prev, ...value]) : value);
    i += 2 + len;
  }
  return {
    op: 2,
    xid: v.getUint32(4),
    flags: v.getUint16(10),
    ciaddr: b.slice(12, 16),
    yiaddr: b.slice(16, 20),
    chaddr: b.slice(28, 44),
    options,
  };
}

export const typeOf = (m: Message) => m.options.get(Opt.MESSAGE_TYPE)?.[0];

export const ip4 = (b: Uint8Array, at = 0) => `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;

export const parseIp4 = (s: string) => Uint8Array.from(s.split(".").map(Number));

/** A 32-bit option (lease and renewal times), or undefined. */
export function u32(m: Message, code: number): number | undefined {
  const v = m.options.get(code);
  return v?.length === 4 ? new DataView(v.buffer, v.byteOffset).getUint32(0) : undefined;
}

/** The IPv4 addresses of a list option (router, DNS), whole ones only. */
export function ip4List(m: Message, code: number): string[] {
  const v = m.options.get(code) ?? new Uint8Array();
  const out: string[] = [];
  for (let i = 0; i + 4 <= v.length; i += 4) out.push(ip4(v, i));
  return out;
}

/** The prefix length of a subnet mask option, counting leading ones. */
export function maskBits(mask: Uint8Array | undefined): number {
  let bits = 0;
  for (const byte of mask ?? [255, 255, 255, 0]) {
    for (let bit = 7; bit >= 0 && byte & (1 << bit); bit--) bits++;
    if (byte !== 255) break;
  }
  return bits;
}

/** Option 121 (RFC 3442): width, the significant octets of the destination, then the router. */
export function classlessRoutes(m: Message): { dst: string; gw: string }[] {
  const v = m.options.get(Opt.CLASSLESS_ROUTES);
  if (!v) return [];
  const out: { dst: string; gw: string }[] = [];
  for (let i = 0; i < v.length; ) {
    const width = v[i]!;
    const octets = Math.ceil(width / 8);
    if (width > 32 || i + 1 + octets + 4 > v.length) return out;
    const dst = new Uint8Array(4);
    dst.set(v.subarray(i + 1, i + 1 + octets));
    out.push({ dst: `${ip4(dst)}/${width}`, gw: ip4(v, i + 1 + octets) });
    i += 1 + octets + 4;
  }
  return out;
}
