import { test } from "uvu";
import * as assert from "uvu/assert";
import { testNeeding } from "../helpers/link-kinds.ts";
import type { Sandbox } from "../helpers/sandbox.ts";
import { sandboxed } from "../helpers/sandbox.ts";
import {
  addSegment,
  addressOf,
  cni,
  conf,
  ipamOf,
  linkIn,
  linkNames,
  ok,
  ours,
  ping,
  reference,
  reservations,
} from "../helpers/sublink-net.ts";

/**
 * vlan on a master in the node whose veth peer is an external host's eth0. On the external host,
 * VLAN 10 of eth0 carries 192.0.2.2 and VLAN 20 of eth0 (moved to a second namespace) carries
 * 192.0.2.3: one subnet, two VLANs, so only the tag decides which peer a container reaches. The
 * kernel here may have no 802.1Q: the file then skips and the User-Mode Linux stage runs it
 * (test/uml/files.txt).
 */
const inSandbox = sandboxed(testNeeding("vlan", test, "vlan.test.ts"), "vlan");
const VLAN = ours("vlan");
const REF = reference("vlan");
const PEER10 = "192.0.2.2";
const PEER20 = "192.0.2.3";

/** The segment, with a peer on VLAN 10 in the external host and one on VLAN 20 in a namespace of its own. */
function addTaggedPeers(sb: Sandbox) {
  const seg = addSegment(sb, { extAddr: "" });
  sb.inNs(seg.ext, ["ip", "link", "add", "link", "eth0", "name", "eth0.10", "type", "vlan", "id", "10"]);
  sb.inNs(seg.ext, ["ip", "addr", "add", `${PEER10}/24`, "dev", "eth0.10"]);
  sb.inNs(seg.ext, ["ip", "link", "set", "eth0.10", "up"]);
  const other = sb.addNamespace("vlan20");
  sb.inNs(seg.ext, ["ip", "link", "add", "link", "eth0", "name", "eth0.20", "type", "vlan", "id", "20"]);
  sb.inNs(seg.ext, ["ip", "link", "set", "eth0.20", "netns", other]);
  sb.inNs(other, ["ip", "addr", "add", `${PEER20}/24`, "dev", "eth0.20"]);
  sb.inNs(other, ["ip", "link", "set", "eth0.20", "up"]);
  return seg;
}

inSandbox(
  "tagged traffic reaches the peer of the same VLAN on the external host and not one of another",
  async (sb) => {
    const seg = addTaggedPeers(sb);
    const [a, b] = [sb.addContainer(), sb.addContainer()];
    const config10 = conf(sb, "vlan", { master: seg.master, vlanId: 10, dns: { nameservers: ["192.0.2.53"] } });
    const ra = ok(cni(sb, VLAN, "ADD", { netns: a.path, id: "a" }, config10), "ADD a on VLAN 10");
    ok(cni(sb, VLAN, "ADD", { netns: b.path, id: "b" }, { ...config10, vlanId: 20 }), "ADD b on VLAN 20");

    const la = linkIn(sb, a.name, "eth0")!;
    const master = linkIn(sb, sb.node, seg.master)!;
    assert.is(la.linkinfo?.info_kind, "vlan");
    assert.is(la.linkinfo?.info_data?.id, 10);
    assert.is(la.linkinfo?.info_data?.protocol, "802.1Q");
    assert.is(la.link_index, master.ifindex, "the parent is the node's master");
    assert.ok(la.flags.includes("UP"));
    assert.equal(ra.interfaces, [{ name: "eth0", mac: la.address, sandbox: a.path }]);
    assert.equal(ra.ips, [{ address: `${addressOf(la)}/24`, gateway: "192.0.2.1", interface: 0 }]);
    assert.equal(ra.dns, { nameservers: ["192.0.2.53"] }, "the config's dns");

    assert.ok(ping(sb, a.name, PEER10), "VLAN 10 reaches the VLAN 10 peer");
    assert.not.ok(ping(sb, a.name, PEER20, 1), "VLAN 10 does not reach the VLAN 20 peer");
    assert.ok(ping(sb, b.name, PEER20), "VLAN 20 reaches the VLAN 20 peer");
    assert.not.ok(ping(sb, b.name, PEER10, 1), "VLAN 20 does not reach the VLAN 10 peer");
    assert.ok(ping(sb, seg.ext, addressOf(la)!), "the VLAN 10 peer reaches a");

    ok(cni(sb, VLAN, "CHECK", { netns: a.path, id: "a" }, { ...config10, prevResult: ra }), "CHECK a");
    const wrongId = cni(sb, VLAN, "CHECK", { netns: a.path, id: "a" }, { ...config10, vlanId: 30, prevResult: ra });
    assert.is(wrongId.code, 1);
    assert.match(wrongId.json?.msg ?? "", "configured VLAN ID is 30, current value is 10");
    const noPrev = cni(sb, VLAN, "CHECK", { netns: a.path, id: "a" }, config10);
    assert.is(noPrev.json?.msg, "vlan: Required prevResult missing");

    ok(cni(sb, VLAN, "DEL", { netns: a.path, id: "a" }, config10), "DEL a");
    assert.equal(linkNames(sb, a.name), ["lo"]);
    assert.equal(reservations(sb, "vlannet"), [addressOf(linkIn(sb, b.name, "eth0"))]);
    ok(cni(sb, VLAN, "DEL", { netns: a.path, id: "a" }, config10), "a second DEL");
    sb.inNode(["ip", "netns", "del", b.name]);
    ok(cni(sb, VLAN, "DEL", { netns: b.path, id: "b" }, { ...config10, vlanId: 20 }), "DEL with the netns gone");
    assert.equal(reservations(sb, "vlannet"), []);
    assert.equal(
      linkNames(sb, sb.node).filter((n) => n !== "lo"),
      [seg.master],
      "no VLAN link left on the node",
    );
  },
);

inSandbox("mtu and linkInContainer: the master in the container, the MTU set and checked", async (sb) => {
  const a = sb.addContainer();
  addSegment(sb, { master: "up0", ns: a.name, extAddr: "" });
  const config = conf(sb, "vlan", { master: "up0", vlanId: 100, mtu: 1400, linkInContainer: true });
  const r = ok(cni(sb, VLAN, "ADD", { netns: a.path, ifname: "net1" }, config), "ADD");
  const l = linkIn(sb, a.name, "net1")!;
  assert.is(l.mtu, 1400);
  assert.is(l.link, "up0", "the parent is the container's up0");
  assert.is(l.linkinfo?.info_data?.id, 100);
  ok(cni(sb, VLAN, "CHECK", { netns: a.path, ifname: "net1" }, { ...config, prevResult: r }), "CHECK");
  const mtu = cni(sb, VLAN, "CHECK", { netns: a.path, ifname: "net1" }, { ...config, mtu: 1300, prevResult: r });
  assert.is(mtu.json?.msg, "Error: Tuning configured MTU of net1 is 1300, current value is 1400");
  const tooBig = cni(sb, VLAN, "ADD", { netns: a.path, ifname: "net2" }, { ...config, mtu: 9000 });
  assert.is(tooBig.json?.msg, "invalid MTU 9000, must be [0, master MTU(1500)]");
  ok(cni(sb, VLAN, "DEL", { netns: a.path, ifname: "net1" }, config), "DEL");
  assert.equal(linkNames(sb, a.name), ["lo", "up0"]);
});

inSandbox("bad input: vlanId out of range, no master, an unknown master, no ipam; nothing left behind", async (sb) => {
  const seg = addTaggedPeers(sb);
  const a = sb.addContainer();
  const base = conf(sb, "vlan", { master: seg.master, vlanId: 10 });
  const refused = (config: unknown) => {
    const r = cni(sb, VLAN, "ADD", { netns: a.path }, config);
    assert.is(r.code, 1, r.stdout);
    return r.json;
  };
  const high = refused({ ...base, vlanId: 4095 });
  assert.equal([high.code, high.msg], [7, "invalid VLAN ID 4095 (must be between 0 and 4095 inclusive)"]);
  assert.is(high.cniVersion, "1.0.0");
  assert.is(refused({ ...base, vlanId: -1 }).msg, "invalid VLAN ID -1 (must be between 0 and 4095 inclusive)");
  const missing = refused(conf(sb, "vlan", { vlanId: 10 }));
  assert.equal(
    [missing.code, missing.msg],
    [7, '"master" field is required. It specifies the host interface name to create the VLAN for'],
  );
  assert.is(refused({ ...base, master: "nosuch0" }).msg, 'failed to lookup master "nosuch0": Link not found');
  assert.is(refused(conf(sb, "vlan", { master: seg.master, vlanId: 10 }, null)).code, 7);
  assert.equal(linkNames(sb, a.name), ["lo"]);
  assert.equal(reservations(sb, "vlannet"), []);

  // IPAM fails after the link exists (a one-address range already taken): the link goes again.
  const one = conf(sb, "vlan", { master: seg.master, vlanId: 10 }, ipamOf(sb, { rangeEnd: "192.0.2.10" }));
  ok(cni(sb, VLAN, "ADD", { netns: a.path, id: "a" }, one), "ADD taking the one address");
  const b = sb.addContainer();
  const exhausted = cni(sb, VLAN, "ADD", { netns: b.path, id: "b" }, { ...one, vlanId: 20 });
  assert.is(exhausted.code, 1);
  assert.match(exhausted.json?.msg ?? "", /^failed to execute IPAM delegate: /);
  assert.equal(linkNames(sb, b.name), ["lo"], "the VLAN link of the failed ADD is gone");
  ok(cni(sb, VLAN, "DEL", { netns: a.path, id: "a" }, one), "DEL");
  assert.equal(reservations(sb, "vlannet"), []);
});

inSandbox("cross-implementation: our ADD, the reference's CHECK and DEL; its ADD, our CHECK and DEL", async (sb) => {
  const seg = addTaggedPeers(sb);
  const [a, b] = [sb.addContainer(), sb.addContainer()];
  const config = conf(sb, "vlan", { master: seg.master, vlanId: 10, mtu: 1400 });
  const ra = ok(cni(sb, VLAN, "ADD", { netns: a.path, id: "a" }, config), "our ADD");
  ok(cni(sb, REF, "CHECK", { netns: a.path, id: "a" }, { ...config, prevResult: ra }), "its CHECK of ours");
  ok(cni(sb, REF, "DEL", { netns: a.path, id: "a" }, config), "its DEL of ours");
  assert.equal(linkNames(sb, a.name), ["lo"]);
  assert.equal(reservations(sb, "vlannet"), []);

  const rb = ok(cni(sb, REF, "ADD", { netns: b.path, id: "b" }, config), "its ADD");
  assert.ok(ping(sb, b.name, PEER10), "the reference's container reaches the VLAN 10 peer");
  ok(cni(sb, VLAN, "CHECK", { netns: b.path, id: "b" }, { ...config, prevResult: rb }), "our CHECK of its");
  ok(cni(sb, VLAN, "DEL", { netns: b.path, id: "b" }, config), "our DEL of its");
  assert.equal(linkNames(sb, b.name), ["lo"]);
  assert.equal(reservations(sb, "vlannet"), []);
});

test.run();
