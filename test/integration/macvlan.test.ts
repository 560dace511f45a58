import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { sandboxed, sh } from "../helpers/sandbox.ts";
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

const inSandbox = sandboxed(test, "macvlan");

/**
 * macvlan on a master in the node whose veth peer is an external host's eth0: the containers are
 * on the external host's L2 segment with their own MACs and addresses. Every assertion reads the
 * kernel (links, neighbours, reservations) or sends packets.
 */
const MACVLAN = ours("macvlan");
const REF = reference("macvlan");

inSandbox(
  "bridge mode: containers reach each other and the external host directly, which sees their own address and MAC",
  async (sb) => {
    const seg = addSegment(sb);
    const [a, b] = [sb.addContainer(), sb.addContainer()];
    const config = conf(sb, "macvlan", { master: seg.master });
    const ra = ok(cni(sb, MACVLAN, "ADD", { netns: a.path, id: "a" }, config), "ADD a");
    ok(cni(sb, MACVLAN, "ADD", { netns: b.path, id: "b" }, config), "ADD b");

    const la = linkIn(sb, a.name, "eth0")!;
    const lb = linkIn(sb, b.name, "eth0")!;
    assert.is(la.linkinfo?.info_kind, "macvlan");
    assert.is(la.linkinfo?.info_data?.mode, "bridge");
    assert.equal(ra.interfaces, [{ name: "eth0", mac: la.address, sandbox: a.path }]);
    assert.equal(ra.ips, [{ address: `${addressOf(la)}/24`, gateway: "192.0.2.1", interface: 0 }]);
    assert.ok(la.flags.includes("UP"));
    // The parent is the master in the node.
    const master = linkIn(sb, sb.node, seg.master)!;
    assert.is(la.link_index, master.ifindex);

    assert.ok(ping(sb, a.name, EXT_ADDR), "a reaches the external host");
    assert.ok(ping(sb, a.name, addressOf(lb)!), "a reaches b over the master (bridge mode)");
    assert.ok(ping(sb, seg.ext, addressOf(la)!), "the external host reaches a by its own address");
    assert.is(neighbourMac(sb, seg.ext, addressOf(la)!), la.address, "no NAT: the external host sees a's MAC");
    assert.equal(reservations(sb, "macvlannet"), [addressOf(la), addressOf(lb)].sort());

    ok(cni(sb, MACVLAN, "CHECK", { netns: a.path, id: "a" }, { ...config, prevResult: ra }), "CHECK a");
    ok(cni(sb, MACVLAN, "DEL", { netns: a.path, id: "a" }, config), "DEL a");
    assert.equal(linkNames(sb, a.name), ["lo"]);
    assert.equal(reservations(sb, "macvlannet"), [addressOf(lb)]);
    ok(cni(sb, MACVLAN, "DEL", { netns: a.path, id: "a" }, config), "a second DEL");
    // A DEL whose namespace is gone still releases the address.
    sh(["ip", "netns", "del", b.name]);
    ok(cni(sb, MACVLAN, "DEL", { netns: b.path, id: "b" }, config), "DEL with the netns gone");
    assert.equal(reservations(sb, "macvlannet"), []);
  },
);

inSandbox("private and vepa modes: siblings cannot reach each other, the external host can be reached", async (sb) => {
  for (const mode of ["private", "vepa"]) {
    const seg = addSegment(sb, { master: `m${mode.slice(0, 3)}0` });
    const [a, b] = [sb.addContainer(), sb.addContainer()];
    const config = conf(sb, "macvlan", { name: `mv${mode}`, master: seg.master, mode });
    ok(cni(sb, MACVLAN, "ADD", { netns: a.path, id: "a" }, config), `${mode} ADD a`);
    ok(cni(sb, MACVLAN, "ADD", { netns: b.path, id: "b" }, config), `${mode} ADD b`);
    assert.is(linkIn(sb, a.name, "eth0")?.linkinfo?.info_data?.mode, mode);
    const addrB = addressOf(linkIn(sb, b.name, "eth0"))!;
    assert.ok(ping(sb, a.name, EXT_ADDR), `${mode}: a reaches the external host`);
    assert.ok(ping(sb, b.name, EXT_ADDR), `${mode}: b reaches the external host`);
    assert.not.ok(ping(sb, a.name, addrB, 2), `${mode}: a does not reach its sibling b`);
  }
});

inSandbox(
  "passthru: the one link takes the master (its MAC, promiscuous); a second is refused and leaves nothing",
  async (sb) => {
    const seg = addSegment(sb);
    const [a, b] = [sb.addContainer(), sb.addContainer()];
    const config = conf(sb, "macvlan", { master: seg.master, mode: "passthru" });
    const masterBefore = linkIn(sb, sb.node, seg.master)!;
    const r = ok(cni(sb, MACVLAN, "ADD", { netns: a.path, id: "a" }, config), "ADD a");
    const la = linkIn(sb, a.name, "eth0")!;
    assert.is(la.linkinfo?.info_data?.mode, "passthru");
    assert.is(la.address, masterBefore.address, "the link inherits the master's MAC");
    assert.is(r.interfaces[0].mac, masterBefore.address);
    assert.ok((linkIn(sb, sb.node, seg.master)!.promiscuity ?? 0) > 0, "the master is promiscuous");
    assert.ok(ping(sb, a.name, EXT_ADDR));

    for (const mode of ["passthru", "bridge"]) {
      const second = cni(sb, MACVLAN, "ADD", { netns: b.path, id: "b" }, { ...config, mode });
      assert.is(second.code, 1, `a second ${mode} link on a passthru master is refused`);
      assert.match(second.json.msg, /failed to create macvlan/);
      assert.equal(linkNames(sb, b.name), ["lo"], "nothing left in the container");
    }
    assert.equal(reservations(sb, "macvlannet"), [addressOf(la)], "the refused ADDs released their addresses");
    ok(cni(sb, MACVLAN, "DEL", { netns: a.path, id: "a" }, config), "DEL a");
    assert.is(linkIn(sb, sb.node, seg.master)!.promiscuity ?? 0, 0, "the master is itself again");
  },
);

inSandbox("mtu: at most the master's (refused above it before anything exists), applied below it", async (sb) => {
  const seg = addSegment(sb, { mtu: 1500 });
  const ctr = sb.addContainer();
  const bad = cni(sb, MACVLAN, "ADD", { netns: ctr.path }, conf(sb, "macvlan", { master: seg.master, mtu: 9000 }));
  assert.is(bad.code, 1);
  assert.is(bad.json.msg, "invalid MTU 9000, must be [0, master MTU(1500)]");
  assert.equal(linkNames(sb, ctr.name), ["lo"]);
  assert.equal(reservations(sb, "macvlannet"), []);
  const neg = cni(sb, MACVLAN, "ADD", { netns: ctr.path }, conf(sb, "macvlan", { master: seg.master, mtu: -1 }));
  assert.match(neg.json.msg, /invalid MTU -1/);

  ok(cni(sb, MACVLAN, "ADD", { netns: ctr.path }, conf(sb, "macvlan", { master: seg.master, mtu: 1400 })), "ADD");
  assert.is(linkIn(sb, ctr.name, "eth0")!.mtu, 1400);
  assert.ok(ping(sb, ctr.name, EXT_ADDR));
});

inSandbox("MAC: the config's mac, overridden by CNI_ARGS MAC, overridden by runtimeConfig.mac", async (sb) => {
  const seg = addSegment(sb);
  const cases: [string, Record<string, unknown>, string, string][] = [
    ["mac", { mac: "0a:58:c0:00:02:0a" }, "", "0a:58:c0:00:02:0a"],
    ["CNI_ARGS MAC", { mac: "0a:58:c0:00:02:0a" }, "IgnoreUnknown=1;MAC=0a:58:c0:00:02:0b", "0a:58:c0:00:02:0b"],
    [
      "runtimeConfig.mac",
      { mac: "0a:58:c0:00:02:0a", runtimeConfig: { mac: "0A-58-C0-00-02-0C" } },
      "IgnoreUnknown=1;MAC=0a:58:c0:00:02:0b",
      "0a:58:c0:00:02:0c",
    ],
  ];
  for (const [what, extra, args, want] of cases) {
    const ctr = sb.addContainer();
    const r = ok(
      cni(
        sb,
        MACVLAN,
        "ADD",
        { netns: ctr.path, id: ctr.name, args },
        conf(sb, "macvlan", { master: seg.master, ...extra }),
      ),
      what,
    );
    assert.is(linkIn(sb, ctr.name, "eth0")!.address, want, what);
    assert.is(r.interfaces[0].mac, want, what);
    assert.ok(ping(sb, ctr.name, EXT_ADDR), what);
    assert.is(neighbourMac(sb, seg.ext, r.ips[0].address.split("/")[0]), want, `${what}: the external host sees it`);
  }
  const ctr = sb.addContainer();
  for (const mac of ["01:00:5e:00:00:01", "not-a-mac"]) {
    const r = cni(sb, MACVLAN, "ADD", { netns: ctr.path }, conf(sb, "macvlan", { master: seg.master, mac }));
    assert.is(r.json?.code, 7, `${mac}: ${r.stdout}`);
  }
  const unknownArg = cni(
    sb,
    MACVLAN,
    "ADD",
    { netns: ctr.path, args: "FOO=1" },
    conf(sb, "macvlan", { master: seg.master }),
  );
  assert.is(unknownArg.json?.code, 4);
  assert.equal(linkNames(sb, ctr.name), ["lo"]);
});

inSandbox(
  "default master: the interface of the default route, in the node or (linkInContainer) in the container",
  async (sb) => {
    const seg = addSegment(sb);
    const ctr = sb.addContainer();
    const noRoute = cni(sb, MACVLAN, "ADD", { netns: ctr.path }, conf(sb, "macvlan"));
    assert.is(noRoute.json?.msg, "no default route interface found");
    sb.inNode(["ip", "addr", "add", "192.0.2.3/24", "dev", seg.master]);
    sb.inNode(["ip", "route", "add", "default", "via", EXT_ADDR, "dev", seg.master]);
    ok(cni(sb, MACVLAN, "ADD", { netns: ctr.path }, conf(sb, "macvlan")), "ADD without master");
    assert.is(linkIn(sb, ctr.name, "eth0")!.link_index, linkIn(sb, sb.node, seg.master)!.ifindex);
    assert.ok(ping(sb, ctr.name, EXT_ADDR));

    // linkInContainer: the master is an interface of the container itself.
    const pod = sb.addContainer();
    const inner = addSegment(sb, { master: "uplink0", ns: pod.name, extAddr: "192.0.2.2" });
    const named = conf(sb, "macvlan", { name: "mvin", master: "uplink0", linkInContainer: true });
    ok(cni(sb, MACVLAN, "ADD", { netns: pod.path, id: "pod" }, named), "ADD linkInContainer");
    const l = linkIn(sb, pod.name, "eth0")!;
    assert.is(l.link, "uplink0", "the parent is the container's own interface");
    assert.ok(ping(sb, pod.name, EXT_ADDR), "reaches the external host through the container's own master");
    assert.ok(ping(sb, inner.ext, addressOf(l)!));
    ok(cni(sb, MACVLAN, "DEL", { netns: pod.path, id: "pod" }, named), "DEL");
    assert.equal(linkNames(sb, pod.name), ["lo", "uplink0"]);
    const missing = cni(sb, MACVLAN, "ADD", { netns: pod.path, id: "pod" }, { ...named, master: "" });
    assert.is(missing.json?.msg, "no default route interface found", "no default route in the container");
    sb.inNs(pod.name, ["ip", "addr", "add", "192.0.2.4/24", "dev", "uplink0"]);
    sb.inNs(pod.name, ["ip", "route", "add", "default", "via", EXT_ADDR]);
    ok(
      cni(sb, MACVLAN, "ADD", { netns: pod.path, id: "pod" }, { ...named, master: "" }),
      "default master in the container",
    );
    assert.is(linkIn(sb, pod.name, "eth0")!.link, "uplink0");
    const gone = cni(
      sb,
      MACVLAN,
      "ADD",
      { netns: ctr.path, id: "x", ifname: "net1" },
      conf(sb, "macvlan", { master: "nope0" }),
    );
    assert.is(gone.json?.msg, 'failed to lookup master "nope0": Link not found');
  },
);

inSandbox("layer 2 (no ipam), bcqueuelen, and the result a 0.2.0 config cannot have", async (sb) => {
  const seg = addSegment(sb);
  const ctr = sb.addContainer();
  const config = conf(sb, "macvlan", { master: seg.master, bcqueuelen: 2500 }, null);
  const r = ok(cni(sb, MACVLAN, "ADD", { netns: ctr.path }, config), "ADD");
  const l = linkIn(sb, ctr.name, "eth0")!;
  assert.equal(r.interfaces, [{ name: "eth0", mac: l.address, sandbox: ctr.path }]);
  assert.is(r.ips, undefined);
  assert.ok(l.flags.includes("UP"));
  assert.is(addressOf(l), undefined);
  assert.is(l.linkinfo?.info_data?.bcqueuelen, 2500);
  // On L2 alone the container still talks to the external host once it has an address.
  sb.inNs(ctr.name, ["ip", "addr", "add", "192.0.2.99/24", "dev", "eth0"]);
  assert.ok(ping(sb, ctr.name, EXT_ADDR));
  ok(cni(sb, MACVLAN, "DEL", { netns: ctr.path }, config), "DEL");

  const legacy = cni(sb, MACVLAN, "ADD", { netns: ctr.path }, { ...config, cniVersion: "0.2.0" });
  assert.is(legacy.json?.msg, "cannot convert: no valid IP addresses");
  assert.equal(linkNames(sb, ctr.name), ["lo"], "refused before anything was created");
});

inSandbox("a failed ADD removes what it made: a taken CNI_IFNAME, an exhausted range, an unknown mode", async (sb) => {
  const seg = addSegment(sb);
  const ctr = sb.addContainer();
  sb.inNs(ctr.name, ["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"]);
  const config = conf(sb, "macvlan", { master: seg.master });
  const taken = cni(sb, MACVLAN, "ADD", { netns: ctr.path }, config);
  assert.match(taken.json?.msg, /^failed to rename macvlan to "eth0"/);
  assert.equal(linkNames(sb, ctr.name), ["eth0", "eth0p", "lo"], "the temporary link is gone, eth0 untouched");
  assert.equal(reservations(sb, "macvlannet"), []);

  const one = conf(
    sb,
    "macvlan",
    { master: seg.master },
    ipamOf(sb, { rangeStart: "192.0.2.10", rangeEnd: "192.0.2.10" }),
  );
  ok(cni(sb, MACVLAN, "ADD", { netns: ctr.path, id: "first", ifname: "net1" }, one), "first ADD");
  const full = cni(sb, MACVLAN, "ADD", { netns: ctr.path, id: "second", ifname: "net2" }, one);
  assert.is(full.code, 1);
  assert.equal(linkNames(sb, ctr.name), ["eth0", "eth0p", "lo", "net1"], "the second link is gone");
  assert.equal(reservations(sb, "macvlannet"), ["192.0.2.10"]);

  const mode = cni(sb, MACVLAN, "ADD", { netns: ctr.path, ifname: "net3" }, { ...config, mode: "source" });
  assert.is(mode.json?.msg, 'unknown macvlan mode: "source"');
  assert.is(mode.json?.code, 7);
});

inSandbox("CHECK: mode, MAC, addresses and a missing link, with the reference's messages", async (sb) => {
  const seg = addSegment(sb);
  const ctr = sb.addContainer();
  const config = conf(sb, "macvlan", { master: seg.master });
  const r = ok(cni(sb, MACVLAN, "ADD", { netns: ctr.path }, config), "ADD");
  const check = (extra: Record<string, unknown>, prev: unknown = r) =>
    cni(sb, MACVLAN, "CHECK", { netns: ctr.path }, { ...config, ...extra, prevResult: prev });
  ok(check({}), "CHECK");
  assert.is(
    check({ mode: "private" }).json?.msg,
    "Container macvlan mode bridge does not match expected value: private",
  );
  assert.is(
    check({}, { ...r, interfaces: [{ ...r.interfaces[0], mac: "0a:00:00:00:00:01" }] }).json?.msg,
    `Interface eth0 Mac 0a:00:00:00:00:01 doesn't match container Mac: ${r.interfaces[0].mac}`,
  );
  assert.is(
    check({}, { ...r, ips: [{ address: "192.0.2.77/24", interface: 0 }] }).json?.msg,
    "Failed to match addr 192.0.2.77/24 on interface eth0",
  );
  assert.is(cni(sb, MACVLAN, "CHECK", { netns: ctr.path }, config).json?.msg, "Required prevResult missing");
  sb.inNs(ctr.name, ["ip", "link", "del", "eth0"]);
  assert.is(check({}).json?.msg, "Container Interface name in prevResult: eth0 not found");
  ok(cni(sb, MACVLAN, "DEL", { netns: ctr.path }, config), "DEL of a link already gone");
  const status = cni(sb, MACVLAN, "STATUS", { netns: "" }, { ...config, cniVersion: "1.1.0" });
  ok(status, "STATUS");
});

inSandbox("with the reference plugin: its ADD, our CHECK and DEL; our ADD, its CHECK and DEL", async (sb) => {
  const seg = addSegment(sb);
  const config = conf(sb, "macvlan", { master: seg.master, mode: "bridge" });
  const [a, b] = [sb.addContainer(), sb.addContainer()];

  const theirs = ok(cni(sb, REF, "ADD", { netns: a.path, id: "a" }, config), "reference ADD");
  const la = linkIn(sb, a.name, "eth0")!;
  assert.is(la.linkinfo?.info_kind, "macvlan");
  ok(cni(sb, MACVLAN, "CHECK", { netns: a.path, id: "a" }, { ...config, prevResult: theirs }), "our CHECK of its ADD");

  const mine = ok(cni(sb, MACVLAN, "ADD", { netns: b.path, id: "b" }, config), "our ADD");
  ok(cni(sb, REF, "CHECK", { netns: b.path, id: "b" }, { ...config, prevResult: mine }), "its CHECK of our ADD");
  assert.ok(ping(sb, a.name, addressOf(linkIn(sb, b.name, "eth0"))!), "the two implementations' containers talk");

  ok(cni(sb, MACVLAN, "DEL", { netns: a.path, id: "a" }, config), "our DEL of its ADD");
  ok(cni(sb, REF, "DEL", { netns: b.path, id: "b" }, config), "its DEL of our ADD");
  assert.equal(linkNames(sb, a.name), ["lo"]);
  assert.equal(linkNames(sb, b.name), ["lo"]);
  assert.equal(reservations(sb, "macvlannet"), []);
});

inSandbox(
  "conf/docker-macvlan.conflist: Docker's macvlan network, on a parent with its gateway outside",
  async (sb) => {
    const list = JSON.parse(
      readFileSync(join(import.meta.dirname, "..", "..", "conf", "docker-macvlan.conflist"), "utf8"),
    );
    const seg = addSegment(sb, { extAddr: "192.168.50.1" });
    const plugin = list.plugins[0];
    const config = {
      cniVersion: list.cniVersion,
      name: list.name,
      ...plugin,
      master: seg.master,
      ipam: { ...plugin.ipam, dataDir: join(sb.tmp, "ipam") },
    };
    const ctr = sb.addContainer();
    const r = ok(cni(sb, MACVLAN, "ADD", { netns: ctr.path }, config), "ADD");
    assert.is(r.ips[0].address, "192.168.50.128/24");
    assert.is(r.ips[0].gateway, "192.168.50.1");
    const routes = sb.inNs(ctr.name, ["ip", "route", "show", "default"]).stdout;
    assert.match(routes, /default via 192\.168\.50\.1 dev eth0/);
    assert.ok(ping(sb, ctr.name, "192.168.50.1"), "the gateway on the parent's segment answers");
    ok(cni(sb, MACVLAN, "DEL", { netns: ctr.path }, config), "DEL");
  },
);

test.run();
