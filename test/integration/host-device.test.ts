import { test } from "uvu";
import * as assert from "uvu/assert";
import { sandboxed, sh, type Sandbox } from "../helpers/sandbox.ts";
import { addressOf, cni, conf, linkIn, linkNames, ok, ours, reference, reservations } from "../helpers/sublink-net.ts";

const inSandbox = sandboxed(test, "hostdev");

/**
 * host-device with ifb devices of the node namespace as the "host device" (this kernel has no
 * dummy): each selector moves the device into the container as CNI_IFNAME, DEL brings it back
 * under its own name, with or without CNI_NETNS. Every assertion reads the kernel.
 */
const HOSTDEV = ours("host-device");
const REF = reference("host-device");

function addDevice(sb: Sandbox, name: string): { name: string; mac: string; ifindex: number } {
  sh(["ip", "-n", sb.node, "link", "add", name, "type", "ifb"]);
  sh(["ip", "-n", sb.node, "link", "set", name, "up"]);
  const l = linkIn(sb, sb.node, name)!;
  return { name, mac: l.address, ifindex: l.ifindex };
}

/** The device is back in the node under its name, up, with its alias cleared. */
function assertBack(sb: Sandbox, dev: { name: string; mac: string; ifindex: number }, what: string) {
  const l = linkIn(sb, sb.node, dev.name) as (ReturnType<typeof linkIn> & { ifalias?: string }) | undefined;
  assert.ok(l, `${what}: ${dev.name} is back in the node`);
  // The same device by its (random) MAC: its ifindex changes when the container's was taken.
  assert.is(l!.address, dev.mac, `${what}: the same device`);
  assert.ok(l!.flags.includes("UP"), `${what}: up again`);
  assert.is(l!.ifalias, undefined, `${what}: alias cleared`);
}

// kernelpath and pciBusID read sysfs, which shows the machine's namespace, not the sandbox's node:
// their lookup is unit-tested on a tree of its own (test/unit/host-device.test.ts).
inSandbox("device and hwaddr select the node's device; it moves in as eth0; DEL brings it back", async (sb) => {
  const selectors: [string, (d: { name: string; mac: string }) => Record<string, unknown>][] = [
    ["device", (d) => ({ device: d.name })],
    ["hwaddr", (d) => ({ hwaddr: d.mac.toUpperCase() })],
  ];
  for (const [key, sel] of selectors) {
    const dev = addDevice(sb, `hd${key.slice(0, 4)}0`);
    const ctr = sb.addContainer();
    const config = conf(sb, "host-device", sel(dev));
    const r = ok(cni(sb, HOSTDEV, "ADD", { netns: ctr.path, id: key }, config), `${key} ADD`);
    const inside = linkIn(sb, ctr.name, "eth0") as ReturnType<typeof linkIn> & { ifalias?: string };
    assert.ok(inside, `${key}: eth0 in the container`);
    assert.is(inside!.address, dev.mac, `${key}: the node's device itself`);
    assert.is(inside!.ifalias, dev.name, `${key}: its own name kept in the alias`);
    assert.is(linkIn(sb, sb.node, dev.name), undefined, `${key}: gone from the node`);
    assert.equal(r.interfaces, [{ name: "eth0", mac: dev.mac, sandbox: ctr.path }]);
    assert.equal(r.ips, [{ address: `${addressOf(inside)}/24`, gateway: "192.0.2.1", interface: 0 }]);
    ok(cni(sb, HOSTDEV, "CHECK", { netns: ctr.path, id: key }, { ...config, prevResult: r }), `${key} CHECK`);
    ok(cni(sb, HOSTDEV, "DEL", { netns: ctr.path, id: key }, config), `${key} DEL`);
    assertBack(sb, dev, key);
    assert.equal(linkNames(sb, ctr.name), ["lo"]);
    ok(cni(sb, HOSTDEV, "DEL", { netns: ctr.path, id: key }, config), `${key} second DEL`);
  }
  assert.equal(reservations(sb, "host-devicenet"), []);
});

inSandbox(
  "DEL without CNI_NETNS finds the device in the namespace ADD moved it to, and releases the address",
  async (sb) => {
    const dev = addDevice(sb, "hdnone0");
    const ctr = sb.addContainer();
    const config = conf(sb, "host-device", { device: dev.name });
    ok(cni(sb, HOSTDEV, "ADD", { netns: ctr.path }, config), "ADD");
    assert.equal(reservations(sb, "host-devicenet").length, 1);
    ok(cni(sb, HOSTDEV, "DEL", { netns: "" }, config), "DEL with an empty CNI_NETNS");
    assertBack(sb, dev, "empty CNI_NETNS");
    assert.equal(linkNames(sb, ctr.name), ["lo"]);
    assert.equal(reservations(sb, "host-devicenet"), [], "the reference leaks this address");
  },
);

inSandbox(
  "DEL with the netns gone: a device the kernel returned to the node (as devN) gets its name back",
  async (sb) => {
    const dev = addDevice(sb, "hdgone0");
    const ctr = sb.addContainer();
    const config = conf(sb, "host-device", { device: dev.name });
    ok(cni(sb, HOSTDEV, "ADD", { netns: ctr.path }, config), "ADD");
    // What the kernel does for a physical device when its namespace goes (an ifb would be destroyed):
    // back to the node, down, renamed when the name is taken, alias kept.
    sh(["ip", "-n", ctr.name, "link", "set", "eth0", "netns", sb.node, "name", "dev7"]);
    sh(["ip", "netns", "del", ctr.name]);
    ok(cni(sb, HOSTDEV, "DEL", { netns: ctr.path }, config), "DEL with the netns gone");
    assertBack(sb, dev, "netns gone");
    assert.is(linkIn(sb, sb.node, "dev7"), undefined);
    assert.equal(reservations(sb, "host-devicenet"), []);
  },
);

inSandbox("a failed ADD (bad IPAM) leaves the device where it was under its name", async (sb) => {
  const dev = addDevice(sb, "hdfail0");
  const ctr = sb.addContainer();
  // host-local refuses a range outside its subnet only after the device has moved.
  const config = conf(
    sb,
    "host-device",
    { device: dev.name },
    { type: "host-local", dataDir: `${sb.tmp}/ipam`, subnet: "192.0.2.0/24", rangeStart: "198.51.100.1" },
  );
  const r = cni(sb, HOSTDEV, "ADD", { netns: ctr.path }, config);
  assert.is.not(r.code, 0, "ADD fails");
  assertBack(sb, dev, "failed ADD");
  assert.equal(linkNames(sb, ctr.name), ["lo"]);
  // CNI_IFNAME taken in the container: the move and the rename are one request, so nothing moves.
  sh(["ip", "-n", ctr.name, "link", "add", "eth0", "type", "ifb"]);
  const taken = cni(
    sb,
    HOSTDEV,
    "ADD",
    { netns: ctr.path, id: "taken" },
    conf(sb, "host-device", { device: dev.name }),
  );
  assert.is.not(taken.code, 0, "ADD onto a taken CNI_IFNAME fails");
  assertBack(sb, dev, "taken CNI_IFNAME");
  assert.is(linkIn(sb, ctr.name, "eth0")?.linkinfo?.info_kind, "ifb", "the container's own eth0 is left alone");
  assert.is.not(linkIn(sb, ctr.name, "eth0")?.address, dev.mac);
  sh(["ip", "-n", ctr.name, "link", "del", "eth0"]);
  assert.equal(reservations(sb, "host-devicenet"), []);
  const none = cni(sb, HOSTDEV, "ADD", { netns: ctr.path }, conf(sb, "host-device", { device: "hdnosuch0" }));
  assert.is(none.json?.msg, "failed to find host device: Link not found");
  const nosel = cni(sb, HOSTDEV, "ADD", { netns: ctr.path }, conf(sb, "host-device", {}));
  assert.is(nosel.json?.msg, `specify either "device", "hwaddr", "kernelpath" or "pciBusID"`);
});

inSandbox("with the reference plugin: its ADD, our CHECK and DEL; our ADD, its CHECK and DEL", async (sb) => {
  const [da, db] = [addDevice(sb, "hdref0"), addDevice(sb, "hdours0")];
  const [a, b] = [sb.addContainer(), sb.addContainer()];
  const ca = conf(sb, "host-device", { device: da.name });
  const cb = conf(sb, "host-device", { device: db.name });
  const theirs = ok(cni(sb, REF, "ADD", { netns: a.path, id: "a" }, ca), "reference ADD");
  assert.is(linkIn(sb, a.name, "eth0")?.address, da.mac);
  ok(cni(sb, HOSTDEV, "CHECK", { netns: a.path, id: "a" }, { ...ca, prevResult: theirs }), "our CHECK of its ADD");
  const mine = ok(cni(sb, HOSTDEV, "ADD", { netns: b.path, id: "b" }, cb), "our ADD");
  ok(cni(sb, REF, "CHECK", { netns: b.path, id: "b" }, { ...cb, prevResult: mine }), "its CHECK of our ADD");
  ok(cni(sb, HOSTDEV, "DEL", { netns: a.path, id: "a" }, ca), "our DEL of its ADD");
  ok(cni(sb, REF, "DEL", { netns: b.path, id: "b" }, cb), "its DEL of our ADD");
  assert.ok(linkIn(sb, sb.node, da.name), "its ADD's device back under its name");
  assert.ok(linkIn(sb, sb.node, db.name), "our ADD's device back under its name");
  assert.equal(linkNames(sb, a.name), ["lo"]);
  assert.equal(linkNames(sb, b.name), ["lo"]);
  assert.equal(reservations(sb, "host-devicenet"), []);
});

test.run();
