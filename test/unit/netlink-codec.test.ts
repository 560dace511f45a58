import { test } from "uvu";
import * as assert from "uvu/assert";
import {
  errorText,
  getStr,
  getU32,
  IFLA,
  IFLA_INFO,
  IFLA_VRF_TABLE,
  ipBytes,
  ipText,
  MessageWriter,
  NLA_F_NESTED,
  NLM_F_ACK_TLVS,
  NLM_F_CAPPED,
  NLMSG_ERROR,
  parseAttrs,
  parseError,
  parseIfinfo,
  parseMessages,
  parseRtmsg,
  RTM,
  VETH_INFO_PEER,
} from "../../lib/kernel/netlink/codec.ts";
import { linkFlags, linkReport, routeReport } from "../../lib/kernel/netlink/reports.ts";
import { carries, changeRequest, type Resolved } from "../../lib/kernel/netlink/requests.ts";

// The rtnetlink codec without a kernel: what it writes reads back the same, nested and aligned.

const resolved: Resolved = { index: (n) => (n === "cni0" ? 7 : 3), nsFd: () => 42 };

test("a veth link-add nests the peer's ifinfomsg and attributes under LINKINFO/DATA/PEER", () => {
  const w = changeRequest(
    {
      op: "link-add",
      dev: "veth1",
      mtu: 1400,
      kind: { type: "veth", peer: { name: "eth0", mtu: 1400, mac: "02:00:00:00:00:01", netns: "/proc/1/ns/net" } },
    },
    resolved,
  );
  const bytes = w.finish(9);
  assert.is(bytes.length % 4, 0, "messages are 4-aligned");
  const [m] = parseMessages(bytes);
  assert.is(m!.type, RTM.NEWLINK);
  assert.is(m!.seq, 9);
  const link = parseIfinfo(m!.body);
  assert.is(getStr(link.attrs.get(IFLA.IFNAME)), "veth1");
  assert.is(getU32(link.attrs.get(IFLA.MTU)), 1400);
  const info = parseAttrs(link.attrs.get(IFLA.LINKINFO)!);
  assert.is(getStr(info.get(IFLA_INFO.KIND)), "veth");
  const peer = parseIfinfo(parseAttrs(info.get(IFLA_INFO.DATA)!).get(VETH_INFO_PEER)!);
  assert.is(getStr(peer.attrs.get(IFLA.IFNAME)), "eth0");
  assert.equal(Array.from(peer.attrs.get(IFLA.ADDRESS)!), [2, 0, 0, 0, 0, 1]);
  assert.is(getU32(peer.attrs.get(IFLA.NET_NS_FD)), 42);
});

test("a vrf link-add carries its table under LINKINFO/DATA; the report reads it back as ip -d prints it", () => {
  const op = { op: "link-add", dev: "vrf0", kind: { type: "vrf", table: 70000 } } as const;
  assert.ok(carries(op));
  const [m] = parseMessages(changeRequest(op, resolved).finish(1));
  const link = parseIfinfo(m!.body);
  const info = parseAttrs(link.attrs.get(IFLA.LINKINFO)!);
  assert.is(getStr(info.get(IFLA_INFO.KIND)), "vrf");
  assert.is(getU32(parseAttrs(info.get(IFLA_INFO.DATA)!).get(IFLA_VRF_TABLE)), 70000);
  // The request's body has the shape of the kernel's RTM_NEWLINK: read as a report.
  assert.equal(linkReport(link, () => undefined).linkinfo, { info_kind: "vrf", info_data: { table: 70000 } });
  assert.not.ok(carries({ op: "link-add", dev: "vrf0", kind: { type: "vrf", table: -1 } }), "ip refuses it itself");
});

test("a route report names its protocol as ip does, a number when ip has no name for it", () => {
  const route = (protocol: number) => {
    const w = new MessageWriter(RTM.NEWROUTE, 0).raw(Uint8Array.of(2, 24, 0, 0, 254, protocol, 0, 1, 0, 0, 0, 0));
    w.attr(1, Uint8Array.of(10, 0, 0, 0));
    const body = parseMessages(w.finish(1))[0]!.body;
    return routeReport(parseRtmsg(body), () => undefined);
  };
  assert.equal(route(2), { dst: "10.0.0.0/24", table: "main", protocol: "kernel", type: "unicast", scope: "global" });
  assert.is(route(3).protocol, "boot");
  assert.is(route(186).protocol, "186");
});

test("a multipath route's nexthops as ip prints them: gateway, dev, weight (hops + 1)", () => {
  // Two struct rtnexthop (len, flags, hops, ifindex) each followed by its RTA_GATEWAY.
  const nh = (hops: number, ifindex: number, gw: number[]) => {
    const b = new Uint8Array(16);
    const d = new DataView(b.buffer);
    d.setUint16(0, 16, true);
    b[3] = hops;
    d.setInt32(4, ifindex, true);
    d.setUint16(8, 8, true);
    d.setUint16(10, 5, true);
    b.set(gw, 12);
    return b;
  };
  const w = new MessageWriter(RTM.NEWROUTE, 0).raw(Uint8Array.of(2, 0, 0, 0, 254, 3, 0, 1, 0, 0, 0, 0));
  w.attr(9, Uint8Array.from([...nh(0, 7, [10, 0, 0, 1]), ...nh(2, 3, [10, 1, 0, 1])]));
  const names: Record<number, string> = { 7: "eth0", 3: "net1" };
  const r = routeReport(parseRtmsg(parseMessages(w.finish(1))[0]!.body), (i) => ({ name: names[i]!, flags: 1 }));
  assert.is(r.dev, undefined);
  assert.equal(r.nexthops, [
    { gateway: "10.0.0.1", dev: "eth0", weight: 1 },
    { gateway: "10.1.0.1", dev: "net1", weight: 3 },
  ]);
});

test("nested attributes carry the nested flag and their whole length; odd lengths are padded", () => {
  const w = new MessageWriter(RTM.NEWLINK, 1).begin(5).str(3, "ab").u8(4, 1).end().str(3, "xyz1");
  const body = parseMessages(w.finish(1))[0]!.body;
  const view = new DataView(body.buffer, body.byteOffset);
  assert.is(view.getUint16(2, true), 5 | NLA_F_NESTED);
  assert.is(view.getUint16(0, true), 4 + 8 + 8, "header + 'ab\\0' padded to 8 + u8 padded to 8");
  const outer = parseAttrs(body);
  assert.is(getStr(outer.get(3)), "xyz1", "the type without its flag bits");
  assert.is(outer.get(5)!.length, 16);
  assert.is(getStr(parseAttrs(outer.get(5)!).get(3)), "ab");
  assert.throws(() => new MessageWriter(1, 1).begin(1).finish(1), /unclosed/);
});

test("route, address and port requests: headers as ip sets them", () => {
  const r = parseMessages(
    changeRequest({ op: "route", verb: "append", dst: "10.1.0.0/16", dev: "eth0", metric: 5 }, resolved).finish(1),
  )[0]!;
  assert.equal(Array.from(r.body.subarray(0, 8)), [2, 16, 0, 0, 254, 3, 253, 1], "main table, boot, link scope");
  const v6 = parseMessages(
    changeRequest({ op: "route", verb: "del", dst: "fd00::/64", via: "fd00::1", dev: "eth0" }, resolved).finish(1),
  )[0]!;
  assert.is(v6.type, RTM.DELROUTE);
  assert.is(v6.body[6], 0, "IPv6 deletes are universe scope");
  const a = parseMessages(
    changeRequest({ op: "addr", verb: "add", dev: "cni0", cidr: "10.0.0.1/24", broadcast: true }, resolved).finish(1),
  )[0]!;
  assert.equal(Array.from(a.body.subarray(0, 8)), [2, 24, 0, 0, 7, 0, 0, 0]);
  assert.equal(Array.from(parseAttrs(a.body, 8).get(4)!), [10, 0, 0, 255], "the subnet broadcast");
});

test("carries: only ops ip would hand the kernel unchanged", () => {
  assert.ok(carries({ op: "link-set", dev: "eth0", up: true, master: "cni0" }));
  assert.not.ok(carries({ op: "link-set", dev: "if7", up: true }), "ip reads ifN as an index");
  assert.not.ok(carries({ op: "link-set", dev: "a-name-too-long-for-linux", up: true }));
  assert.not.ok(carries({ op: "link-set", dev: "eth0", mac: "zz" }));
  assert.ok(carries({ op: "link-add", dev: "v0", kind: { type: "vlan", parent: "eth0", id: 5 } }));
  assert.not.ok(
    carries({ op: "link-add", dev: "v0", kind: { type: "vlan", parent: "if3", id: 5 } }),
    "parent as index",
  );
  assert.not.ok(carries({ op: "link-add", dev: "vx0", kind: { type: "vxlan", id: 1, parent: "eth0" } }));
  assert.not.ok(carries({ op: "link-add", dev: "v0", kind: { type: "veth", peer: { name: "p", netns: "named" } } }));
  assert.not.ok(carries({ op: "addr", verb: "add", dev: "eth0", cidr: "fd00::1/64", broadcast: true }));
  assert.not.ok(carries({ op: "route", verb: "append", dst: "10.0.0.0/8", via: "fd00::1", dev: "eth0" }));
  assert.not.ok(carries({ op: "fdb", verb: "append", dev: "vx0", mac: "00:00:00:00:00:00" }));
  assert.not.ok(carries({ op: "neigh", verb: "replace", dev: "eth0", ip: "10.0.0.1" }));
});

test("addresses round-trip as inet_ntop writes them", () => {
  for (const s of [
    "10.1.2.3",
    "::",
    "::1",
    "fe80::",
    "fd00:1::2:0:0:3",
    "2001:db8::1:0:0:1",
    "::ffff:1.2.3.4",
    "1:2:3:4:5:6:7:8",
  ])
    assert.is(ipText(ipBytes(s)!), s);
  assert.is(ipText(ipBytes("2001:0db8:0:0:1:0:0:1")!), "2001:db8::1:0:0:1", "first longest run");
  assert.is(ipText(ipBytes("fd00:0:1:0:0:0:0:1")!), "fd00:0:1::1");
  for (const bad of ["1.2.3", "256.1.1.1", "1::2::3", "1:2:3:4:5:6:7:8:9", "g::1"]) assert.is(ipBytes(bad), undefined);
});

test("errors: the kernel's extended ACK message, else RTNETLINK answers and the errno's text", () => {
  assert.is(errorText({ errno: 17 }), "RTNETLINK answers: File exists");
  assert.is(errorText({ errno: 3 }), "RTNETLINK answers: No such process");
  assert.is(
    errorText({ errno: 22, message: "ipv4: Address already assigned" }),
    "Error: ipv4: Address already assigned.",
  );
  assert.is(errorText({ errno: 22, message: "Nexthop has invalid gateway." }), "Error: Nexthop has invalid gateway.");
  assert.is(errorText({ errno: 4095 }), "RTNETLINK answers: Unknown error 4095");
  // A capped ACK with its TLVs, as the kernel sends it: errno, the request's header, then the message.
  const body = new MessageWriter(0, 0);
  const raw = new Uint8Array(4 + 16);
  const d = new DataView(raw.buffer);
  d.setInt32(0, -17, true);
  d.setUint32(4, 16, true);
  d.setUint32(12, 77, true);
  body.raw(raw).str(1, "bad thing");
  const msg = body.finish(77);
  new DataView(msg.buffer).setUint16(4, NLMSG_ERROR, true);
  new DataView(msg.buffer).setUint16(6, NLM_F_CAPPED | NLM_F_ACK_TLVS, true);
  assert.equal(parseError(parseMessages(msg)[0]!), { errno: 17, seq: 77, message: "bad thing" });
});

test("link flags in ip's order, NO-CARRIER for up without carrier", () => {
  assert.equal(linkFlags(0x1 | 0x2 | 0x1000 | 0x40 | 0x10000), ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"]);
  assert.equal(linkFlags(0x1 | 0x8 | 0x40 | 0x10000), ["LOOPBACK", "UP", "LOWER_UP"]);
  assert.equal(linkFlags(0x1 | 0x2 | 0x1000 | 0x100), ["NO-CARRIER", "BROADCAST", "MULTICAST", "PROMISC", "UP"]);
});

test.run();
