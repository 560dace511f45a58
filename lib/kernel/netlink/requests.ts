import type { LinkKind, LinkOp } from "../link.ts";
import {
  AF_INET,
  AF_INET6,
  AF_UNSPEC,
  IFA,
  IFA_F,
  IFF,
  IFLA,
  IFLA_BR,
  IFLA_BRPORT,
  IFLA_INFO,
  IFLA_IPVLAN_FLAGS,
  IFLA_IPVLAN_MODE,
  IFLA_MACVLAN,
  IFLA_VLAN_ID,
  IFLA_VRF_TABLE,
  ifaddrmsg,
  ifinfomsg,
  ipBytes,
  macBytes,
  MessageWriter,
  NLM_F_ACK,
  NLM_F_APPEND,
  NLM_F_CREATE,
  NLM_F_DUMP,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  NLM_F_REQUEST,
  RT_SCOPE,
  RT_TABLE,
  RTA,
  RTM,
  rtmsg,
  RTN_UNICAST,
  RTNH_F_ONLINK,
  RTPROT_BOOT,
  VETH_INFO_PEER,
} from "./codec.ts";

/**
 * The rtnetlink request of each link operation, built as iproute2 builds it for the same batch line
 * (ip/iplink.c, ipaddress.c, iproute.c): same message type, flags, header fields and attributes, so
 * the kernel does the same and answers the same. `carries` says which ops this covers: only those
 * whose every argument ip would pass to the kernel unchanged; the rest (other kinds, names ip
 * resolves itself, arguments ip refuses with its own words) stay with ip.
 */

/** An ifname ip looks up as given (not "ifN", which it reads as an index) and would accept. */
const plainName = (s: string) =>
  /^[\x21-\x7e]{1,15}$/.test(s) && !s.includes("/") && !/^if\d+$/.test(s) && s !== "." && s !== "..";
/** A namespace given as a path (a bare name is ip's /run/netns lookup, left to ip). */
const nsPath = (s: string | undefined) => s === undefined || (s.includes("/") && !s.includes("\0"));
const u32 = (n: number | undefined) => n === undefined || (Number.isInteger(n) && n >= 0 && n <= 0xffffffff);
const mac = (s: string | undefined) => s === undefined || macBytes(s) !== undefined;

export interface Prefix {
  family: number;
  bytes: Uint8Array;
  len: number;
}

/** ip's get_prefix for an address with or without /len (no "default" or other words). */
export function parsePrefix(text: string): Prefix | undefined {
  const [addr, len, extra] = text.split("/");
  if (extra !== undefined || addr === undefined) return undefined;
  const bytes = ipBytes(addr);
  if (!bytes) return undefined;
  const max = bytes.length * 8;
  if (len !== undefined && !/^\d{1,3}$/.test(len)) return undefined;
  const n = len === undefined ? max : Number(len);
  if (n > max) return undefined;
  return { family: bytes.length === 4 ? AF_INET : AF_INET6, bytes, len: n };
}

const carriedKind = (k: LinkKind) =>
  (k.type === "veth" && plainName(k.peer.name) && u32(k.peer.mtu) && mac(k.peer.mac) && nsPath(k.peer.netns)) ||
  k.type === "bridge" ||
  k.type === "dummy" ||
  (k.type === "vrf" && u32(k.table)) ||
  (k.type === "macvlan" && plainName(k.parent) && u32(k.bcqueuelen)) ||
  ((k.type === "ipvlan" || k.type === "vlan") && plainName(k.parent));

export function carries(o: LinkOp): boolean {
  switch (o.op) {
    case "link-add":
      return plainName(o.dev) && u32(o.mtu) && mac(o.mac) && nsPath(o.netns) && carriedKind(o.kind);
    case "link-set":
      return (
        plainName(o.dev) &&
        u32(o.mtu) &&
        u32(o.txqlen) &&
        mac(o.mac) &&
        nsPath(o.netns) &&
        (o.name === undefined || plainName(o.name)) &&
        (o.alias === undefined || o.alias === null || /^[\x21-\x7e]{1,255}$/.test(o.alias)) &&
        (o.master === undefined || o.master === null || plainName(o.master))
      );
    case "link-del":
    case "port-set":
    case "show":
      return plainName(o.dev);
    case "ports":
      return plainName(o.master);
    case "links":
    case "routes":
      return true;
    case "addr": {
      const p = parsePrefix(o.cidr);
      return plainName(o.dev) && p !== undefined && !(o.broadcast && p.family !== AF_INET);
    }
    case "route": {
      const d = parsePrefix(o.dst);
      const same = (s: string | undefined) => s === undefined || parsePrefix(s)?.family === d?.family;
      const hostOnly = (s: string | undefined) => s === undefined || !s.includes("/");
      return (
        plainName(o.dev) &&
        d !== undefined &&
        same(o.via) &&
        hostOnly(o.via) &&
        same(o.src) &&
        hostOnly(o.src) &&
        u32(o.metric) &&
        u32(o.table) &&
        (o.scope === undefined || (Number.isInteger(o.scope) && o.scope >= 0 && o.scope <= 255))
      );
    }
    default:
      return false;
  }
}

// --- the messages ---------------------------------------------------------------------------------

const ACKED = NLM_F_REQUEST | NLM_F_ACK;

/** What a request needs resolved first: ifindexes (by name) and namespace fds (by path), by the carrier. */
export interface Resolved {
  /** `argument`: named as an argument (a master), which ip resolves while parsing, with other words. */
  index: (name: string, argument?: boolean) => number;
  nsFd: (path: string) => number;
}

/** Lookup of one link by name (RTM_GETLINK with IFLA_IFNAME); the answer is the link's RTM_NEWLINK. */
export const getLinkByName = (name: string) =>
  new MessageWriter(RTM.GETLINK, NLM_F_REQUEST).raw(ifinfomsg({})).str(IFLA.IFNAME, name);

export const getLinkByIndex = (index: number) =>
  new MessageWriter(RTM.GETLINK, NLM_F_REQUEST).raw(ifinfomsg({ index }));

export const dumpLinks = () => new MessageWriter(RTM.GETLINK, NLM_F_REQUEST | NLM_F_DUMP).raw(ifinfomsg({}));

export const dumpAddrs = () =>
  new MessageWriter(RTM.GETADDR, NLM_F_REQUEST | NLM_F_DUMP).raw(ifaddrmsg({ family: AF_UNSPEC }));

export const dumpRoutes = (family: 4 | 6) =>
  new MessageWriter(RTM.GETROUTE, NLM_F_REQUEST | NLM_F_DUMP).raw(rtmsg({ family: family === 4 ? AF_INET : AF_INET6 }));

type NsArg = { netns?: string };

function netnsAttr(w: MessageWriter, o: NsArg, r: Resolved) {
  if (o.netns !== undefined) w.u32(IFLA.NET_NS_FD, r.nsFd(o.netns));
}

/** linux/if_link.h: MACVLAN_MODE_*, IPVLAN_MODE_*, IPVLAN_F_* (the flags as ip's words). */
const MACVLAN_MODE = { private: 1, vepa: 2, bridge: 4, passthru: 8, source: 16 } as const;
const IPVLAN_MODE = { l2: 0, l3: 1, l3s: 2 } as const;
const IPVLAN_FLAG = { bridge: 0, private: 1, vepa: 2 } as const;

function linkAdd(o: Extract<LinkOp, { op: "link-add" }>, r: Resolved): MessageWriter {
  const w = new MessageWriter(RTM.NEWLINK, ACKED | NLM_F_CREATE | NLM_F_EXCL).raw(ifinfomsg({}));
  w.str(IFLA.IFNAME, o.dev);
  if (o.mtu !== undefined) w.u32(IFLA.MTU, o.mtu);
  if (o.mac !== undefined) w.attr(IFLA.ADDRESS, macBytes(o.mac)!);
  netnsAttr(w, o, r);
  w.begin(IFLA.LINKINFO).str(IFLA_INFO.KIND, o.kind.type);
  const k = o.kind;
  if (k.type === "veth") {
    // The peer is a whole ifinfomsg with its own attributes, nested in the kind's data.
    w.begin(IFLA_INFO.DATA).begin(VETH_INFO_PEER).raw(ifinfomsg({})).str(IFLA.IFNAME, k.peer.name);
    if (k.peer.mtu !== undefined) w.u32(IFLA.MTU, k.peer.mtu);
    if (k.peer.mac !== undefined) w.attr(IFLA.ADDRESS, macBytes(k.peer.mac)!);
    netnsAttr(w, k.peer, r);
    w.end().end();
  } else if (k.type === "bridge" && k.vlanFiltering) {
    w.begin(IFLA_INFO.DATA).u8(IFLA_BR.VLAN_FILTERING, 1).end();
  } else if (k.type === "vrf") {
    w.begin(IFLA_INFO.DATA).u32(IFLA_VRF_TABLE, k.table).end();
  } else if (k.type === "macvlan") {
    w.begin(IFLA_INFO.DATA).u32(IFLA_MACVLAN.MODE, MACVLAN_MODE[k.mode]);
    if (k.bcqueuelen !== undefined) w.u32(IFLA_MACVLAN.BC_QUEUE_LEN, k.bcqueuelen);
    w.end();
  } else if (k.type === "ipvlan") {
    w.begin(IFLA_INFO.DATA).u16(IFLA_IPVLAN_MODE, IPVLAN_MODE[k.mode]);
    if (k.flag !== undefined) w.u16(IFLA_IPVLAN_FLAGS, IPVLAN_FLAG[k.flag]);
    w.end();
  } else if (k.type === "vlan") {
    w.begin(IFLA_INFO.DATA).u16(IFLA_VLAN_ID, k.id).end();
  }
  w.end();
  // The parent, as ip's `link NAME`: resolved in the namespace the request is made in.
  if (k.type === "macvlan" || k.type === "ipvlan" || k.type === "vlan") w.u32(IFLA.LINK, r.index(k.parent));
  return w;
}

function linkSet(o: Extract<LinkOp, { op: "link-set" }>, r: Resolved): MessageWriter {
  // ip's order: arguments first (namespace, master), the device last.
  const attrs: ((w: MessageWriter) => void)[] = [];
  if (o.netns !== undefined) {
    const fd = r.nsFd(o.netns);
    attrs.push((w) => w.u32(IFLA.NET_NS_FD, fd));
  }
  if (o.name !== undefined) attrs.push((w) => w.str(IFLA.IFNAME, o.name!));
  // As ip sends it: the bytes without a NUL, so an empty one clears the alias.
  if (o.alias !== undefined) attrs.push((w) => w.attr(IFLA.IFALIAS, new TextEncoder().encode(o.alias ?? "")));
  if (o.mac !== undefined) attrs.push((w) => w.attr(IFLA.ADDRESS, macBytes(o.mac!)!));
  if (o.mtu !== undefined) attrs.push((w) => w.u32(IFLA.MTU, o.mtu!));
  if (o.master !== undefined) {
    const m = o.master === null ? 0 : r.index(o.master, true);
    attrs.push((w) => w.u32(IFLA.MASTER, m));
  }
  if (o.txqlen !== undefined) attrs.push((w) => w.u32(IFLA.TXQLEN, o.txqlen!));
  let flags = 0;
  let change = 0;
  const bit = (on: boolean | undefined, f: number) => {
    if (on === undefined) return;
    change |= f;
    if (on) flags |= f;
  };
  bit(o.promisc, IFF.PROMISC);
  bit(o.allmulti, IFF.ALLMULTI);
  bit(o.up, IFF.UP);
  const w = new MessageWriter(RTM.NEWLINK, ACKED).raw(ifinfomsg({ index: r.index(o.dev), flags, change }));
  for (const a of attrs) a(w);
  return w;
}

function addrMsg(o: Extract<LinkOp, { op: "addr" }>, r: Resolved): MessageWriter {
  const p = parsePrefix(o.cidr)!;
  const del = o.verb === "del";
  const type = del ? RTM.DELADDR : RTM.NEWADDR;
  const flags =
    ACKED | (o.verb === "add" ? NLM_F_CREATE | NLM_F_EXCL : o.verb === "replace" ? NLM_F_CREATE | NLM_F_REPLACE : 0);
  // ip's default_scope: host for 127/8, else left to the kernel.
  const scope = !del && p.family === AF_INET && p.bytes[0] === 127 ? RT_SCOPE.HOST : 0;
  const w = new MessageWriter(type, flags).raw(
    ifaddrmsg({
      family: p.family,
      prefixlen: p.len,
      flags: o.nodad ? IFA_F.NODAD : 0,
      scope,
      index: r.index(o.dev),
    }),
  );
  w.attr(IFA.LOCAL, p.bytes);
  if (!del) w.attr(IFA.ADDRESS, p.bytes);
  if (o.broadcast && !del && p.len <= 30) {
    const brd = Uint8Array.from(p.bytes);
    for (let bitI = p.len; bitI < 32; bitI++) brd[bitI >> 3]! |= 0x80 >> (bitI & 7);
    w.attr(IFA.BROADCAST, brd);
  }
  return w;
}

function routeMsg(o: Extract<LinkOp, { op: "route" }>, r: Resolved): MessageWriter {
  const d = parsePrefix(o.dst)!;
  const del = o.verb === "del";
  const type = del ? RTM.DELROUTE : RTM.NEWROUTE;
  const flags = ACKED | (del ? 0 : NLM_F_CREATE | (o.verb === "append" ? NLM_F_APPEND : NLM_F_REPLACE));
  const table = o.table ?? RT_TABLE.MAIN;
  // ip's defaults when no scope is given: IPv6 always universe; an IPv4 delete matches any scope;
  // an IPv4 route without a gateway is link scope.
  const scope =
    o.scope ??
    (d.family === AF_INET6 ? RT_SCOPE.UNIVERSE : del ? RT_SCOPE.NOWHERE : o.via ? RT_SCOPE.UNIVERSE : RT_SCOPE.LINK);
  // Resolve the device after the arguments, as ip does.
  const oif = r.index(o.dev);
  const w = new MessageWriter(type, flags).raw(
    rtmsg({
      family: d.family,
      dstLen: d.len,
      table: table < 256 ? table : RT_TABLE.UNSPEC,
      protocol: del ? 0 : RTPROT_BOOT,
      scope,
      type: del ? 0 : RTN_UNICAST,
      flags: o.onlink ? RTNH_F_ONLINK : 0,
    }),
  );
  w.attr(RTA.DST, d.bytes);
  if (o.via !== undefined) w.attr(RTA.GATEWAY, parsePrefix(o.via)!.bytes);
  if (table >= 256) w.u32(RTA.TABLE, table);
  w.u32(RTA.OIF, oif);
  if (o.metric !== undefined) w.u32(RTA.PRIORITY, o.metric);
  if (o.src !== undefined) w.attr(RTA.PREFSRC, parsePrefix(o.src)!.bytes);
  return w;
}

/** The change request of a non-report op this module carries. */
export function changeRequest(o: LinkOp, r: Resolved): MessageWriter {
  switch (o.op) {
    case "link-add":
      return linkAdd(o, r);
    case "link-set":
      return linkSet(o, r);
    case "link-del":
      return new MessageWriter(RTM.DELLINK, ACKED).raw(ifinfomsg({ index: r.index(o.dev) }));
    case "port-set":
      // `type bridge_slave`: the port's settings under the slave kind "bridge".
      return new MessageWriter(RTM.NEWLINK, ACKED)
        .raw(ifinfomsg({ index: r.index(o.dev) }))
        .begin(IFLA.LINKINFO)
        .str(IFLA_INFO.SLAVE_KIND, "bridge")
        .begin(IFLA_INFO.SLAVE_DATA)
        .u8(IFLA_BRPORT.MODE, o.hairpin ? 1 : 0)
        .u8(IFLA_BRPORT.ISOLATED, o.isolated ? 1 : 0)
        .end()
        .end();
    case "addr":
      return addrMsg(o, r);
    case "route":
      return routeMsg(o, r);
    default:
      throw new Error(`netlink: ${o.op} is not a change this carrier makes`);
  }
}
