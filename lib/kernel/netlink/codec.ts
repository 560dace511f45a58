/**
 * rtnetlink messages as bytes: the nlmsghdr framing, the fixed headers of the link, address and
 * route families (ifinfomsg, ifaddrmsg, rtmsg), and rtattr lists with nesting, 4-byte aligned.
 * Pure data, no I/O, so the unit tests run it under plain Node. Numbers are the kernel's UAPI
 * (linux/netlink.h, rtnetlink.h, if_link.h, if_addr.h, veth.h), host byte order (little endian on
 * every machine this runs on; addresses are network order, as bytes).
 */

// nlmsghdr
export const NLMSG_HDRLEN = 16;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLM_F_REQUEST = 0x1;
export const NLM_F_MULTI = 0x2;
export const NLM_F_ACK = 0x4;
export const NLM_F_DUMP = 0x300;
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
export const NLM_F_APPEND = 0x800;
export const NLM_F_CAPPED = 0x100;
export const NLM_F_ACK_TLVS = 0x200;
export const NLMSGERR_ATTR_MSG = 1;

export const RTM = {
  NEWLINK: 16,
  DELLINK: 17,
  GETLINK: 18,
  NEWADDR: 20,
  DELADDR: 21,
  GETADDR: 22,
  NEWROUTE: 24,
  DELROUTE: 25,
  GETROUTE: 26,
} as const;

export const AF_UNSPEC = 0;
export const AF_INET = 2;
export const AF_INET6 = 10;

export const IFLA = {
  ADDRESS: 1,
  IFNAME: 3,
  MTU: 4,
  LINK: 5,
  MASTER: 10,
  TXQLEN: 13,
  OPERSTATE: 16,
  IFALIAS: 20,
  LINKINFO: 18,
  NET_NS_PID: 19,
  NET_NS_FD: 28,
  PROMISCUITY: 30,
  LINK_NETNSID: 37,
} as const;
export const IFLA_INFO = { KIND: 1, DATA: 2, SLAVE_KIND: 4, SLAVE_DATA: 5 } as const;
export const IFLA_BR = { VLAN_FILTERING: 7, VLAN_DEFAULT_PVID: 39 } as const;
export const IFLA_BRPORT = { MODE: 4, ISOLATED: 33 } as const;
export const IFLA_VLAN_ID = 1;
export const IFLA_MACVLAN = { MODE: 1, BC_QUEUE_LEN: 7 } as const;
export const IFLA_IPVLAN_MODE = 1;
export const IFLA_IPVLAN_FLAGS = 2;
/** linux/if_link.h IFLA_TUN_*: the tun driver's link attributes (TYPE: IFF_TUN 1, IFF_TAP 2). */
export const IFLA_TUN = { TYPE: 3, MULTI_QUEUE: 7 } as const;
export const IFLA_VRF_TABLE = 1;
export const VETH_INFO_PEER = 1;

export const IFF = { UP: 0x1, PROMISC: 0x100, ALLMULTI: 0x200 } as const;

export const IFA = { ADDRESS: 1, LOCAL: 2, BROADCAST: 4, FLAGS: 8 } as const;
export const IFA_F = { NODAD: 0x02, DADFAILED: 0x08, TENTATIVE: 0x40 } as const;

export const RTA = { DST: 1, OIF: 4, GATEWAY: 5, PRIORITY: 6, PREFSRC: 7, MULTIPATH: 9, TABLE: 15 } as const;
export const RT_TABLE = { UNSPEC: 0, DEFAULT: 253, MAIN: 254, LOCAL: 255 } as const;
export const RT_SCOPE = { UNIVERSE: 0, LINK: 253, HOST: 254, NOWHERE: 255 } as const;
export const RTPROT_BOOT = 3;
export const RTN_UNICAST = 1;
export const RTNH_F_ONLINK = 4;
export const RTM_F_CLONED = 0x200;

/** Attribute types carry two flag bits (nested, network byte order) that are not part of the type. */
const NLA_TYPE_MASK = 0x3fff;
export const NLA_F_NESTED = 0x8000;

export const align4 = (n: number) => (n + 3) & ~3;

// --- writing --------------------------------------------------------------------------------------

/**
 * One request message: the header, a fixed family header, then attributes; begin()/end() bracket
 * a nested attribute, whose length is filled in when it closes.
 */
export class MessageWriter {
  private buf = new Uint8Array(256);
  private view = new DataView(this.buf.buffer);
  private len = NLMSG_HDRLEN;
  private open: number[] = [];

  constructor(
    private readonly type: number,
    private readonly flags: number,
  ) {}

  private room(n: number) {
    if (this.len + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.len + n));
    next.set(this.buf);
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  /** Raw bytes padded to 4 (a fixed header). */
  raw(data: Uint8Array): this {
    this.room(align4(data.length));
    this.buf.set(data, this.len);
    this.len += align4(data.length);
    return this;
  }

  attr(type: number, data: Uint8Array): this {
    this.room(4 + align4(data.length));
    this.view.setUint16(this.len, 4 + data.length, true);
    this.view.setUint16(this.len + 2, type, true);
    this.buf.set(data, this.len + 4);
    this.len += 4 + align4(data.length);
    return this;
  }

  u8 = (type: number, v: number) => this.attr(type, Uint8Array.of(v));
  u16 = (type: number, v: number) => this.attr(type, le(2, v));
  u32 = (type: number, v: number) => this.attr(type, le(4, v));
  /** A NUL-terminated string, as the kernel's string policies expect. */
  str = (type: number, s: string) => this.attr(type, cstring(s));

  begin(type: number): this {
    this.room(4);
    this.open.push(this.len);
    this.view.setUint16(this.len + 2, type | NLA_F_NESTED, true);
    this.len += 4;
    return this;
  }

  end(): this {
    const start = this.open.pop();
    if (start === undefined) throw new Error("netlink: end() without begin()");
    this.view.setUint16(start, this.len - start, true);
    return this;
  }

  /** The finished message with its length and sequence number. */
  finish(seq: number): Uint8Array {
    if (this.open.length > 0) throw new Error("netlink: unclosed nested attribute");
    this.view.setUint32(0, this.len, true);
    this.view.setUint16(4, this.type, true);
    this.view.setUint16(6, this.flags, true);
    this.view.setUint32(8, seq, true);
    this.view.setUint32(12, 0, true);
    return this.buf.slice(0, this.len);
  }
}

function le(size: 2 | 4, v: number): Uint8Array {
  const b = new Uint8Array(size);
  const d = new DataView(b.buffer);
  if (size === 2) d.setUint16(0, v, true);
  else d.setUint32(0, v >>> 0, true);
  return b;
}

export const cstring = (s: string) => {
  const b = Buffer.from(s, "utf8");
  const out = new Uint8Array(b.length + 1);
  out.set(b);
  return out;
};

/** struct ifinfomsg (16 bytes). */
export function ifinfomsg(o: { family?: number; index?: number; flags?: number; change?: number }): Uint8Array {
  const b = new Uint8Array(16);
  const d = new DataView(b.buffer);
  d.setUint8(0, o.family ?? AF_UNSPEC);
  d.setInt32(4, o.index ?? 0, true);
  d.setUint32(8, o.flags ?? 0, true);
  d.setUint32(12, o.change ?? 0, true);
  return b;
}

/** struct ifaddrmsg (8 bytes). */
export function ifaddrmsg(o: { family: number; prefixlen?: number; flags?: number; scope?: number; index?: number }) {
  const b = new Uint8Array(8);
  const d = new DataView(b.buffer);
  d.setUint8(0, o.family);
  d.setUint8(1, o.prefixlen ?? 0);
  d.setUint8(2, o.flags ?? 0);
  d.setUint8(3, o.scope ?? 0);
  d.setUint32(4, o.index ?? 0, true);
  return b;
}

export interface RtMsg {
  family: number;
  dstLen: number;
  srcLen: number;
  tos: number;
  table: number;
  protocol: number;
  scope: number;
  type: number;
  flags: number;
}

/** struct rtmsg (12 bytes). */
export function rtmsg(o: Partial<RtMsg> & { family: number }): Uint8Array {
  const b = new Uint8Array(12);
  const d = new DataView(b.buffer);
  b.set([o.family, o.dstLen ?? 0, o.srcLen ?? 0, o.tos ?? 0, o.table ?? 0, o.protocol ?? 0, o.scope ?? 0, o.type ?? 0]);
  d.setUint32(8, o.flags ?? 0, true);
  return b;
}

// --- reading --------------------------------------------------------------------------------------

export interface Message {
  type: number;
  flags: number;
  seq: number;
  /** Everything after the header. */
  body: Uint8Array;
}

/** Splits a datagram into its messages (each padded to 4); a truncated tail is an error. */
export function parseMessages(buf: Uint8Array): Message[] {
  const out: Message[] = [];
  const d = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let off = 0;
  while (off + NLMSG_HDRLEN <= buf.length) {
    const len = d.getUint32(off, true);
    if (len < NLMSG_HDRLEN || off + len > buf.length) throw new Error(`netlink: truncated message at ${off}`);
    out.push({
      type: d.getUint16(off + 4, true),
      flags: d.getUint16(off + 6, true),
      seq: d.getUint32(off + 8, true),
      body: buf.subarray(off + NLMSG_HDRLEN, off + len),
    });
    off += align4(len);
  }
  return out;
}

/** Attributes by type; the first of a repeated type wins, as iproute2's parse_rtattr keeps it. */
export type Attrs = Map<number, Uint8Array>;

export function parseAttrs(buf: Uint8Array, from = 0): Attrs {
  const out: Attrs = new Map();
  const d = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let off = from;
  while (off + 4 <= buf.length) {
    const len = d.getUint16(off, true);
    if (len < 4 || off + len > buf.length) break;
    const type = d.getUint16(off + 2, true) & NLA_TYPE_MASK;
    if (!out.has(type)) out.set(type, buf.subarray(off + 4, off + len));
    off += align4(len);
  }
  return out;
}

const dv = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);
export const getU8 = (b: Uint8Array | undefined) => (b && b.length >= 1 ? b[0] : undefined);
export const getU16 = (b: Uint8Array | undefined) => (b && b.length >= 2 ? dv(b).getUint16(0, true) : undefined);
export const getU32 = (b: Uint8Array | undefined) => (b && b.length >= 4 ? dv(b).getUint32(0, true) : undefined);
export const getI32 = (b: Uint8Array | undefined) => (b && b.length >= 4 ? dv(b).getInt32(0, true) : undefined);
/** A string attribute up to its NUL. */
export function getStr(b: Uint8Array | undefined): string | undefined {
  if (!b) return undefined;
  const nul = b.indexOf(0);
  return Buffer.from(b.subarray(0, nul < 0 ? b.length : nul)).toString("utf8");
}

export interface IfInfo {
  family: number;
  type: number;
  index: number;
  flags: number;
  attrs: Attrs;
}

export function parseIfinfo(body: Uint8Array): IfInfo {
  const d = dv(body);
  return {
    family: d.getUint8(0),
    type: d.getUint16(2, true),
    index: d.getInt32(4, true),
    flags: d.getUint32(8, true),
    attrs: parseAttrs(body, 16),
  };
}

export interface IfAddr {
  family: number;
  prefixlen: number;
  flags: number;
  scope: number;
  index: number;
  attrs: Attrs;
}

export function parseIfaddr(body: Uint8Array): IfAddr {
  const d = dv(body);
  return {
    family: d.getUint8(0),
    prefixlen: d.getUint8(1),
    flags: d.getUint8(2),
    scope: d.getUint8(3),
    index: d.getUint32(4, true),
    attrs: parseAttrs(body, 8),
  };
}

export function parseRtmsg(body: Uint8Array): RtMsg & { attrs: Attrs } {
  const d = dv(body);
  return {
    family: body[0]!,
    dstLen: body[1]!,
    srcLen: body[2]!,
    tos: body[3]!,
    table: body[4]!,
    protocol: body[5]!,
    scope: body[6]!,
    type: body[7]!,
    flags: d.getUint32(8, true),
    attrs: parseAttrs(body, 12),
  };
}

/** An NLMSG_ERROR: errno 0 is the ACK; the extended ACK's message when the kernel gave one. */
export interface NlError {
  errno: number;
  /** The ACK's sequence number (of the request it answers). */
  seq: number;
  message?: string;
}

export function parseError(m: Message): NlError {
  const d = dv(m.body);
  const errno = -d.getInt32(0, true);
  const seq = m.body.length >= 20 ? d.getUint32(4 + 8, true) : 0;
  let message: string | undefined;
  if (m.flags & NLM_F_ACK_TLVS && m.body.length >= 20) {
    // The request comes back after the error code: its header only when capped, else whole.
    const echoed = m.flags & NLM_F_CAPPED ? NLMSG_HDRLEN : d.getUint32(4, true);
    message = getStr(parseAttrs(m.body, 4 + align4(echoed)).get(NLMSGERR_ATTR_MSG));
  }
  return { errno, seq, message: message || undefined };
}

// --- error text -----------------------------------------------------------------------------------

/** glibc's strerror texts for what rtnetlink answers (iproute2 prints them). */
const STRERROR: Record<number, string> = {
  1: "Operation not permitted",
  2: "No such file or directory",
  3: "No such process",
  7: "Argument list too long",
  12: "Cannot allocate memory",
  13: "Permission denied",
  16: "Device or resource busy",
  17: "File exists",
  18: "Invalid cross-device link",
  19: "No such device",
  22: "Invalid argument",
  28: "No space left on device",
  34: "Numerical result out of range",
  40: "Too many levels of symbolic links",
  90: "Message too long",
  93: "Protocol not supported",
  95: "Operation not supported",
  97: "Address family not supported by protocol",
  98: "Address already in use",
  99: "Cannot assign requested address",
  100: "Network is down",
  101: "Network is unreachable",
  105: "No buffer space available",
  113: "No route to host",
};

export const strerror = (errno: number) => STRERROR[errno] ?? `Unknown error ${errno}`;

/**
 * What `ip` prints for a refused request: the kernel's extended-ACK message as "Error: ..." (with a
 * final period), else "RTNETLINK answers: " and the errno's text.
 */
export function errorText(e: Pick<NlError, "errno" | "message">): string {
  if (e.message) return `Error: ${e.message}${e.message.endsWith(".") ? "" : "."}`;
  return `RTNETLINK answers: ${strerror(e.errno)}`;
}

// --- addresses ------------------------------------------------------------------------------------

/** IPv4 dotted quad or IPv6 text to its bytes (network order); undefined for anything else. */
export function ipBytes(text: string): Uint8Array | undefined {
  if (!text.includes(":")) {
    const parts = text.split(".");
    if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) return undefined;
    return Uint8Array.from(parts.map(Number));
  }
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const groups = (s: string) => (s === "" ? [] : s.split(":"));
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  const words: number[] = [];
  const push = (g: string[], last: boolean) => {
    for (let i = 0; i < g.length; i++) {
      const w = g[i]!;
      if (last && i === g.length - 1 && w.includes(".")) {
        const v4 = ipBytes(w);
        if (!v4) return false;
        words.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(w)) words.push(parseInt(w, 16));
      else return false;
    }
    return true;
  };
  const h: number[] = [];
  if (!push(head, halves.length === 1)) return undefined;
  h.push(...words.splice(0));
  if (!push(tail, true)) return undefined;
  const gap = 8 - h.length - words.length;
  if (halves.length === 1 ? gap !== 0 : gap < 1) return undefined;
  const all = [...h, ...new Array<number>(gap).fill(0), ...words];
  const out = new Uint8Array(16);
  all.forEach((w, i) => {
    out[2 * i] = w >> 8;
    out[2 * i + 1] = w & 0xff;
  });
  return out;
}

/** Address bytes as inet_ntop writes them (glibc: IPv4-compatible and -mapped tails as a quad). */
export function ipText(b: Uint8Array): string {
  if (b.length === 4) return Array.from(b).join(".");
  if (b.length !== 16) return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(":");
  const w = Array.from({ length: 8 }, (_, i) => (b[2 * i]! << 8) | b[2 * i + 1]!);
  let best = { base: -1, len: 0 };
  for (let i = 0; i < 8; ) {
    if (w[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > best.len) best = { base: i, len: j - i };
    i = j;
  }
  if (best.len < 2) best = { base: -1, len: 0 };
  let s = "";
  for (let i = 0; i < 8; i++) {
    if (best.base >= 0 && i >= best.base && i < best.base + best.len) {
      if (i === best.base) s += ":";
      continue;
    }
    if (i !== 0) s += ":";
    if (i === 6 && best.base === 0 && (best.len === 6 || (best.len === 5 && w[5] === 0xffff))) {
      s += Array.from(b.subarray(12)).join(".");
      break;
    }
    s += w[i]!.toString(16);
  }
  if (best.base >= 0 && best.base + best.len === 8) s += ":";
  return s;
}

/** "aa:bb:cc:dd:ee:ff" to bytes; undefined unless exactly that shape. */
export function macBytes(text: string): Uint8Array | undefined {
  const parts = text.split(":");
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{1,2}$/.test(p))) return undefined;
  return Uint8Array.from(parts.map((p) => parseInt(p, 16)));
}

export const hexText = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(":");
