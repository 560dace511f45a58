import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { testNeeding } from "../helpers/link-kinds.ts";
import { sandboxed } from "../helpers/sandbox.ts";
import {
  EXT_ADDR,
  addSegment,
  addressOf,
  cni,
  conf,
  ipamOf,
  linkIn,
  linkNames,
  neighbourMac,
  ok,
  ours,
  ping,
  reference,
  reservations,
} from "../helpers/sublink-net.ts";

/**
 * ipvlan on a master in the node whose veth peer is an external host's eth0. The kernel here may
 * have no ipvlan: the file then skips and the User-Mode Linux stage runs it (test/uml/files.txt).
 */
const inSandbox = sandboxed(testNeeding("ipvlan", test, "ipvlan.test.ts"), "ipvlan");
const IPVLAN = ours("ipvlan");
const REF = reference("ipvlan");

inSandbox(
  "l2: containers reach each other and the external host, which sees their addresses and the master's MAC",
  async (sb) => {
    const seg = addSegment(sb);
    const [a, b] = [sb.addContainer(), sb.addContainer()];
    const config = conf(sb, "ipvlan", { master: seg.master });
    const ra = ok(cni(sb, IPVLAN, "ADD", { netns: a.path, id: "a" }, config), "ADD a");
    ok(cni(sb, IPVLAN, "ADD", { netns: b.path, id: "b" }, config), "ADD b");

    const la = linkIn(sb, a.name, "eth0")!;
    const lb = linkIn(sb, b.name, "eth0")!;
    const master = linkIn(sb, sb.node, seg.master)!;
    assert.is(la.linkinfo?.info_kind, "ipvlan");
    assert.is(la.linkinfo?.info_data?.mode, "l2");
    assert.is(la.link_index, master.ifindex);
    assert.is(la.address, master.address, "ipvlan shares the master's MAC");
    assert.equal(ra.interfaces, [{ name: "eth0", mac: la.address, sandbox: a.path }]);
    assert.equal(ra.ips, [{ address: `${addressOf(la)}/24`, gateway: "192.0.2.1", interface: 0 }]);

    assert.ok(ping(sb, a.name, EXT_ADDR), "a reaches the external host");
    assert.ok(ping(sb, a.name, addressOf(lb)!), "a reaches b");
    assert.ok(ping(sb, seg.ext, addressOf(la)!), "the external host reaches a by its own address");
    assert.is(neighbourMac(sb, seg.ext, addressOf(la)!), master.address, "one MAC on the segment: the master's");

    ok(cni(sb, IPVLAN, "CHECK", { netns: a.path, id: "a" }, { ...config, prevResult: ra }), "CHECK a");
    const l3 = cni(sb, IPVLAN, "CHECK", { netns: a.path, id: "a" }, { ...config, mode: "l3", prevResult: ra });
    assert.match(l3.json?.msg ?? "", "Container IPVlan mode l2 does not match expected value: l3");
    ok(cni(sb, IPVLAN, "DEL", { netns: a.path, id: "a" }, config), "DEL a");
    assert.equal(linkNames(sb, a.name), ["lo"]);
    assert.equal(reservations(sb, "ipvlannet"), [addressOf(lb)]);
    ok(cni(sb, IPVLAN, "DEL", { netns: a.path, id: "a" }, config), "a second DEL");
    sb.inNode(["ip", "netns", "del", b.name]);
    ok(cni(sb, IPVLAN, "DEL", { netns: b.path, id: "b" }, config), "DEL with the netns gone");
    assert.equal(reservations(sb, "ipvlannet"), []);
  },
);

inSandbox(
  "l3: the node routes; siblings reach each other, the external host reaches them through the node",
  async (sb) => {
    const seg = addSegment(sb);
    sb.inNode(["ip", "addr", "add", "192.0.2.1/24", "dev", seg.master]);
    sb.inNs(seg.ext, ["ip", "route", "add", "198.51.100.0/24", "via", "192.0.2.1"]);
    const [a, b] = [sb.addContainer(), sb.addContainer()];
    const ipam = ipamOf(sb, {
      subnet: "198.51.100.0/24",
      rangeStart: "198.51.100.10",
      rangeEnd: "198.51.100.50",
      routes: [{ dst: "0.0.0.0/0" }],
    });
    const config = conf(sb, "ipvlan", { master: seg.master, mode: "l3" }, ipam);
    const ra = ok(cni(sb, IPVLAN, "ADD", { netns: a.path, id: "a" }, config), "ADD a");
    ok(cni(sb, IPVLAN, "ADD", { netns: b.path, id: "b" }, config), "ADD b");
    const la = linkIn(sb, a.name, "eth0")!;
    assert.is(la.linkinfo?.info_data?.mode, "l3");
    assert.ok(ping(sb, a.name, addressOf(linkIn(sb, b.name, "eth0"))!), "a reaches b");
    assert.ok(ping(sb, a.name, EXT_ADDR), "a reaches the external host");
    assert.ok(ping(sb, seg.ext, addressOf(la)!), "the external host reaches a via the node");
    ok(cni(sb, IPVLAN, "CHECK", { netns: a.path, id: "a" }, { ...config, prevResult: ra }), "CHECK a");
    ok(cni(sb, IPVLAN, "DEL", { netns: a.path, id: "a" }, config), "DEL a");
    ok(cni(sb, IPVLAN, "DEL", { netns: b.path, id: "b" }, config), "DEL b");
    assert.equal(reservations(sb, "ipvlannet"), []);
  },
);

inSandbox("l3s and linkInContainer: the master in the container, the mode recorded", async (sb) => {
  const a = sb.addContainer();
  const seg = addSegment(sb, { master: "up0", ns: a.name });
  const config = conf(sb, "ipvlan", { master: "up0", mode: "l3s", linkInContainer: true });
  const r = ok(cni(sb, IPVLAN, "ADD", { netns: a.path, ifname: "net1" }, config), "ADD");
  const l = linkIn(sb, a.name, "net1")!;
  assert.is(l.linkinfo?.info_data?.mode, "l3s");
  assert.is(l.link, "up0", "the parent is the container's up0");
  assert.ok(addressOf(l));
  ok(cni(sb, IPVLAN, "CHECK", { netns: a.path, ifname: "net1" }, { ...config, prevResult: r }), "CHECK");
  ok(cni(sb, IPVLAN, "DEL", { netns: a.path, ifname: "net1" }, config), "DEL");
  assert.equal(linkNames(sb, a.name), ["lo", "up0"]);
  assert.ok(seg.ext);
});

inSandbox(
  "the mode is the master's: a sibling of another mode switches it, and CHECK of the first then fails",
  async (sb) => {
    // The kernel keeps one mode per master (its ipvlan port); the reference does the same as we do.
    const seg = addSegment(sb);
    const [a, b] = [sb.addContainer(), sb.addContainer()];
    const l2 = conf(sb, "ipvlan", { master: seg.master });
    const ra = ok(cni(sb, IPVLAN, "ADD", { netns: a.path, id: "a" }, l2), "l2 ADD");
    ok(cni(sb, IPVLAN, "ADD", { netns: b.path, id: "b" }, { ...l2, mode: "l3s" }), "l3s ADD on the same master");
    assert.is(linkIn(sb, a.name, "eth0")?.linkinfo?.info_data?.mode, "l3s", "the l2 sibling was switched");
    const check = cni(sb, IPVLAN, "CHECK", { netns: a.path, id: "a" }, { ...l2, prevResult: ra });
    assert.is(check.code, 1);
    assert.match(check.json.msg, "Container IPVlan mode l3s does not match expected value: l2");
    ok(cni(sb, IPVLAN, "DEL", { netns: a.path, id: "a" }, l2), "DEL a");
    ok(cni(sb, IPVLAN, "DEL", { netns: b.path, id: "b" }, l2), "DEL b");
    assert.equal(reservations(sb, "ipvlannet"), []);
  },
);

inSandbox(
  "chained without IPAM: prevResult's addresses on the link, its single interface as the master",
  async (sb) => {
    const seg = addSegment(sb);
    const a = sb.addContainer();
    const prevResult = {
      cniVersion: "1.0.0",
      interfaces: [{ name: seg.master }],
      ips: [{ address: "192.0.2.77/24", gateway: "192.0.2.1", interface: 0 }],
    };
    const config = conf(sb, "ipvlan", { prevResult }, null);
    const r = ok(cni(sb, IPVLAN, "ADD", { netns: a.path }, config), "ADD");
    assert.equal(r.ips, [{ address: "192.0.2.77/24", gateway: "192.0.2.1", interface: 0 }]);
    const l = linkIn(sb, a.name, "eth0")!;
    assert.is(addressOf(l), "192.0.2.77");
    assert.is(l.link_index, linkIn(sb, sb.node, seg.master)!.ifindex);
    assert.ok(ping(sb, seg.ext, "192.0.2.77"), "the external host reaches the chained address");

    const two = { ...prevResult, interfaces: [{ name: seg.master }, { name: "other" }] };
    const bad = cni(
      sb,
      IPVLAN,
      "ADD",
      { netns: sb.addContainer().path },
      conf(sb, "ipvlan", { prevResult: two }, null),
    );
    assert.equal(bad.json?.msg, "chained master failure. PrevResult lacks a single named interface");
    const none = cni(
      sb,
      IPVLAN,
      "ADD",
      { netns: sb.addContainer().path },
      conf(sb, "ipvlan", { master: seg.master }, null),
    );
    assert.is(none.json?.code, 7, "no IPAM and nothing chained: refused");
    ok(cni(sb, IPVLAN, "DEL", { netns: a.path }, config), "DEL");
    assert.equal(linkNames(sb, a.name), ["lo"]);
  },
);

inSandbox("cross-implementation: our ADD, the reference's CHECK and DEL; its ADD, our CHECK and DEL", async (sb) => {
  const seg = addSegment(sb);
  const [a, b] = [sb.addContainer(), sb.addContainer()];
  const config = conf(sb, "ipvlan", { master: seg.master });
  const ra = ok(cni(sb, IPVLAN, "ADD", { netns: a.path, id: "a" }, config), "our ADD");
  ok(cni(sb, REF, "CHECK", { netns: a.path, id: "a" }, { ...config, prevResult: ra }), "its CHECK of ours");
  ok(cni(sb, REF, "DEL", { netns: a.path, id: "a" }, config), "its DEL of ours");
  assert.equal(linkNames(sb, a.name), ["lo"]);
  assert.equal(reservations(sb, "ipvlannet"), []);

  const rb = ok(cni(sb, REF, "ADD", { netns: b.path, id: "b" }, config), "its ADD");
  assert.ok(ping(sb, seg.ext, addressOf(linkIn(sb, b.name, "eth0"))!), "the reference's container is reachable");
  ok(cni(sb, IPVLAN, "CHECK", { netns: b.path, id: "b" }, { ...config, prevResult: rb }), "our CHECK of its");
  ok(cni(sb, IPVLAN, "DEL", { netns: b.path, id: "b" }, config), "our DEL of its");
  assert.equal(linkNames(sb, b.name), ["lo"]);
  assert.equal(reservations(sb, "ipvlannet"), []);
});

/** The first plugin of a conf/ list as a single config on `master`, its IPAM data in the sandbox. */
function fromConflist(sb: Parameters<Parameters<typeof inSandbox>[1]>[0], file: string, master: string) {
  const list = JSON.parse(readFileSync(join(import.meta.dirname, "..", "..", "conf", file), "utf8"));
  const plugin = list.plugins[0];
  return {
    cniVersion: list.cniVersion,
    name: list.name,
    ...plugin,
    master,
    ipam: { ...plugin.ipam, dataDir: join(sb.tmp, "ipam") },
  };
}

inSandbox("conf/docker-ipvlan-l2.conflist: containers on the parent's segment, its gateway outside", async (sb) => {
  const seg = addSegment(sb, { extAddr: "192.168.60.1" });
  const config = fromConflist(sb, "docker-ipvlan-l2.conflist", seg.master);
  const ctr = sb.addContainer();
  const r = ok(cni(sb, IPVLAN, "ADD", { netns: ctr.path }, config), "ADD");
  assert.is(r.ips[0].gateway, "192.168.60.1");
  assert.match(sb.inNs(ctr.name, ["ip", "route", "show", "default"]).stdout, /default via 192\.168\.60\.1 dev eth0/);
  assert.ok(ping(sb, ctr.name, "192.168.60.1"), "the gateway on the parent's segment answers");
  ok(cni(sb, IPVLAN, "DEL", { netns: ctr.path }, config), "DEL");
});

inSandbox("conf/docker-ipvlan-l3.conflist: the node routes the containers' subnet to the outside", async (sb) => {
  const seg = addSegment(sb);
  sb.inNode(["ip", "addr", "add", "192.0.2.1/24", "dev", seg.master]);
  sb.inNs(seg.ext, ["ip", "route", "add", "192.168.70.0/24", "via", "192.0.2.1"]);
  const config = fromConflist(sb, "docker-ipvlan-l3.conflist", seg.master);
  const ctr = sb.addContainer();
  const r = ok(cni(sb, IPVLAN, "ADD", { netns: ctr.path }, config), "ADD");
  assert.is(linkIn(sb, ctr.name, "eth0")?.linkinfo?.info_data?.mode, "l3");
  assert.ok(ping(sb, ctr.name, EXT_ADDR), "the container reaches the external host through the node");
  assert.ok(ping(sb, seg.ext, r.ips[0].address.split("/")[0]), "and is reached back");
  ok(cni(sb, IPVLAN, "DEL", { netns: ctr.path }, config), "DEL");
});

test.run();
