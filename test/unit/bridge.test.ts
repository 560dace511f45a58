import { test } from "uvu";
import * as assert from "uvu/assert";
import { CniError } from "../../lib/cni/errors.ts";
import { splitJsonArrays } from "../../lib/kernel/link.ts";
import { parseCIDR } from "../../lib/ip/address.ts";
import { collectVlanTrunk, parseMac } from "../../plugins/bridge/config.ts";
import { configureOps, containerSysctls } from "../../lib/net/container.ts";
import { calcGateways, gatewayAddrOps } from "../../lib/net/gateways.ts";
import {
  iptablesMasqRules,
  iptablesSetupScript,
  iptablesTeardownLines,
  masqChainName,
  masqComment,
  sourceForms,
  staleMasqChains,
} from "../../lib/net/masquerade/iptables.ts";
import { nftComment, nftSetupScript } from "../../lib/net/masquerade/nftables.ts";
import { ruleLine } from "../../lib/netfilter/rules.ts";
import { spoofCheckScript } from "../../plugins/bridge/spoofcheck.ts";
import { portVlanOps, vethPairOp } from "../../lib/net/veth.ts";
import { lineOf } from "../../lib/kernel/link.ts";

// The typed link operations, checked as the iproute2 lines they render to.
const gatewayAddrLines = (...a: Parameters<typeof gatewayAddrOps>) => gatewayAddrOps(...a).map(lineOf);
const configureLines = (...a: Parameters<typeof configureOps>) => configureOps(...a).map(lineOf);
const portVlanLines = (...a: Parameters<typeof portVlanOps>) => portVlanOps(...a).map(lineOf);
const vethPairLine = (...a: Parameters<typeof vethPairOp>) => lineOf(vethPairOp(...a));

const cidr = (s: string) => parseCIDR(s)!;
const throwsMsg = (f: () => unknown, msg: string | RegExp) => {
  try {
    f();
  } catch (e) {
    assert.instance(e, CniError);
    if (typeof msg === "string") assert.is((e as Error).message, msg);
    else assert.match((e as Error).message, msg);
    return;
  }
  assert.unreachable("expected an error");
};

// ------------------------------------------------------------ names shared with the reference

test("masquerade chain and comment are the reference's (observed with /usr/lib/cni/bridge)", () => {
  assert.is(masqChainName("mynet", "abc123"), "CNI-70a29d9dc18bc4d652ea5d59");
  assert.is(masqComment("mynet", "abc123"), 'name: "mynet" id: "abc123"');
});

test("nftables comment: network hash, instance hash, readable tail, cut at 128", () => {
  assert.is(
    nftComment({ network: "mynet", containerId: "abc123", ifname: "eth0" }),
    "d23676b4f2d9fe04-ebce0e3dd4dafae3, net: mynet, if: eth0, id: abc123",
  );
  assert.is(nftComment({ network: "n", containerId: "x".repeat(200), ifname: "eth0" }).length, 128);
});

// ------------------------------------------------------------ iptables rule sets

const SAVED = `*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:CNI-70a29d9dc18bc4d652ea5d59 - [0:0]
:CNI-aaaaaaaaaaaaaaaaaaaaaaaa - [0:0]
-A POSTROUTING -s 10.22.0.2/32 -m comment --comment "name: \\"mynet\\" id: \\"abc123\\"" -j CNI-70a29d9dc18bc4d652ea5d59
-A POSTROUTING -s 10.22.0.9/32 -m comment --comment "name: \\"mynet\\" id: \\"abc123\\"" -j CNI-70a29d9dc18bc4d652ea5d59
-A CNI-70a29d9dc18bc4d652ea5d59 -d 10.22.0.0/24 -m comment --comment "name: \\"mynet\\" id: \\"abc123\\"" -j ACCEPT
-A CNI-70a29d9dc18bc4d652ea5d59 ! -d 224.0.0.0/4 -m comment --comment "name: \\"mynet\\" id: \\"abc123\\"" -j MASQUERADE
-A CNI-aaaaaaaaaaaaaaaaaaaaaaaa -d 10.9.0.0/16 -m comment --comment "name: \\"other\\" id: \\"zzz\\"" -j ACCEPT
COMMIT
`;

test("iptables rules render exactly as iptables-save prints them", () => {
  const rules = iptablesMasqRules(cidr("10.22.0.2/24"), "CNI-70a29d9dc18bc4d652ea5d59", 'name: "mynet" id: "abc123"');
  const saved = SAVED.split("\n");
  for (const r of rules) assert.ok(saved.includes(ruleLine("-A", r)), ruleLine("-A", r));
  const v6 = iptablesMasqRules(cidr("fd00:22::2/64"), "CNI-x", "c").map((r) => ruleLine("-A", r));
  assert.equal(v6, [
    "-A CNI-x -d fd00:22::/64 -m comment --comment c -j ACCEPT",
    "-A CNI-x ! -d ff00::/8 -m comment --comment c -j MASQUERADE",
    "-A POSTROUTING -s fd00:22::2/128 -m comment --comment c -j CNI-x",
  ]);
});

test("setup appends only what is absent and declares the chain only when new (declaring would flush it)", () => {
  const chain = "CNI-70a29d9dc18bc4d652ea5d59";
  const comment = 'name: "mynet" id: "abc123"';
  assert.is(iptablesSetupScript(iptablesMasqRules(cidr("10.22.0.2/24"), chain, comment), chain, SAVED), "");
  const second = iptablesSetupScript(iptablesMasqRules(cidr("10.22.0.5/24"), chain, comment), chain, SAVED);
  assert.equal(second.split("\n"), [
    "*nat",
    `-A POSTROUTING -s 10.22.0.5/32 -m comment --comment "name: \\"mynet\\" id: \\"abc123\\"" -j ${chain}`,
    "COMMIT",
    "",
  ]);
  const fresh = iptablesSetupScript(iptablesMasqRules(cidr("10.1.0.2/16"), "CNI-new", "c"), "CNI-new", SAVED);
  assert.equal(fresh.split("\n").slice(0, 2), ["*nat", ":CNI-new - [0:0]"]);
});

test("teardown: every jump and the chain when addresses are unknown; only ours while another interface still jumps", () => {
  const chain = "CNI-70a29d9dc18bc4d652ea5d59";
  const all = iptablesTeardownLines(SAVED, chain);
  assert.is(all.length, 4);
  assert.ok(all[0]!.startsWith(`-D POSTROUTING -s 10.22.0.2/32 `));
  assert.equal(all.slice(2), [`-F ${chain}`, `-X ${chain}`]);
  assert.equal(
    iptablesTeardownLines(SAVED, chain, sourceForms([cidr("10.22.0.2/24")])).length,
    1,
    "10.22.0.9 still uses the chain",
  );
  assert.is(iptablesTeardownLines(SAVED, chain, sourceForms([cidr("10.22.0.2/24"), cidr("10.22.0.9/24")])).length, 4);
  assert.equal(iptablesTeardownLines(SAVED, "CNI-absent"), []);
  // The legacy -s <ip/prefix> form counts as ours too.
  assert.ok(sourceForms([cidr("10.22.0.2/24")]).has("10.22.0.0/24"));
});

test("GC finds a network's chains by name and comment, keeping valid containers and other networks", () => {
  assert.equal(staleMasqChains(SAVED, "mynet", new Set()), ["CNI-70a29d9dc18bc4d652ea5d59"]);
  assert.equal(staleMasqChains(SAVED, "mynet", new Set(["abc123"])), []);
  assert.equal(
    staleMasqChains(SAVED, "other", new Set()),
    [],
    "a chain whose name is not the hash of its comment is not ours",
  );
});

test("nft setup: table and chains declared, postrouting rewritten, stale rules replaced, one rule per address", () => {
  const s = nftSetupScript(
    [cidr("10.22.0.2/24"), cidr("fd00::2/64")],
    { network: "mynet", containerId: "abc123", ifname: "eth0" },
    [7],
  ).split("\n");
  assert.ok(s.includes("flush chain inet cni_plugins_masquerade postrouting"));
  assert.ok(s.includes("delete rule inet cni_plugins_masquerade masq_checks handle 7"));
  assert.ok(
    s.includes(
      'add rule inet cni_plugins_masquerade masq_checks ip saddr == 10.22.0.2 ip daddr != 10.22.0.0/24 masquerade comment "d23676b4f2d9fe04-ebce0e3dd4dafae3, net: mynet, if: eth0, id: abc123"',
    ),
  );
  assert.ok(
    s.includes(
      'add rule inet cni_plugins_masquerade masq_checks ip6 saddr == fd00::2 ip6 daddr != fd00::/64 masquerade comment "d23676b4f2d9fe04-ebce0e3dd4dafae3, net: mynet, if: eth0, id: abc123"',
    ),
  );
});

// ------------------------------------------------------------ layer 3 decisions

test("calcGateways: fills gateways, adds one default route per family, marks every IP as the container's", () => {
  const r = {
    cniVersion: "1.0.0",
    ips: [{ address: "10.22.0.2/24" }, { address: "10.23.0.2/16", gateway: "10.23.9.9" }, { address: "fd00::5/64" }],
  };
  const gws = calcGateways(r, true, true);
  assert.equal(r.ips, [
    { interface: 2, address: "10.22.0.2/24", gateway: "10.22.0.1" },
    { interface: 2, address: "10.23.0.2/16", gateway: "10.23.9.9" },
    { interface: 2, address: "fd00::5/64", gateway: "fd00::1" },
  ]);
  assert.equal((r as { routes?: unknown }).routes, [
    { dst: "0.0.0.0/0", gw: "10.22.0.1" },
    { dst: "::/0", gw: "fd00::1" },
  ]);
  assert.equal(gws, { 4: ["10.22.0.1/24", "10.23.9.9/16"], 6: ["fd00::1/64"] });
});

test("calcGateways: an IPAM default route with a gateway wins; without isGateway nothing is invented", () => {
  const r = {
    cniVersion: "1.0.0",
    ips: [{ address: "10.22.0.2/24" }],
    routes: [{ dst: "0.0.0.0/0", gw: "10.22.0.254" }],
  };
  calcGateways(r, true, true);
  assert.equal(r.routes, [{ dst: "0.0.0.0/0", gw: "10.22.0.254" }]);
  const plain = { cniVersion: "1.0.0", ips: [{ address: "10.22.0.2/24" }] };
  assert.equal(calcGateways(plain, false, false), { 4: [], 6: [] });
  assert.equal(plain.ips, [{ interface: 2, address: "10.22.0.2/24" }]);
});

test("gateway addresses: present is a no-op, IPv4 conflicts, IPv6 only on overlap, forceAddress replaces", () => {
  const addrs = [
    { family: "inet" as const, local: "10.99.0.1", prefixlen: 24 },
    { family: "inet6" as const, local: "fe80::1", prefixlen: 64 },
    { family: "inet6" as const, local: "fd00:1::1", prefixlen: 64 },
  ];
  assert.equal(
    gatewayAddrLines("cni0", [{ family: "inet", local: "10.22.0.1", prefixlen: 24 }], ["10.22.0.1/24"], false),
    [],
  );
  throwsMsg(
    () => gatewayAddrLines("cni0", addrs, ["10.22.0.1/24"], false),
    '"cni0" already has an IP address different from 10.22.0.1/24',
  );
  assert.equal(gatewayAddrLines("cni0", addrs, ["10.22.0.1/24"], true), [
    ["addr", "del", "10.99.0.1/24", "dev", "cni0"],
    ["addr", "replace", "10.22.0.1/24", "brd", "+", "dev", "cni0"],
  ]);
  assert.equal(gatewayAddrLines("cni0", addrs, ["fd00:2::1/64"], false), [
    ["addr", "replace", "fd00:2::1/64", "nodad", "dev", "cni0"],
  ]);
  throwsMsg(
    () => gatewayAddrLines("cni0", addrs, ["fd00:1::2/64"], false),
    /already has an IP address different from fd00:1::2\/64/,
  );
});

test("container lines: addresses (IPv4 with broadcast), up, routes via the family's first gateway, read back", () => {
  const lines = configureLines(
    "eth0",
    {
      cniVersion: "1.0.0",
      ips: [
        { interface: 2, address: "10.22.0.2/24", gateway: "10.22.0.1" },
        { interface: 2, address: "fd00::2/64", gateway: "fd00::1" },
      ],
      routes: [
        { dst: "0.0.0.0/0" },
        { dst: "10.9.0.0/16", gw: "10.22.0.9", priority: 100 },
        { dst: "::/0", table: 7, scope: 0 },
      ],
    },
    2,
  );
  assert.equal(lines, [
    ["addr", "add", "10.22.0.2/24", "brd", "+", "dev", "eth0"],
    ["addr", "add", "fd00::2/64", "dev", "eth0"],
    ["link", "set", "eth0", "up"],
    ["route", "append", "0.0.0.0/0", "via", "10.22.0.1", "dev", "eth0"],
    ["route", "append", "10.9.0.0/16", "via", "10.22.0.9", "dev", "eth0", "metric", "100"],
    ["route", "append", "::/0", "via", "fd00::1", "dev", "eth0", "table", "7", "scope", "0"],
    ["addr", "show", "dev", "eth0"],
  ]);
  throwsMsg(
    () => configureLines("eth0", { cniVersion: "1.0.0", ips: [{ interface: 1, address: "10.0.0.2/24" }] }, 2),
    /invalid interface index/,
  );
});

test("container sysctls: DAD off by default, on (enhanced) with enabledad; IPv6 enabled only when used", () => {
  assert.equal(containerSysctls("eth0.5", false, false), [
    ["net/ipv6/conf/eth0.5/accept_dad", "0"],
    ["net/ipv4/conf/eth0.5/arp_notify", "1"],
  ]);
  const dad = containerSysctls("eth0", true, true);
  assert.ok(dad.some(([k, v]) => k === "net/ipv6/conf/eth0/enhanced_dad" && v === "1"));
  assert.ok(dad.some(([k, v]) => k === "net/ipv6/conf/eth0/keep_addr_on_down" && v === "1"));
  assert.ok(dad.some(([k, v]) => k === "net/ipv6/conf/lo/disable_ipv6" && v === "0"));
});

// ------------------------------------------------------------ config values

test("vlanTrunk: ranges and ids merged, sorted, de-duplicated; the reference's errors", () => {
  assert.equal(collectVlanTrunk([{ minID: 5, maxID: 7 }, { id: 6 }, { id: 2 }]), [2, 5, 6, 7]);
  assert.equal(collectVlanTrunk([]), []);
  throwsMsg(() => collectVlanTrunk([{ minID: 0, maxID: 3 }]), "incorrect trunk minID parameter");
  throwsMsg(() => collectVlanTrunk([{ minID: 3, maxID: 4095 }]), "incorrect trunk maxID parameter");
  throwsMsg(() => collectVlanTrunk([{ minID: 9, maxID: 3 }]), "minID is greater than maxID in trunk parameter");
  throwsMsg(
    () => collectVlanTrunk([{ maxID: 3 }]),
    "minID and maxID should be configured simultaneously, minID is missing",
  );
  throwsMsg(
    () => collectVlanTrunk([{ minID: 3 }]),
    "minID and maxID should be configured simultaneously, maxID is missing",
  );
  throwsMsg(() => collectVlanTrunk([{ id: 4095 }]), "incorrect trunk id parameter");
});

test("MAC: Go's notations normalised; garbage and multicast refused", () => {
  assert.is(parseMac("02:AA:bb:01:02:03"), "02:aa:bb:01:02:03");
  assert.is(parseMac("02-aa-bb-01-02-03"), "02:aa:bb:01:02:03");
  assert.is(parseMac("02aa.bb01.0203"), "02:aa:bb:01:02:03");
  throwsMsg(() => parseMac("02:aa:bb:01:02"), /invalid MAC address/);
  throwsMsg(() => parseMac("02:aa-bb:01:02:03"), /invalid MAC address/);
  throwsMsg(() => parseMac("01:00:5e:00:00:01"), /multicast/);
});

test("port VLANs: access port, trunk with native VLAN 1, default PVID kept on request", () => {
  const none = { vlan: 0, trunk: [], trunkGiven: false, preserveDefaultVlan: false };
  assert.equal(portVlanLines("vethx", none, 1), []);
  assert.equal(portVlanLines("vethx", { ...none, vlan: 100 }, 1), [
    ["vlan", "del", "dev", "vethx", "vid", "1", "master"],
    ["vlan", "add", "dev", "vethx", "vid", "100", "pvid", "untagged", "master"],
  ]);
  assert.equal(portVlanLines("vethx", { ...none, trunk: [10, 11], trunkGiven: true, preserveDefaultVlan: true }, 1), [
    ["vlan", "add", "dev", "vethx", "vid", "10", "master"],
    ["vlan", "add", "dev", "vethx", "vid", "11", "master"],
    ["vlan", "add", "dev", "vethx", "vid", "1", "pvid", "untagged", "master"],
  ]);
});

test("veth pair: peer created in the container netns by path, MTU on both ends, MAC on the container end", () => {
  assert.equal(vethPairLine("veth01020304", "eth0", "/proc/42/ns/net", { mtu: 1450, mac: "02:00:00:00:00:01" }), [
    "link",
    "add",
    "veth01020304",
    "mtu",
    "1450",
    "type",
    "veth",
    "peer",
    "name",
    "eth0",
    "mtu",
    "1450",
    "address",
    "02:00:00:00:00:01",
    "netns",
    "/proc/42/ns/net",
  ]);
});

test("spoof check: one transaction with the reference's chain names and comments", () => {
  const s = spoofCheckScript("veth01020304", "02:00:00:00:00:01", "ctr1-eth0").split("\n");
  assert.ok(
    s.includes(
      'add rule bridge nat PREROUTING iifname "veth01020304" jump cni-br-iface-ctr1-eth0 comment "macspoofchk-ctr1-eth0"',
    ),
  );
  assert.ok(
    s.includes(
      'add rule bridge nat cni-br-iface-ctr1-eth0-mac ether saddr 02:00:00:00:00:01 return comment "macspoofchk-ctr1-eth0"',
    ),
  );
  assert.ok(s.includes('add rule bridge nat cni-br-iface-ctr1-eth0-mac drop comment "macspoofchk-ctr1-eth0"'));
  throwsMsg(() => spoofCheckScript("veth0", "02:00:00:00:00:01", "bad id"), /cannot name an nft chain/);
});

test("ip -j -batch output: one group per show command, strings with brackets left alone", () => {
  assert.equal(splitJsonArrays('[{"a":"x]"}]\n[]\n[{"b":1},{"c":[2]}]\n'), [[{ a: "x]" }], [], [{ b: 1 }, { c: [2] }]]);
});

test.run();
