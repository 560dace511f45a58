import { test } from "uvu";
import * as assert from "uvu/assert";
import { testNeeding } from "../helpers/link-kinds.ts";
import { sandboxed, type Sandbox } from "../helpers/sandbox.ts";
import {
  addressOf,
  cni,
  conf,
  ipamOf,
  linkIn,
  linkNames,
  ok,
  ours,
  ping,
  reservations,
} from "../helpers/sublink-net.ts";

/**
 * dummy: a dummy link holding IPAM's address in the container. The kernel here may have no dummy
 * links: the file then skips and the User-Mode Linux stage runs it (test/uml/files.txt).
 */
const inSandbox = sandboxed(testNeeding("dummy", test, "dummy.test.ts"), "dummy");
const DUMMY = ours("dummy");

/** A veth from the container to an external host at 198.51.100.2, the container being .1. */
function wireToExternal(sb: Sandbox, ctr: string): string {
  const ext = sb.addNamespace("ext");
  sb.inNs(ctr, ["ip", "link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", ext]);
  sb.inNs(ctr, ["ip", "addr", "add", "198.51.100.1/24", "dev", "up0"]);
  sb.inNs(ctr, ["ip", "link", "set", "up0", "up"]);
  sb.inNs(ext, ["ip", "addr", "add", "198.51.100.2/24", "dev", "eth0"]);
  sb.inNs(ext, ["ip", "link", "set", "eth0", "up"]);
  sb.inNs(ext, ["ip", "link", "set", "lo", "up"]);
  return ext;
}

inSandbox(
  "ADD puts IPAM's address on a dummy link, reachable through the container's other link; CHECK; DEL",
  async (sb) => {
    const a = sb.addContainer();
    const ext = wireToExternal(sb, a.name);
    const config = conf(sb, "dummy", {}, ipamOf(sb, { routes: [{ dst: "203.0.113.0/24" }] }));
    const r = ok(cni(sb, DUMMY, "ADD", { netns: a.path, ifname: "dum0" }, config), "ADD");

    const link = linkIn(sb, a.name, "dum0")!;
    assert.is(link.linkinfo?.info_kind, "dummy");
    assert.ok(link.flags.includes("UP"));
    const addr = addressOf(link)!;
    assert.equal(r.interfaces, [{ name: "dum0", mac: link.address, sandbox: a.path }]);
    assert.equal(r.ips, [{ address: `${addr}/24`, gateway: "192.0.2.1", interface: 0 }]);
    assert.equal(reservations(sb, "dummynet"), [addr]);
    // IPAM's route is on the dummy.
    const routes = JSON.parse(sb.inNs(a.name, ["ip", "-j", "route", "show", "203.0.113.0/24"]).stdout);
    assert.is(routes[0]?.dev, "dum0");
    // The address is the container's: an external host that routes it to the container reaches it.
    sb.inNs(ext, ["ip", "route", "add", `${addr}/32`, "via", "198.51.100.1"]);
    assert.ok(ping(sb, ext, addr), "the external host reaches the dummy's address");

    ok(cni(sb, DUMMY, "CHECK", { netns: a.path, ifname: "dum0" }, { ...config, prevResult: r }), "CHECK");
    ok(cni(sb, DUMMY, "DEL", { netns: a.path, ifname: "dum0" }, config), "DEL");
    assert.equal(linkNames(sb, a.name), ["lo", "up0"]);
    assert.equal(reservations(sb, "dummynet"), []);
    assert.not.ok(ping(sb, ext, addr, 1), "the address is gone");
    ok(cni(sb, DUMMY, "DEL", { netns: a.path, ifname: "dum0" }, config), "a second DEL");
  },
);

inSandbox("CHECK fails without prevResult, when the link is gone, or of another kind", async (sb) => {
  const a = sb.addContainer();
  const config = conf(sb, "dummy");
  const r = ok(cni(sb, DUMMY, "ADD", { netns: a.path }, config), "ADD");
  const noPrev = cni(sb, DUMMY, "CHECK", { netns: a.path }, config);
  assert.is(noPrev.code, 1);
  assert.match(noPrev.json.msg, "dummy: Required prevResult missing");
  sb.inNs(a.name, ["ip", "link", "del", "eth0"]);
  const gone = cni(sb, DUMMY, "CHECK", { netns: a.path }, { ...config, prevResult: r });
  assert.is(gone.code, 1);
  assert.match(gone.json.msg, "Container Interface name in prevResult: eth0 not found");
  // A link of another kind under the name is not the attachment.
  sb.inNs(a.name, ["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "p1"]);
  const wrong = cni(sb, DUMMY, "CHECK", { netns: a.path }, { ...config, prevResult: r });
  assert.is(wrong.code, 1);
  assert.match(wrong.json.msg, "not of type dummy");
  // DEL removes whatever holds the name, as the reference's DelLinkByName does, and the address.
  ok(cni(sb, DUMMY, "DEL", { netns: a.path }, config), "DEL");
  assert.equal(reservations(sb, "dummynet"), []);
});

inSandbox("refused without IPAM (code 7, nothing made); a taken CNI_IFNAME rolls the ADD back", async (sb) => {
  const a = sb.addContainer();
  const none = cni(sb, DUMMY, "ADD", { netns: a.path }, conf(sb, "dummy", {}, null));
  assert.is(none.code, 1);
  assert.equal([none.json.code, none.json.msg], [7, "dummy interface requires an IPAM configuration"]);
  assert.equal(linkNames(sb, a.name), ["lo"]);

  sb.inNs(a.name, ["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "p1"]);
  const taken = cni(sb, DUMMY, "ADD", { netns: a.path }, conf(sb, "dummy"));
  assert.is(taken.code, 1);
  assert.equal(linkNames(sb, a.name), ["eth0", "lo", "p1"]);
  assert.is(linkIn(sb, a.name, "eth0")?.linkinfo?.info_kind, "veth", "the existing eth0 is left alone");
  assert.equal(reservations(sb, "dummynet"), [], "no address is kept");
});

inSandbox("DEL with the namespace gone releases the address", async (sb) => {
  const a = sb.addContainer();
  ok(cni(sb, DUMMY, "ADD", { netns: a.path }, conf(sb, "dummy")), "ADD");
  assert.is(reservations(sb, "dummynet").length, 1);
  sb.inNode(["ip", "netns", "del", a.name]);
  ok(cni(sb, DUMMY, "DEL", { netns: a.path }, conf(sb, "dummy")), "DEL");
  assert.equal(reservations(sb, "dummynet"), []);
});

test.run();
