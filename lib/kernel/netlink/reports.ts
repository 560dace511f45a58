import type { IpAddr, IpLink, IpRoute } from "../link.ts";
import {
  AF_INET,
  AF_INET6,
  getI32,
  getStr,
  getU16,
  getU32,
  getU8,
  hexText,
  IFA,
  IFA_F,
  IFLA,
  IFLA_BR,
  IFLA_INFO,
  IFLA_IPVLAN_MODE,
  IFLA_MACVLAN,
  IFLA_VLAN_ID,
  IFLA_TUN,
  IFLA_VRF_TABLE,
  ipText,
  parseAttrs,
  RT_TABLE,
  RTA,
  type IfAddr,
  type IfInfo,
  type RtMsg,
  type Attrs,
} from "./codec.ts";

/**
 * Kernel messages as the report types, field for field what `ip -j -d` prints for them (ip's
 * print_linkinfo, print_addrinfo and print_route), so a plugin cannot tell which carrier read them.
 * Only the fields the types name are produced.
 */

/** Resolves an ifindex of the same namespace to its name and flags (ip's ll_index_to_name/_flags). */
export type NameOf = (index: number) => { name: string; flags: number } | undefined;

// ip's print_link_flags: NO-CARRIER for up without RUNNING, then these bits in this order.
const FLAG_NAMES: [number, string][] = [
  [0x8, "LOOPBACK"],
  [0x2, "BROADCAST"],
  [0x10, "POINTOPOINT"],
  [0x1000, "MULTICAST"],
  [0x80, "NOARP"],
  [0x200, "ALLMULTI"],
  [0x100, "PROMISC"],
  [0x20, "NOTRAILERS"],
  [0x4, "DEBUG"],
  [0x8000, "DYNAMIC"],
  [0x4000, "AUTOMEDIA"],
  [0x2000, "PORTSEL"],
  [0x400, "MASTER"],
  [0x800, "SLAVE"],
  [0x1, "UP"],
  [0x10000, "LOWER_UP"],
  [0x20000, "DORMANT"],
  [0x40000, "ECHO"],
];
const IFF_RUNNING = 0x40;

export function linkFlags(flags: number): string[] {
  const out: string[] = [];
  if (flags & 0x1 && !(flags & IFF_RUNNING)) out.push("NO-CARRIER");
  let rest = flags & ~IFF_RUNNING;
  for (const [bit, name] of FLAG_NAMES) {
    if (rest & bit) {
      out.push(name);
      rest &= ~bit;
    }
  }
  if (rest) out.push(rest.toString(16));
  return out;
}

const OPERSTATES = ["UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP"];

// ip's ll_types.c for the link types this suite meets.
const LINK_TYPES: Record<number, string> = {
  1: "ether",
  32: "infiniband",
  512: "ppp",
  768: "ipip",
  769: "tunnel6",
  772: "loopback",
  776: "sit",
  778: "gre",
  801: "ieee802.11",
  823: "gre6",
  65534: "none",
  65535: "void",
};

/** ip's ll_addr_n2a: tunnels' addresses as IP text, everything else as colon-separated hex. */
function linkAddress(type: number, b: Uint8Array): string {
  if (b.length === 4 && (type === 768 || type === 776 || type === 778)) return ipText(b);
  if (b.length === 16 && (type === 769 || type === 823)) return ipText(b);
  return hexText(b);
}

const MACVLAN_MODES: Record<number, string> = { 1: "private", 2: "vepa", 4: "bridge", 8: "passthru", 16: "source" };
const IPVLAN_MODES = ["l2", "l3", "l3s"];

type InfoData = NonNullable<NonNullable<IpLink["linkinfo"]>["info_data"]>;

/** The typed part of a kind's IFLA_INFO_DATA; undefined when the kind has none of it. */
function infoData(kind: string, data: Attrs): InfoData | undefined {
  const out: InfoData = {};
  switch (kind) {
    case "bridge": {
      const pvid = getU16(data.get(IFLA_BR.VLAN_DEFAULT_PVID));
      if (pvid !== undefined) out.vlan_default_pvid = pvid;
      break;
    }
    case "macvlan":
    case "macvtap": {
      const mode = getU32(data.get(IFLA_MACVLAN.MODE));
      if (mode !== undefined) out.mode = MACVLAN_MODES[mode] ?? "unknown";
      const q = getU32(data.get(IFLA_MACVLAN.BC_QUEUE_LEN));
      if (q !== undefined) out.bcqueuelen = q;
      break;
    }
    case "ipvlan":
    case "ipvtap": {
      const mode = getU16(data.get(IFLA_IPVLAN_MODE));
      if (mode !== undefined) out.mode = IPVLAN_MODES[mode] ?? "unknown";
      break;
    }
    case "vlan": {
      const id = getU16(data.get(IFLA_VLAN_ID));
      if (id !== undefined) out.id = id;
      break;
    }
    case "tun": {
      const type = getU8(data.get(IFLA_TUN.TYPE));
      if (type !== undefined) out.type = type === 2 ? "tap" : type === 1 ? "tun" : "unknown";
      const mq = getU8(data.get(IFLA_TUN.MULTI_QUEUE));
      if (mq !== undefined) out.multi_queue = mq !== 0;
      break;
    }
    case "vrf": {
      const table = getU32(data.get(IFLA_VRF_TABLE));
      if (table !== undefined) out.table = table;
      break;
    }
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

function linkinfo(a: Attrs): IpLink["linkinfo"] {
  const raw = a.get(IFLA.LINKINFO);
  if (!raw) return undefined;
  const li = parseAttrs(raw);
  const out: NonNullable<IpLink["linkinfo"]> = {};
  const kind = getStr(li.get(IFLA_INFO.KIND));
  if (kind !== undefined) {
    out.info_kind = kind;
    const data = li.get(IFLA_INFO.DATA);
    const typed = data ? infoData(kind, parseAttrs(data)) : undefined;
    if (typed) out.info_data = typed;
  }
  const slave = getStr(li.get(IFLA_INFO.SLAVE_KIND));
  if (slave !== undefined) out.info_slave_kind = slave;
  return out;
}

/** One RTM_NEWLINK as `ip -j -d link show` prints it. */
export function linkReport(i: IfInfo, nameOf: NameOf): IpLink {
  const a = i.attrs;
  const link: IpLink = {
    ifindex: i.index,
    ifname: getStr(a.get(IFLA.IFNAME)) ?? "",
    flags: linkFlags(i.flags),
    mtu: getU32(a.get(IFLA.MTU)) ?? 0,
  };
  const oper = getU8(a.get(IFLA.OPERSTATE));
  if (oper !== undefined) link.operstate = OPERSTATES[oper] ?? "UNKNOWN";
  const txq = getU32(a.get(IFLA.TXQLEN));
  if (txq !== undefined) link.txqlen = txq;
  link.link_type = LINK_TYPES[i.type] ?? `[${i.type}]`;
  const addr = a.get(IFLA.ADDRESS);
  if (addr) link.address = linkAddress(i.type, addr);
  const master = getU32(a.get(IFLA.MASTER));
  if (master !== undefined) link.master = nameOf(master)?.name ?? `if${master}`;
  const netnsid = getI32(a.get(IFLA.LINK_NETNSID));
  const parent = getU32(a.get(IFLA.LINK));
  if (parent !== undefined && parent !== 0) {
    if (netnsid !== undefined) link.link_index = parent;
    else {
      const p = nameOf(parent);
      link.link = p?.name ?? `if${parent}`;
      // ip marks a link whose parent (a veth's peer) is down, when it can see it.
      if (!((p?.flags ?? 0) & 0x1)) link.flags.push("M-DOWN");
    }
  }
  // A zero parent ip prints as "link": null; the type has no null, so the key stays out.
  if (netnsid !== undefined) link.link_netnsid = netnsid;
  const promisc = getU32(a.get(IFLA.PROMISCUITY));
  if (promisc !== undefined) link.promiscuity = promisc;
  const info = linkinfo(a);
  if (info) link.linkinfo = info;
  const alias = getStr(a.get(IFLA.IFALIAS));
  if (alias) link.ifalias = alias;
  return link;
}

const SCOPES: Record<number, string> = { 0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere" };

/** One RTM_NEWADDR as an entry of `ip -j addr show`'s addr_info. */
export function addrReport(m: IfAddr): IpAddr | undefined {
  if (m.family !== AF_INET && m.family !== AF_INET6) return undefined;
  const local = m.attrs.get(IFA.LOCAL) ?? m.attrs.get(IFA.ADDRESS);
  if (!local) return undefined;
  const flags = getU32(m.attrs.get(IFA.FLAGS)) ?? m.flags;
  const out: IpAddr = {
    family: m.family === AF_INET ? "inet" : "inet6",
    local: ipText(local),
    prefixlen: m.prefixlen,
    scope: SCOPES[m.scope] ?? String(m.scope),
  };
  if (flags & IFA_F.TENTATIVE) out.tentative = true;
  if (flags & IFA_F.DADFAILED) out.dadfailed = true;
  return out;
}

/** rtm_type as ip names it. */
const ROUTE_TYPES: Record<number, string> = {
  1: "unicast",
  2: "local",
  3: "broadcast",
  4: "anycast",
  5: "multicast",
  6: "blackhole",
  7: "unreachable",
  8: "prohibit",
  9: "throw",
  10: "nat",
};

/** rtm_protocol as ip names it (iproute2's rt_protos table, the entries this suite meets). */
const PROTOCOLS: Record<number, string> = {
  0: "unspec",
  1: "redirect",
  2: "kernel",
  3: "boot",
  4: "static",
  9: "ra",
  16: "dhcp",
};

const TABLES: Record<number, string> = {
  [RT_TABLE.UNSPEC]: "unspec",
  [RT_TABLE.DEFAULT]: "default",
  [RT_TABLE.MAIN]: "main",
  [RT_TABLE.LOCAL]: "local",
};

/** RTA_MULTIPATH's struct rtnexthop entries (length, flags, hops, ifindex, then attributes) as ip prints them. */
function nexthopsOf(b: Uint8Array, nameOf: NameOf): NonNullable<IpRoute["nexthops"]> {
  const out: NonNullable<IpRoute["nexthops"]> = [];
  const d = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (let off = 0; off + 8 <= b.length; ) {
    const len = d.getUint16(off, true);
    if (len < 8 || off + len > b.length) break;
    const ifindex = d.getInt32(off + 4, true);
    const gw = parseAttrs(b.subarray(off, off + len), 8).get(RTA.GATEWAY);
    out.push({
      ...(gw ? { gateway: ipText(gw) } : {}),
      dev: nameOf(ifindex)?.name ?? `if${ifindex}`,
      weight: b[off + 3]! + 1,
    });
    off += (len + 3) & ~3;
  }
  return out;
}

/** One RTM_NEWROUTE as `ip -j -d route show table all` prints it. */
export function routeReport(r: RtMsg & { attrs: Attrs }, nameOf: NameOf): IpRoute {
  const a = r.attrs;
  const hostLen = r.family === AF_INET6 ? 128 : 32;
  const dst = a.get(RTA.DST);
  const route: IpRoute = {
    dst: dst
      ? r.dstLen !== hostLen
        ? `${ipText(dst)}/${r.dstLen}`
        : ipText(dst)
      : r.dstLen
        ? `0/${r.dstLen}`
        : "default",
  };
  const gw = a.get(RTA.GATEWAY);
  if (gw) route.gateway = ipText(gw);
  const oif = getU32(a.get(RTA.OIF));
  if (oif !== undefined) route.dev = nameOf(oif)?.name ?? `if${oif}`;
  const table = getU32(a.get(RTA.TABLE)) ?? r.table;
  // With -d every table is named, main included.
  if (table) route.table = TABLES[table] ?? String(table);
  const metric = getU32(a.get(RTA.PRIORITY));
  if (metric !== undefined) route.metric = metric;
  route.protocol = PROTOCOLS[r.protocol] ?? String(r.protocol);
  route.type = ROUTE_TYPES[r.type] ?? String(r.type);
  route.scope = SCOPES[r.scope] ?? String(r.scope);
  const prefsrc = a.get(RTA.PREFSRC);
  if (prefsrc) route.prefsrc = ipText(prefsrc);
  const multipath = a.get(RTA.MULTIPATH);
  if (multipath) route.nexthops = nexthopsOf(multipath, nameOf);
  return route;
}
