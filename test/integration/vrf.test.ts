import { test } from "uvu";
import * as assert from "uvu/assert";
import { join } from "node:path";
import { addOk, addrsOf, bridgeConf, cni, link, ping, withPrev, type Call } from "../helpers/bridge-net.ts";
import { libcniClient, runClient, writeNetconf } from "../helpers/libcni.ts";
import { testNeeding } from "../helpers/link-kinds.ts";
import { BIN, REF_BIN, type Sandbox, sandboxed } from "../helpers/sandbox.ts";

/**
 * vrf end to end: bridge attachments put into VRFs of the container (the VRF made on first use
 * with a free table, the interface's routes in that table, real packets through it), two
 * attachments in one VRF, two VRFs with the same addresses side by side, the VRF removed with its
 * last interface, the reference on the other side of every verb, and bad input. The kernel here
 * may have no VRFs: the file then skips and the User-Mode Linux stage runs it (test/uml/files.txt).
 */
const inSandbox = sandboxed(testNeeding("vrf", test, "vrf.test.ts"), "vrf");

const VRF = join(BIN, "vrf");
const REF_VRF = join(REF_BIN, "vrf");

const vrfConf = (prevResult: unknown, extra: Record<string, unknown> = {}) => ({
  cniVersion: "1.0.0",
  name: "brnet",
  type: "vrf",
  vrfname: "red",
  ...extra,
  ...(prevResult === undefined ? {} : { prevResult }),
});

const vrfCall = (netns: string, ifname = "eth0", binary = VRF): Call => ({ id: "ctr1", netns, ifname, binary });

function vrfOk(sb: Sandbox, command: string, c: Call, conf: unknown): any {
  const r = cni(sb, command, c, conf);
  if (r.code !== 0) throw new Error(`${c.binary} ${command} failed: ${r.stdout}${r.stderr}`);
  return r.json;
}

interface LinkInfo {
  ifname: string;
  master?: string;
  flags: string[];
  linkinfo?: { info_kind?: string; info_data?: { table?: number } };
}

const linksOf = (sb: Sandbox, ns: string): LinkInfo[] =>
  JSON.parse(sb.inNs(ns, ["ip", "-d", "-j", "link", "show"]).stdout) as LinkInfo[];

/** The VRF's table, undefined when there is no VRF of that name. */
function vrfTableOf(sb: Sandbox, ns: string, name: string): number | undefined {
  const l = linksOf(sb, ns).find((x) => x.ifname === name);
  if (!l) return undefined;
  assert.is(l.linkinfo?.info_kind, "vrf", `${name} is a VRF`);
  return l.linkinfo?.info_data?.table;
}

const slaves = (sb: Sandbox, ns: string, vrf: string) =>
  linksOf(sb, ns)
    .filter((l) => l.master === vrf)
    .map((l) => l.ifname)
    .sort();

/** A table's routes, without what varies between kernels. */
const table = (sb: Sandbox, ns: string, t: string | number, family = "-4") =>
  sb
    .inNs(ns, ["ip", family, "route", "show", "table", String(t)])
    .stdout.split("\n")
    .map((l) => l.replace(/ proto \w+| metric \d+| pref medium| linkdown| table \S+/g, "").trim())
    .filter((l) => l !== "" && !l.startsWith("multicast") && !l.startsWith("fe80::"))
    .sort();

/** An ICMP echo from a socket bound to the VRF device: its lookups use the VRF's table. */
function pingIn(sb: Sandbox, ns: string, vrf: string, addr: string, tries = 3): boolean {
  const v6 = addr.includes(":");
  for (let i = 0; i < tries; i++) {
    const r = sb.inNs(ns, ["busybox", v6 ? "ping6" : "ping", "-I", vrf, "-c", "1", "-W", "1", addr], {
      allowFailure: true,
    });
    if (r.code === 0) return true;
  }
  return false;
}

inSandbox("bridge then vrf: the VRF with the first free table, eth0 in it, its routes in the table", (sb) => {
  const ext = sb.addExternalHost();
  sb.inNs(ext, ["ip", "route", "add", "default", "via", "192.0.2.1"]);
  const c = sb.addContainer();
  const prev = addOk(sb, { netns: c.path }, bridgeConf(sb));
  assert.ok(ping(sb, c.name, "192.0.2.2"), "before: the container reaches the external host by main");

  const r = vrfOk(sb, "ADD", vrfCall(c.path), vrfConf(prev));
  assert.equal(r, prev, "the result is prevResult");
  assert.is(vrfTableOf(sb, c.name, "red"), 1, "the lowest table no VRF uses");
  assert.ok(
    linksOf(sb, c.name)
      .find((l) => l.ifname === "red")!
      .flags.includes("UP"),
  );
  assert.equal(slaves(sb, c.name, "red"), ["eth0"]);
  const t1 = table(sb, c.name, 1);
  assert.ok(t1.includes("default via 10.22.0.1 dev eth0"), "the default route moved");
  assert.ok(t1.includes("10.22.0.0/24 dev eth0 scope link src 10.22.0.2"), "the kernel's own, in the table");
  assert.ok(t1.includes("local 10.22.0.2 dev eth0 scope host src 10.22.0.2"), t1.join("\n"));
  assert.equal(table(sb, c.name, "main"), [], "nothing of eth0 is left in main");
  assert.equal(addrsOf(link(sb, c.name, "eth0")), ["10.22.0.2/24"]);

  // Real packets: the gateway and, by the moved default route, the host behind the node, from the
  // VRF; the node reaches the container (its replies look up the VRF's table).
  assert.ok(pingIn(sb, c.name, "red", "10.22.0.1"), "the gateway through the VRF");
  assert.ok(pingIn(sb, c.name, "red", "192.0.2.2"), "the external host by the VRF's default route");
  assert.ok(ping(sb, sb.node, "10.22.0.2"), "the node reaches the container");
  assert.not.ok(ping(sb, c.name, "192.0.2.2", 1), "main has no route any more");

  vrfOk(sb, "CHECK", vrfCall(c.path), vrfConf(r));
  vrfOk(sb, "DEL", vrfCall(c.path), vrfConf(r));
  assert.is(vrfTableOf(sb, c.name, "red"), undefined, "the VRF went with its last interface");
  assert.equal(slaves(sb, c.name, "red"), []);
  vrfOk(sb, "DEL", vrfCall(c.path), vrfConf(r));
  cni(sb, "DEL", { netns: c.path }, bridgeConf(sb));
});

inSandbox("IPv6: the global addresses the kernel drops are added back, the IPv6 routes move too", (sb) => {
  const c = sb.addContainer();
  const conf = bridgeConf(
    sb,
    {},
    {
      subnet: undefined,
      ranges: [[{ subnet: "10.22.0.0/24" }], [{ subnet: "fd00:22::/64" }]],
      routes: [{ dst: "0.0.0.0/0" }, { dst: "::/0" }],
    },
  );
  const prev = addOk(sb, { netns: c.path }, conf);
  // The bridge plugin keeps addresses across a down; without that the kernel drops them on enslave.
  sb.inNs(c.name, ["sysctl", "-q", "-w", "net.ipv6.conf.eth0.keep_addr_on_down=0"]);

  const r = vrfOk(sb, "ADD", vrfCall(c.path), vrfConf(prev, { table: 1001 }));
  assert.is(vrfTableOf(sb, c.name, "red"), 1001, "the configured table");
  assert.equal(addrsOf(link(sb, c.name, "eth0"), "inet6"), ["fd00:22::2/64"], "the address is back");
  assert.ok(table(sb, c.name, 1001, "-6").includes("default via fd00:22::1 dev eth0"), "the IPv6 default moved");
  assert.ok(pingIn(sb, c.name, "red", "fd00:22::1"), "the IPv6 gateway through the VRF");
  assert.ok(pingIn(sb, c.name, "red", "10.22.0.1"), "and the IPv4 one");

  // CHECK of the whole chain: the bridge's addresses and routes are where the VRF put them.
  ok(cni(sb, "CHECK", { netns: c.path }, withPrev(conf, r)), "bridge CHECK");
  vrfOk(sb, "CHECK", vrfCall(c.path), vrfConf(r, { table: 1001 }));
  const wrong = cni(sb, "CHECK", vrfCall(c.path), vrfConf(r, { table: 7 }));
  assert.is(wrong.code, 1);
  assert.match(wrong.json.msg, "VRF red has routing table 1001, not 7");
});

function ok(r: { code: number; stdout: string; stderr: string }, what: string) {
  assert.is(r.code, 0, `${what}: ${r.stdout}${r.stderr}`);
}

inSandbox("two attachments in one VRF; DEL of one keeps it, DEL of the last removes it", (sb) => {
  const c = sb.addContainer();
  const a = addOk(sb, { netns: c.path }, bridgeConf(sb));
  const second = bridgeConf(sb, { name: "netb", bridge: "brb" }, { subnet: "10.23.0.0/24", routes: [] });
  const b = addOk(sb, { netns: c.path, ifname: "net1" }, second);
  vrfOk(sb, "ADD", vrfCall(c.path), vrfConf(a));
  vrfOk(sb, "ADD", vrfCall(c.path, "net1"), vrfConf(b, { name: "netb" }));
  assert.equal(slaves(sb, c.name, "red"), ["eth0", "net1"]);
  assert.is(vrfTableOf(sb, c.name, "red"), 1, "one VRF, one table");
  assert.ok(pingIn(sb, c.name, "red", "10.22.0.1"));
  assert.ok(pingIn(sb, c.name, "red", "10.23.0.1"));

  vrfOk(sb, "DEL", vrfCall(c.path, "net1"), vrfConf(b, { name: "netb" }));
  assert.equal(slaves(sb, c.name, "red"), ["eth0"]);
  assert.ok(link(sb, c.name, "net1"), "net1 is released, not deleted");
  assert.is(link(sb, c.name, "net1")?.master, undefined);
  assert.ok(pingIn(sb, c.name, "red", "10.22.0.1"), "eth0 still works in the VRF");
  vrfOk(sb, "DEL", vrfCall(c.path), vrfConf(a));
  assert.is(vrfTableOf(sb, c.name, "red"), undefined);
});

/** A veth from the container (`ifname`, `${net}.2/24`) to a new namespace at `${net}.1`. */
function wire(sb: Sandbox, ctr: string, ifname: string, net = "10.50.0"): string {
  const far = sb.addNamespace("far");
  sb.inNs(ctr, ["ip", "link", "add", ifname, "type", "veth", "peer", "name", "eth0", "netns", far]);
  sb.inNs(ctr, ["ip", "addr", "add", `${net}.2/24`, "dev", ifname]);
  sb.inNs(ctr, ["ip", "link", "set", ifname, "up"]);
  sb.inNs(far, ["ip", "addr", "add", `${net}.1/24`, "dev", "eth0"]);
  sb.inNs(far, ["ip", "link", "set", "eth0", "up"]);
  sb.inNs(far, ["ip", "link", "set", "lo", "up"]);
  return far;
}

const prevOf = (ifname: string, netns: string) => ({
  cniVersion: "1.0.0",
  interfaces: [{ name: ifname, sandbox: netns }],
  ips: [{ address: "10.50.0.2/24", gateway: "10.50.0.1", interface: 0 }],
});

inSandbox("two VRFs with the same address space side by side, each reaching its own network", (sb) => {
  const c = sb.addContainer();
  const farA = wire(sb, c.name, "a0");
  wire(sb, c.name, "b0");
  // Only a0's far side has 203.0.113.10, routed by a0 alone: that route must follow a0 into red.
  sb.inNs(farA, ["ip", "addr", "add", "203.0.113.10/32", "dev", "lo"]);
  sb.inNs(c.name, ["ip", "route", "add", "203.0.113.0/24", "via", "10.50.0.1", "dev", "a0"]);

  vrfOk(sb, "ADD", vrfCall(c.path, "a0"), vrfConf(prevOf("a0", c.path)));
  vrfOk(sb, "ADD", vrfCall(c.path, "b0"), vrfConf(prevOf("b0", c.path), { vrfname: "blue" }));
  assert.equal([vrfTableOf(sb, c.name, "red"), vrfTableOf(sb, c.name, "blue")], [1, 2]);
  assert.ok(table(sb, c.name, 1).includes("203.0.113.0/24 via 10.50.0.1 dev a0"), "a0's route is in red's table");
  assert.not.ok(
    table(sb, c.name, 2).some((l) => l.includes("203.0.113")),
    "and not in blue's",
  );
  assert.ok(pingIn(sb, c.name, "red", "10.50.0.1"), "red reaches its 10.50.0.1");
  assert.ok(pingIn(sb, c.name, "blue", "10.50.0.1"), "blue reaches its own");
  assert.ok(pingIn(sb, c.name, "red", "203.0.113.10"), "red's far side, by the moved route");
  assert.not.ok(pingIn(sb, c.name, "blue", "203.0.113.10", 1), "blue has no way there");

  vrfOk(sb, "DEL", vrfCall(c.path, "a0"), vrfConf(prevOf("a0", c.path)));
  assert.is(vrfTableOf(sb, c.name, "red"), undefined);
  assert.is(vrfTableOf(sb, c.name, "blue"), 2, "blue is not touched");
});

inSandbox("a multipath default route: the interface's nexthop follows it into the VRF's table", (sb) => {
  const c = sb.addContainer();
  wire(sb, c.name, "a0");
  const farB = wire(sb, c.name, "b0", "10.60.0");
  sb.inNs(farB, ["ip", "addr", "add", "203.0.113.20/32", "dev", "lo"]);
  sb.inNs(
    c.name,
    ["ip", "route", "add", "default"].concat([
      "nexthop",
      "via",
      "10.50.0.1",
      "dev",
      "a0",
      "nexthop",
      "via",
      "10.60.0.1",
      "dev",
      "b0",
    ]),
  );
  const prevB = { ...prevOf("b0", c.path), ips: [{ address: "10.60.0.2/24", gateway: "10.60.0.1", interface: 0 }] };
  vrfOk(sb, "ADD", vrfCall(c.path, "b0"), vrfConf(prevB));
  assert.ok(table(sb, c.name, 1).includes("default via 10.60.0.1 dev b0"), table(sb, c.name, 1).join("\n"));
  assert.ok(pingIn(sb, c.name, "red", "203.0.113.20"), "b0's far side by the VRF's default route");
});

inSandbox("older versions: 0.4.0 ADD, CHECK and DEL with its result shape; 0.3.0 refused as the reference", (sb) => {
  const c = sb.addContainer();
  wire(sb, c.name, "a0");
  const prev = {
    cniVersion: "0.4.0",
    interfaces: [{ name: "a0", sandbox: c.path }],
    ips: [{ version: "4", address: "10.50.0.2/24", gateway: "10.50.0.1", interface: 0 }],
  };
  const conf = { ...vrfConf(prev), cniVersion: "0.4.0" };
  const r = vrfOk(sb, "ADD", vrfCall(c.path, "a0"), conf);
  assert.equal(r, { ...prev, dns: {} }, "the 0.4.0 shape (with its empty dns)");
  vrfOk(sb, "CHECK", vrfCall(c.path, "a0"), { ...conf, prevResult: r });
  vrfOk(sb, "DEL", vrfCall(c.path, "a0"), conf);
  assert.is(vrfTableOf(sb, c.name, "red"), undefined);
  const old = cni(sb, "ADD", vrfCall(c.path, "a0"), { ...conf, cniVersion: "0.3.0" });
  assert.equal([old.code, old.json.code], [1, 1]);
  assert.is(vrfTableOf(sb, c.name, "red"), undefined);
});

inSandbox("an ADD failing after the enslave is rolled back: out of the VRF, addresses and routes back", (sb) => {
  const c = sb.addContainer();
  const far = wire(sb, c.name, "a0");
  sb.inNs(c.name, ["ip", "route", "add", "203.0.113.0/24", "via", "10.50.0.1", "dev", "a0"]);
  // An IPv6 address the far side holds already: duplicate address detection fails for it, so once
  // the kernel drops it on enslave and the plugin adds it back, its local route never comes.
  sb.inNs(far, ["ip", "addr", "add", "fd50::2/64", "dev", "eth0", "nodad"]);
  sb.inNs(c.name, ["sysctl", "-q", "-w", "net.ipv6.conf.a0.keep_addr_on_down=0"]);
  sb.inNs(c.name, ["ip", "addr", "add", "fd50::2/64", "dev", "a0"]);
  const main = table(sb, c.name, "main");

  const r = cni(sb, "ADD", vrfCall(c.path, "a0"), vrfConf(prevOf("a0", c.path)));
  assert.is(r.code, 1, r.stdout);
  assert.equal(
    [r.json.code, r.json.msg],
    [999, "cmdAdd failed: failed getting local/host addresses for a0 in table 1 with dst fd50::2/128"],
  );
  assert.is(vrfTableOf(sb, c.name, "red"), undefined, "the VRF it made is gone");
  assert.is(link(sb, c.name, "a0")?.master, undefined, "a0 is out of it");
  assert.equal(table(sb, c.name, "main"), main, "a0's routes are back in main");
  assert.ok(
    (link(sb, c.name, "a0")?.addr_info ?? []).some((a) => a.local === "fd50::2"),
    "and its IPv6 address",
  );
  assert.ok(ping(sb, c.name, "10.50.0.1"), "a0 works by main again");
});

inSandbox("cross-implementation: our ADD with its DEL, its ADD with our DEL, CHECK across", (sb) => {
  const c = sb.addContainer();
  const prev = addOk(sb, { netns: c.path }, bridgeConf(sb));

  const ours = vrfOk(sb, "ADD", vrfCall(c.path), vrfConf(prev));
  vrfOk(sb, "CHECK", vrfCall(c.path, "eth0", REF_VRF), vrfConf(ours));
  vrfOk(sb, "DEL", vrfCall(c.path, "eth0", REF_VRF), vrfConf(ours));
  assert.is(vrfTableOf(sb, c.name, "red"), undefined, "the reference removes our VRF");
  assert.is(link(sb, c.name, "eth0")?.master, undefined);

  const theirs = vrfOk(sb, "ADD", vrfCall(c.path, "eth0", REF_VRF), vrfConf(prev));
  // Debian's 1.1.1 prints an empty "dns" that we leave out (docs/differences.md).
  const { dns, ...rest } = theirs;
  assert.equal([rest, dns], [prev, {}], "both pass prevResult through");
  assert.is(vrfTableOf(sb, c.name, "red"), 1, "the same table choice");
  vrfOk(sb, "CHECK", vrfCall(c.path), vrfConf(theirs));
  vrfOk(sb, "DEL", vrfCall(c.path), vrfConf(theirs));
  assert.is(vrfTableOf(sb, c.name, "red"), undefined, "we remove its VRF");
  assert.is(link(sb, c.name, "eth0")?.master, undefined);

  // Ours fails CHECK without the VRF and with a VRF that does not hold the interface; Debian's
  // 1.1.1 answers success to both (docs/plugins/vrf.md), so its CHECK above proves little.
  const refCheck = () => cni(sb, "CHECK", vrfCall(c.path, "eth0", REF_VRF), vrfConf(prev)).code;
  const gone = cni(sb, "CHECK", vrfCall(c.path), vrfConf(prev));
  assert.equal([gone.code, gone.json?.msg], [1, "VRF red not found"]);
  assert.is(refCheck(), 0);
  sb.inNs(c.name, ["ip", "link", "add", "red", "type", "vrf", "table", "5"]);
  const outside = cni(sb, "CHECK", vrfCall(c.path), vrfConf(prev));
  assert.equal([outside.code, outside.json?.msg], [1, "Failed to find eth0 associated to vrf red"]);
  assert.is(refCheck(), 0);
});

inSandbox("a bridge + vrf network list through the libcni client: ADD, CHECK, DEL", (sb) => {
  const { ipam, ...bridge } = bridgeConf(sb);
  const conflist = {
    cniVersion: "1.0.0",
    name: "brnet",
    plugins: [
      { ...bridge, ipam },
      { type: "vrf", vrfname: "red" },
    ],
  };
  delete (conflist.plugins[0] as Record<string, unknown>).cniVersion;
  delete (conflist.plugins[0] as Record<string, unknown>).name;
  const netconf = writeNetconf(sb, { "10-brnet.conflist": conflist });
  const c = sb.addContainer();
  const env = { netconfPath: netconf, cacheDir: join(sb.tmp, "cache"), containerId: "pod" };
  const add = runClient(sb, libcniClient(), ["add", "brnet", c.path], env);
  assert.is(add.code, 0, add.stderr);
  assert.equal(slaves(sb, c.name, "red"), ["eth0"]);
  assert.ok(pingIn(sb, c.name, "red", "10.22.0.1"));
  const check = runClient(sb, libcniClient(), ["check", "brnet", c.path], env);
  assert.is(check.code, 0, check.stderr);
  const del = runClient(sb, libcniClient(), ["del", "brnet", c.path], env);
  assert.is(del.code, 0, del.stderr);
  assert.equal(
    linksOf(sb, c.name).map((l) => l.ifname),
    ["lo"],
  );
});

inSandbox("bad input: CNI errors in the reference's words, nothing left behind", (sb) => {
  const c = sb.addContainer();
  const prev = addOk(sb, { netns: c.path }, bridgeConf(sb));
  const fails = (conf: unknown, code: number, msg: string, ifname = "eth0") => {
    const r = cni(sb, "ADD", vrfCall(c.path, ifname), conf);
    assert.is(r.code, 1, msg);
    assert.equal([r.json.code, r.json.msg], [code, msg]);
    assert.is(r.json.cniVersion, "1.0.0");
  };
  fails(vrfConf(prev, { vrfname: undefined }), 7, "configuration is expected to have a valid vrf name");
  fails(vrfConf(prev, { vrfname: "" }), 7, "configuration is expected to have a valid vrf name");
  fails(
    vrfConf(prev, { table: "one" }),
    7,
    "invalid network config: table: Invalid input: expected number, received string",
  );
  fails(vrfConf(undefined), 999, "missing prevResult from earlier plugin");
  fails(vrfConf(prev), 999, "cmdAdd failed: could not get link by name net9", "net9");
  fails(vrfConf(prev, { vrfname: "eth0" }), 999, "cmdAdd failed: Netlink eth0 is not a VRF");
  assert.is(vrfTableOf(sb, c.name, "red"), undefined, "no VRF made for a missing interface");

  // A VRF of the name with another table; an interface already in a master.
  sb.inNs(c.name, ["ip", "link", "add", "red", "type", "vrf", "table", "9"]);
  fails(vrfConf(prev, { table: 10 }), 999, "cmdAdd failed: VRF red already exist with different routing table 9");
  sb.inNs(c.name, ["ip", "link", "add", "br9", "type", "bridge"]);
  sb.inNs(c.name, ["ip", "link", "set", "eth0", "master", "br9"]);
  fails(vrfConf(prev, { vrfname: "blue" }), 999, "cmdAdd failed: interface eth0 has already a master set: br9");
  assert.is(vrfTableOf(sb, c.name, "blue"), undefined, "no VRF made");
  // A failure after the VRF is made (the kernel will not put a VRF into a VRF) removes it again.
  const r = cni(sb, "ADD", vrfCall(c.path, "red"), vrfConf(prev, { vrfname: "blue" }));
  assert.is(r.code, 1);
  assert.match(r.json.msg, "cmdAdd failed: could not set vrf blue as master of red");
  assert.is(vrfTableOf(sb, c.name, "blue"), undefined, "the VRF it made is removed again");
  assert.equal(slaves(sb, c.name, "red"), []);

  // DEL: tolerant of a namespace that is gone and of a VRF that is not there.
  ok(cni(sb, "DEL", vrfCall("/var/run/netns/no-such-ns"), vrfConf(prev)), "DEL without the namespace");
  ok(cni(sb, "DEL", vrfCall(c.path), vrfConf(prev, { vrfname: "green" })), "DEL without the VRF");
  const noPrev = cni(sb, "CHECK", vrfCall(c.path), vrfConf(undefined));
  assert.equal([noPrev.code, noPrev.json.msg], [1, "missing prevResult from earlier plugin"]);
});
test.run();
