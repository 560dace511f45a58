import { test } from "uvu";
import * as assert from "uvu/assert";
import { sh, sandboxed } from "../helpers/sandbox.ts";
import {
  REF_BRIDGE,
  addOk,
  addrsOf,
  bridgeConf,
  cni,
  cniPath,
  link,
  linkNames,
  netfilter,
  ping,
  reservations,
  withPrev,
} from "../helpers/bridge-net.ts";

const inSandbox = sandboxed(test, "bropt");

// The bridge plugin's options, each checked in the kernel (and by traffic where it changes
// traffic): flannel's delegate config, hairpin, promiscuous mode, port isolation, MAC spoof check,
// container MAC sources, MTU, layer 2 only, disableContainerInterface, VLANs, DAD, result versions.

inSandbox("flannel's delegate config: hairpin, MTU, default route and the cluster route via the gateway", (sb) => {
  // What flannel hands to bridge for a node whose subnet is 10.244.1.0/24 in cluster 10.244.0.0/16.
  const conf = {
    cniVersion: "0.3.1",
    name: "cbr0",
    type: "bridge",
    bridge: "cni0",
    mtu: 1450,
    hairpinMode: true,
    isGateway: true,
    isDefaultGateway: true,
    ipMasq: false,
    ipam: {
      type: "host-local",
      dataDir: `${sb.tmp}/ipam`,
      ranges: [[{ subnet: "10.244.1.0/24" }]],
      routes: [{ dst: "10.244.0.0/16" }],
    },
  };
  const c = sb.addContainer();
  const r = addOk(sb, { netns: c.path }, conf);
  assert.is(r.cniVersion, "0.3.1");
  assert.equal(r.ips, [{ version: "4", interface: 2, address: "10.244.1.2/24", gateway: "10.244.1.1" }]);
  assert.equal(r.routes, [{ dst: "10.244.0.0/16" }, { dst: "0.0.0.0/0", gw: "10.244.1.1" }]);
  const routes = sb.inNs(c.name, ["ip", "route"]).stdout;
  assert.match(routes, /default via 10\.244\.1\.1 dev eth0/);
  assert.match(routes, /10\.244\.0\.0\/16 via 10\.244\.1\.1 dev eth0/);
  const host = link(sb, sb.node, r.interfaces[1].name)!;
  assert.is(host.linkinfo?.info_slave_data?.hairpin, true);
  assert.is(host.mtu, 1450);
  assert.is(link(sb, c.name, "eth0")!.mtu, 1450);
  assert.is(link(sb, sb.node, "cni0")!.mtu, 1450);
  assert.equal(
    netfilter(sb).v4.filter((l) => l.includes("CNI-")),
    [],
    "ipMasq false: no rules",
  );
  assert.ok(ping(sb, c.name, "10.244.1.1"));
  // CHECK needs 0.4.0; the 0.3.1 result is of the same family.
  const check = cni(sb, "CHECK", { netns: c.path }, withPrev({ ...conf, cniVersion: "0.4.0" }, r));
  assert.is(check.code, 0, check.stdout);
  assert.is(cni(sb, "DEL", { netns: c.path }, withPrev(conf, r)).code, 0);
  assert.equal(reservations(sb, "cbr0"), []);
});

inSandbox("promiscMode turns the bridge promiscuous (and CHECK compares it); hairpin stays off", (sb) => {
  const conf = bridgeConf(sb, { promiscMode: true });
  const c = sb.addContainer();
  const r = addOk(sb, { netns: c.path }, conf);
  assert.ok(link(sb, sb.node, "cni0")!.flags.includes("PROMISC"));
  assert.is(link(sb, sb.node, r.interfaces[1].name)!.linkinfo?.info_slave_data?.hairpin, false);
  assert.is(cni(sb, "CHECK", { netns: c.path }, withPrev(conf, r)).code, 0);
  const mismatch = cni(sb, "CHECK", { netns: c.path }, withPrev(bridgeConf(sb), r));
  assert.is(
    mismatch.json.msg,
    "Bridge interface cni0 configured Promisc Mode false doesn't match current state: true ",
  );
});

inSandbox("portIsolation: isolated ports cannot reach each other but still reach the gateway", (sb) => {
  const conf = bridgeConf(sb, { portIsolation: true });
  const a = sb.addContainer();
  const b = sb.addContainer();
  const ra = addOk(sb, { id: "a", netns: a.path }, conf);
  addOk(sb, { id: "b", netns: b.path }, conf);
  assert.is(link(sb, sb.node, ra.interfaces[1].name)!.linkinfo?.info_slave_data?.isolated, true);
  assert.ok(ping(sb, a.name, "10.22.0.1"), "gateway reachable");
  assert.not.ok(ping(sb, a.name, "10.22.0.3", 1), "the other isolated port is not");
});

inSandbox(
  "macspoofchk: frames with another source MAC are dropped; our DEL and the reference's remove the rules",
  (sb) => {
    const conf = bridgeConf(sb, { macspoofchk: true });
    const a = sb.addContainer();
    const b = sb.addContainer();
    const ra = addOk(sb, { id: "a", netns: a.path }, conf);
    const rb = addOk(sb, { id: "b", netns: b.path }, conf);
    const table = sb.inNode(["nft", "list", "table", "bridge", "nat"]).stdout;
    assert.match(
      table,
      new RegExp(`iifname "${ra.interfaces[1].name}" jump cni-br-iface-a-eth0 comment "macspoofchk-a-eth0"`),
    );
    assert.match(table, new RegExp(`ether saddr ${ra.interfaces[2].mac} return comment "macspoofchk-a-eth0"`));
    assert.ok(ping(sb, a.name, "10.22.0.3"), "the real MAC passes");
    sb.inNs(a.name, ["ip", "link", "set", "eth0", "address", "02:00:00:00:00:99"]);
    assert.not.ok(ping(sb, a.name, "10.22.0.3", 1), "a spoofed MAC does not");

    assert.is(cni(sb, "DEL", { id: "a", netns: a.path }, withPrev(conf, ra)).code, 0);
    assert.is(
      cni(sb, "DEL", { id: "b", netns: b.path, path: cniPath(sb, "reference"), binary: REF_BRIDGE }, withPrev(conf, rb))
        .code,
      0,
    );
    const c = sb.addContainer();
    const rc = addOk(sb, { id: "c", netns: c.path, path: cniPath(sb, "reference"), binary: REF_BRIDGE }, conf);
    assert.match(sb.inNode(["nft", "list", "table", "bridge", "nat"]).stdout, /macspoofchk-c-eth0/);
    assert.is(
      cni(sb, "DEL", { id: "c", netns: c.path }, withPrev(conf, rc)).code,
      0,
      "our DEL of the reference's spoof check",
    );
    const left = sb.inNode(["nft", "list", "table", "bridge", "nat"]).stdout;
    assert.not.match(left, /cni-br-iface|macspoofchk/);
  },
);

inSandbox("the container MAC: CNI_ARGS MAC, then args.cni.mac, then runtimeConfig.mac (last wins)", (sb) => {
  const c1 = sb.addContainer();
  const r1 = addOk(
    sb,
    { id: "m1", netns: c1.path, args: "IgnoreUnknown=1;MAC=02:11:22:33:44:01;K8S_POD_NAME=x" },
    bridgeConf(sb),
  );
  assert.is(link(sb, c1.name, "eth0")!.address, "02:11:22:33:44:01");
  assert.is(r1.interfaces[2].mac, "02:11:22:33:44:01");
  const c2 = sb.addContainer();
  addOk(
    sb,
    { id: "m2", netns: c2.path, args: "IgnoreUnknown=1;MAC=02:11:22:33:44:01" },
    { ...bridgeConf(sb), args: { cni: { mac: "02:11:22:33:44:02" } } },
  );
  assert.is(link(sb, c2.name, "eth0")!.address, "02:11:22:33:44:02");
  const c3 = sb.addContainer();
  addOk(
    sb,
    { id: "m3", netns: c3.path },
    { ...bridgeConf(sb), args: { cni: { mac: "02:11:22:33:44:02" } }, runtimeConfig: { mac: "02-11-22-33-44-03" } },
  );
  assert.is(link(sb, c3.name, "eth0")!.address, "02:11:22:33:44:03");
  // CNI_ARGS with an unknown key and no IgnoreUnknown is refused, as by the reference.
  const c4 = sb.addContainer();
  const bad = cni(sb, "ADD", { id: "m4", netns: c4.path, args: "K8S_POD_NAME=x" }, bridgeConf(sb));
  assert.is(bad.code, 1);
  assert.match(bad.json.msg, /unknown args/);
  assert.equal(linkNames(sb, c4.name), ["lo"]);
});

inSandbox("layer 2 only (no ipam): the container interface is up with no address; CHECK passes", (sb) => {
  const conf = { cniVersion: "1.0.0", name: "l2", type: "bridge", bridge: "br-l2" };
  const c = sb.addContainer();
  const r = addOk(sb, { netns: c.path }, conf);
  assert.is(r.ips, undefined);
  assert.equal(
    r.interfaces.map((i: { name: string }) => i.name),
    ["br-l2", r.interfaces[1].name, "eth0"],
  );
  const eth0 = link(sb, c.name, "eth0")!;
  assert.ok(eth0.flags.includes("UP"));
  assert.equal(addrsOf(eth0), []);
  assert.equal(addrsOf(link(sb, sb.node, "br-l2")), []);
  assert.is(cni(sb, "CHECK", { netns: c.path }, withPrev(conf, r)).code, 0);
  assert.is(cni(sb, "DEL", { netns: c.path }, withPrev(conf, r)).code, 0);
  assert.equal(linkNames(sb, c.name), ["lo"]);

  // A 0.2.0 result cannot describe a layer-2 attachment: refused before anything is created.
  const old = sb.addContainer();
  const before = linkNames(sb, sb.node);
  const r02 = cni(sb, "ADD", { netns: old.path }, { ...conf, cniVersion: "0.2.0" });
  assert.is(r02.code, 1);
  assert.match(r02.json.msg, /cannot convert: no valid IP addresses/);
  assert.equal(linkNames(sb, sb.node), before);
  assert.equal(linkNames(sb, old.name), ["lo"]);
});

inSandbox("disableContainerInterface leaves the container end down; with ipam it is refused", (sb) => {
  const conf = { cniVersion: "1.0.0", name: "l2", type: "bridge", bridge: "br-l2", disableContainerInterface: true };
  const c = sb.addContainer();
  const r = addOk(sb, { netns: c.path }, conf);
  assert.not.ok(link(sb, c.name, "eth0")!.flags.includes("UP"));
  assert.is(r.interfaces[2].mac, link(sb, c.name, "eth0")!.address);
  const withIpam = cni(
    sb,
    "ADD",
    { netns: sb.addContainer().path },
    bridgeConf(sb, { disableContainerInterface: true }),
  );
  assert.is(withIpam.json.msg, "cannot use IPAM when DisableContainerInterface flag is set");
});

inSandbox("results in every version shape: 0.2.0 ip4, 0.4.0 with ips[].version, 1.1.0", (sb) => {
  const c1 = sb.addContainer();
  const r020 = addOk(sb, { id: "v020", netns: c1.path }, bridgeConf(sb, { cniVersion: "0.2.0" }));
  assert.equal(r020, {
    cniVersion: "0.2.0",
    ip4: { ip: "10.22.0.2/24", gateway: "10.22.0.1", routes: [{ dst: "0.0.0.0/0" }] },
    dns: {},
  });
  const c2 = sb.addContainer();
  const r040 = addOk(sb, { id: "v040", netns: c2.path }, bridgeConf(sb, { cniVersion: "0.4.0" }));
  assert.equal(r040.ips, [{ version: "4", interface: 2, address: "10.22.0.3/24", gateway: "10.22.0.1" }]);
  assert.equal(r040.dns, {});
  const c3 = sb.addContainer();
  const r110 = addOk(
    sb,
    { id: "v110", netns: c3.path },
    bridgeConf(sb, { cniVersion: "1.1.0", dns: { nameservers: ["10.22.0.53"] } }),
  );
  assert.is(r110.cniVersion, "1.1.0");
  assert.equal(r110.dns, { nameservers: ["10.22.0.53"] });
  assert.is(
    cni(sb, "CHECK", { id: "v040", netns: c2.path }, withPrev(bridgeConf(sb, { cniVersion: "0.4.0" }), r040)).code,
    0,
  );
});

inSandbox("enabledad keeps DAD on in the container and ADD returns with the IPv6 address no longer tentative", (sb) => {
  const conf = {
    ...bridgeConf(sb, { enabledad: true }),
    ipam: { type: "host-local", dataDir: `${sb.tmp}/ipam`, ranges: [[{ subnet: "fd00:33::/64" }]] },
  };
  const c = sb.addContainer();
  addOk(sb, { netns: c.path }, conf);
  assert.is(sb.inNs(c.name, ["cat", "/proc/sys/net/ipv6/conf/eth0/accept_dad"]).stdout.trim(), "1");
  assert.is(sb.inNs(c.name, ["cat", "/proc/sys/net/ipv6/conf/eth0/enhanced_dad"]).stdout.trim(), "1");
  const addr = link(sb, c.name, "eth0")!.addr_info!.find((a) => a.local === "fd00:33::2") as
    | { tentative?: boolean }
    | undefined;
  assert.ok(addr, "address present");
  assert.not.ok(addr!.tentative, "DAD finished before ADD returned");

  const plain = sb.addContainer();
  addOk(sb, { id: "plain", netns: plain.path }, { ...conf, enabledad: false });
  assert.is(sb.inNs(plain.name, ["cat", "/proc/sys/net/ipv6/conf/eth0/accept_dad"]).stdout.trim(), "0");
});

inSandbox(
  "vlan: an access port when the kernel filters VLANs, otherwise a clean error with the veth rolled back",
  (sb) => {
    const conf = bridgeConf(sb, { vlan: 100, isGateway: false });
    const supported =
      sb.inNode(["ip", "link", "add", "vlprobe", "type", "bridge", "vlan_filtering", "1"], { allowFailure: true })
        .code === 0;
    sb.inNode(["ip", "link", "del", "vlprobe"], { allowFailure: true });
    sb.inNode(["ip", "link", "add", "cni0", "type", "bridge"]); // existing bridge: the VLAN step runs after the veth exists
    const before = { links: linkNames(sb, sb.node), reservations: reservations(sb) };
    const c = sb.addContainer();
    const r = cni(sb, "ADD", { netns: c.path }, conf);
    if (supported) {
      assert.is(r.code, 0, r.stdout);
      const vlans = sh([
        "ip",
        "netns",
        "exec",
        sb.node,
        "bridge",
        "-j",
        "vlan",
        "show",
        "dev",
        r.json.interfaces[1].name,
      ]).stdout;
      assert.match(vlans, /"vlan":100,"flags":\["PVID","Egress Untagged"\]/);
    } else {
      assert.is(r.code, 1);
      assert.equal({ links: linkNames(sb, sb.node), reservations: reservations(sb) }, before);
      assert.equal(linkNames(sb, c.name), ["lo"]);
    }
  },
);

test.run();
