import { test } from "uvu";
import * as assert from "uvu/assert";
import type { ChildProcess } from "node:child_process";
import { join } from "node:path";
import { BIN, REF_BIN, type Sandbox, sandboxed, sh } from "../helpers/sandbox.ts";
import {
  addrsOf,
  cni,
  link,
  linkNames,
  netfilter,
  nftMasqRules,
  ping,
  reservations,
  startWhoami,
  whoami,
  withPrev,
  type Call,
} from "../helpers/bridge-net.ts";
import { runPlugin } from "../helpers/plugin-run.ts";

const inSandbox = sandboxed(test, "ptp");

// ptp end to end: routed containers (no bridge), masquerade to an external host in both backends,
// rollback of a failed ADD, DEL without the namespace, CHECK, and the reference plugin on the other
// side of every verb.

const PTP = join(BIN, "ptp");
const REF_PTP = join(REF_BIN, "ptp");

function ptpConf(sb: Sandbox, extra: Record<string, unknown> = {}, ipam: Record<string, unknown> = {}) {
  return {
    cniVersion: "1.0.0",
    name: "ptpnet",
    type: "ptp",
    ...extra,
    ipam: {
      type: "host-local",
      dataDir: join(sb.tmp, "ipam"),
      subnet: "10.40.0.0/24",
      routes: [{ dst: "0.0.0.0/0" }],
      ...ipam,
    },
  };
}

const call = (c: Call, binary = PTP): Call => ({ binary, ...c });

function addOk(sb: Sandbox, c: Call, conf: unknown, binary = PTP): any {
  const r = cni(sb, "ADD", call(c, binary), conf);
  if (r.code !== 0) throw new Error(`${binary} ADD failed: ${r.stdout}${r.stderr}`);
  return r.json;
}

const reserved = (sb: Sandbox) => reservations(sb, "ptpnet");
const nodeVeths = (sb: Sandbox) => linkNames(sb, sb.node).filter((n) => n.startsWith("veth"));

/** The container's IPv4 routes, as ip prints them (without the kernel's proto/metric noise). */
const routes = (sb: Sandbox, ns: string, family = "-4") =>
  sb
    .inNs(ns, ["ip", family, "route", "show"])
    .stdout.split("\n")
    .map((l) => l.replace(/ proto kernel| metric \d+| pref medium/g, "").trim())
    .filter((l) => l !== "")
    .sort();

inSandbox("two containers are routed through the node and reach it and each other", (sb) => {
  const conf = ptpConf(sb);
  const a = sb.addContainer();
  const b = sb.addContainer();
  const ra = addOk(sb, { id: "ctr-a", netns: a.path }, conf);
  const rb = addOk(sb, { id: "ctr-b", netns: b.path }, conf);

  // The result: host veth, container interface (with the sandbox as given), IPs on index 1.
  assert.is(ra.interfaces.length, 2);
  assert.match(ra.interfaces[0].name, /^veth[0-9a-f]{8}$/);
  assert.is(ra.interfaces[0].mac, link(sb, sb.node, ra.interfaces[0].name)!.address);
  assert.equal(ra.interfaces[1], { name: "eth0", mac: link(sb, a.name, "eth0")!.address, sandbox: a.path });
  assert.equal(ra.ips, [{ interface: 1, address: "10.40.0.2/24", gateway: "10.40.0.1" }]);
  assert.equal(ra.routes, [{ dst: "0.0.0.0/0" }]);
  assert.is(rb.ips[0].address, "10.40.0.3/24");

  // Point to point: no subnet route on the link, everything via the gateway.
  assert.equal(routes(sb, a.name), [
    "10.40.0.0/24 via 10.40.0.1 dev eth0 src 10.40.0.2",
    "10.40.0.1 dev eth0 scope link src 10.40.0.2",
    "default via 10.40.0.1 dev eth0",
  ]);
  assert.equal(addrsOf(link(sb, a.name, "eth0")), ["10.40.0.2/24"]);
  // The node's end holds the gateway as a host address and routes the container's address to it.
  const hostA = ra.interfaces[0].name;
  assert.equal(addrsOf(link(sb, sb.node, hostA)), ["10.40.0.1/32"]);
  assert.match(sb.inNode(["ip", "route", "show", "10.40.0.2"]).stdout, new RegExp(`10\\.40\\.0\\.2 dev ${hostA}`));
  assert.is(sb.inNode(["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.trim(), "1");
  assert.is(sb.inNode(["cat", `/proc/sys/net/ipv6/conf/${hostA}/accept_ra`]).stdout.trim(), "0");

  assert.ok(ping(sb, a.name, "10.40.0.1"), "a reaches its gateway");
  assert.ok(ping(sb, a.name, "10.40.0.3"), "a reaches b through the node");
  assert.ok(ping(sb, b.name, "10.40.0.2"), "b reaches a through the node");
  assert.ok(ping(sb, sb.node, "10.40.0.2"), "the node reaches a");
  assert.equal(reserved(sb), ["10.40.0.2", "10.40.0.3"]);

  for (const [id, ns, r] of [
    ["ctr-a", a, ra],
    ["ctr-b", b, rb],
  ] as const) {
    const d = cni(sb, "DEL", call({ id, netns: ns.path }), withPrev(conf, r));
    assert.is(d.code, 0, d.stdout);
    assert.equal(linkNames(sb, ns.name), ["lo"]);
  }
  assert.equal(nodeVeths(sb), []);
  assert.equal(reserved(sb), []);
  assert.is(sb.inNode(["ip", "route", "show", "10.40.0.0/24"]).stdout.trim(), "", "no host routes left");
});

inSandbox("dual stack: the IPv6 address is routed the same way and both families answer", (sb) => {
  const conf = ptpConf(
    sb,
    {},
    {
      subnet: undefined,
      ranges: [[{ subnet: "10.40.0.0/24" }], [{ subnet: "fd40::/64" }]],
      routes: [{ dst: "0.0.0.0/0" }, { dst: "::/0" }],
    },
  );
  const a = sb.addContainer();
  const b = sb.addContainer();
  const ra = addOk(sb, { id: "v6-a", netns: a.path }, conf);
  addOk(sb, { id: "v6-b", netns: b.path }, conf);
  assert.equal(
    ra.ips.map((ip: any) => [ip.interface, ip.address, ip.gateway]),
    [
      [1, "10.40.0.2/24", "10.40.0.1"],
      [1, "fd40::2/64", "fd40::1"],
    ],
  );
  const v6 = routes(sb, a.name, "-6").filter((l) => !l.startsWith("fe80"));
  assert.equal(v6, [
    "default via fd40::1 dev eth0",
    "fd40::/64 via fd40::1 dev eth0 src fd40::2",
    "fd40::1 dev eth0 src fd40::2",
  ]);
  assert.equal(addrsOf(link(sb, sb.node, ra.interfaces[0].name), "inet6"), ["fd40::1/128"]);
  assert.is(sb.inNode(["cat", "/proc/sys/net/ipv6/conf/all/forwarding"]).stdout.trim(), "1");
  assert.ok(ping(sb, a.name, "fd40::1"), "a reaches its IPv6 gateway");
  assert.ok(ping(sb, a.name, "fd40::3"), "a reaches b over IPv6");
  assert.ok(ping(sb, a.name, "10.40.0.3"), "and over IPv4");
});

for (const backend of ["iptables", "nftables"]) {
  inSandbox(
    `masquerade (${backend}): the external host sees the node's address; DEL removes every rule`,
    async (sb) => {
      const ext = sb.addExternalHost("192.0.2.1/24", "192.0.2.2/24");
      const before = netfilter(sb);
      const server: ChildProcess = await startWhoami(sb, ext, 8080);
      try {
        const conf = ptpConf(sb, { ipMasq: true, ipMasqBackend: backend });
        const c = sb.addContainer();
        const r = addOk(sb, { id: "masq-1", netns: c.path }, conf);
        assert.is(whoami(sb, c.name, "192.0.2.2", 8080), "192.0.2.1", "the external host sees the node, not 10.40.0.2");
        if (backend === "iptables") {
          assert.ok(
            netfilter(sb).v4.some((l) => /^-A POSTROUTING -s 10\.40\.0\.2\/32 .* -j CNI-[0-9a-f]{24}$/.test(l)),
            "the reference's chain",
          );
        } else {
          assert.is(nftMasqRules(sb).length, 1);
          assert.equal(netfilter(sb).v4, before.v4, "nothing in iptables");
        }
        const d = cni(sb, "DEL", call({ id: "masq-1", netns: c.path }), withPrev(conf, r));
        assert.is(d.code, 0, d.stdout);
        assert.equal(netfilter(sb).v4, before.v4);
        assert.equal(nftMasqRules(sb), []);
        assert.equal(reserved(sb), []);
        assert.equal(nodeVeths(sb), []);
      } finally {
        server.kill();
      }
    },
  );
}

inSandbox("a failed ADD removes the veth, the reservation and the rules it made", (sb) => {
  const before = netfilter(sb);
  const c = sb.addContainer();
  // A route whose gateway no link reaches fails after the pair and the address exist.
  const conf = ptpConf(sb, { ipMasq: true }, { routes: [{ dst: "10.99.0.0/16", gw: "10.77.0.1" }] });
  const r = cni(sb, "ADD", call({ netns: c.path }), conf);
  assert.is(r.code, 1, r.stdout);
  assert.is(r.json.code, 999);
  assert.equal(nodeVeths(sb), []);
  assert.equal(linkNames(sb, c.name), ["lo"]);
  assert.equal(reserved(sb), []);
  assert.equal(netfilter(sb).v4, before.v4);

  // CNI_IFNAME taken in the container: the reference's words, and again nothing left.
  sb.inNs(c.name, ["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1"]);
  const taken = cni(sb, "ADD", call({ netns: c.path }), ptpConf(sb));
  assert.is(taken.code, 1, taken.stdout);
  assert.match(taken.json.msg, /container veth name \("eth0"\) peer provided \("veth[0-9a-f]{8}"\) already exists/);
  assert.equal(nodeVeths(sb), []);
  assert.equal(reserved(sb), []);
});

inSandbox("config errors come before anything exists: no ipam, a bad MTU or backend", (sb) => {
  const c = sb.addContainer();
  const { ipam: _ipam, ...noIpam } = ptpConf(sb);
  for (const [conf, msg] of [
    [noIpam, /ipam section with a type is required/],
    [ptpConf(sb, { mtu: 20 }), /invalid MTU 20/],
    [ptpConf(sb, { ipMasq: true, ipMasqBackend: "ebtables" }), /unknown ipmasq backend "ebtables"/],
  ] as const) {
    const r = cni(sb, "ADD", call({ netns: c.path }), conf);
    assert.is(r.code, 1);
    assert.is(r.json.code, 7, r.stdout);
    assert.match(r.json.msg, msg);
  }
  assert.equal(nodeVeths(sb), []);
  assert.equal(reserved(sb), []);
});

inSandbox("DEL without the namespace: deleted netns, or empty CNI_NETNS with the veth still there", (sb) => {
  const before = netfilter(sb);
  const conf = ptpConf(sb, { ipMasq: true });
  const gone = sb.addContainer();
  const rg = addOk(sb, { id: "gone", netns: gone.path }, conf);
  sh(["ip", "netns", "del", gone.name]);
  const d1 = cni(sb, "DEL", call({ id: "gone", netns: gone.path }), withPrev(conf, rg));
  assert.is(d1.code, 0, d1.stdout);

  const live = sb.addContainer();
  const rl = addOk(sb, { id: "live", netns: live.path }, conf);
  const d2 = cni(sb, "DEL", call({ id: "live", netns: "" }), withPrev(conf, rl));
  assert.is(d2.code, 0, d2.stdout);
  assert.equal(linkNames(sb, live.name), ["lo"], "the node's end went, and its peer with it");
  assert.equal(nodeVeths(sb), []);
  assert.equal(reserved(sb), []);
  assert.equal(netfilter(sb).v4, before.v4);
  // A second DEL is fine.
  assert.is(cni(sb, "DEL", call({ id: "live", netns: live.path }), withPrev(conf, rl)).code, 0);
});

inSandbox("CHECK passes on a fresh attachment and names what is missing after a change", (sb) => {
  const conf = ptpConf(sb);
  const c = sb.addContainer();
  const r = addOk(sb, { netns: c.path }, conf);
  const ok = cni(sb, "CHECK", call({ netns: c.path }), withPrev(conf, r));
  assert.is(ok.code, 0, ok.stdout);
  const none = cni(sb, "CHECK", call({ netns: c.path }), conf);
  assert.match(none.json.msg, /ptp: Required prevResult missing/);
  sb.inNs(c.name, ["ip", "route", "del", "default"]);
  const noRoute = cni(sb, "CHECK", call({ netns: c.path }), withPrev(conf, r));
  assert.is(noRoute.code, 1);
  assert.match(noRoute.json.msg, /Expected Route .*0\.0\.0\.0\/0.* not found in routing table/);
  sb.inNs(c.name, ["ip", "addr", "flush", "dev", "eth0"]);
  const noAddr = cni(sb, "CHECK", call({ netns: c.path }), withPrev(conf, r));
  assert.match(noAddr.json.msg, /Failed to match addr 10\.40\.0\.2\/24 on interface eth0/);
  const moved = { ...r, interfaces: [r.interfaces[0], { ...r.interfaces[1], sandbox: "/var/run/netns/elsewhere" }] };
  const other = cni(sb, "CHECK", call({ netns: c.path }), withPrev(conf, moved));
  assert.match(other.json.msg, /Sandbox in prevResult \/var\/run\/netns\/elsewhere doesn't match configured netns/);
});

inSandbox("STATUS and GC: IPAM answers; GC removes the masquerade of attachments not in the list", (sb) => {
  const conf = { ...ptpConf(sb, { ipMasq: true }), cniVersion: "1.1.0" };
  const st = runPlugin(sb, PTP, { CNI_COMMAND: "STATUS", CNI_PATH: BIN }, conf);
  assert.is(st.code, 0, st.stdout);
  const keep = sb.addContainer();
  const drop = sb.addContainer();
  addOk(sb, { id: "keep", netns: keep.path }, conf);
  addOk(sb, { id: "drop", netns: drop.path }, conf);
  sh(["ip", "netns", "del", drop.name]);
  const gc = runPlugin(
    sb,
    PTP,
    { CNI_COMMAND: "GC", CNI_PATH: BIN },
    { ...conf, "cni.dev/valid-attachments": [{ containerID: "keep", ifname: "eth0" }] },
  );
  assert.is(gc.code, 0, gc.stdout);
  assert.equal(reserved(sb), ["10.40.0.2"]);
  assert.equal(
    netfilter(sb).v4.filter((l) => l.startsWith("-A POSTROUTING")).length,
    1,
    "only the kept container's jump is left",
  );
});

// The reference plugin on the other side: the same node and container state, and each cleans up
// and checks after the other.
for (const [first, second] of [
  [PTP, REF_PTP],
  [REF_PTP, PTP],
] as const) {
  const names = `${first === PTP ? "our" : "its"} ADD, ${second === PTP ? "our" : "its"} CHECK and DEL`;
  inSandbox(`with the reference ptp: ${names}`, (sb) => {
    const before = netfilter(sb);
    const conf = ptpConf(sb, { ipMasq: true, ipMasqBackend: "iptables" });
    const c = sb.addContainer();
    const r = addOk(sb, { id: "x-1", netns: c.path }, conf, first);
    assert.equal(routes(sb, c.name), [
      "10.40.0.0/24 via 10.40.0.1 dev eth0 src 10.40.0.2",
      "10.40.0.1 dev eth0 scope link src 10.40.0.2",
      "default via 10.40.0.1 dev eth0",
    ]);
    assert.equal(addrsOf(link(sb, sb.node, r.interfaces[0].name)), ["10.40.0.1/32"]);
    assert.ok(ping(sb, c.name, "10.40.0.1"));
    const chk = cni(sb, "CHECK", call({ id: "x-1", netns: c.path }, second), withPrev(conf, r));
    assert.is(chk.code, 0, chk.stdout);
    const d = cni(sb, "DEL", call({ id: "x-1", netns: c.path }, second), withPrev(conf, r));
    assert.is(d.code, 0, d.stdout);
    assert.equal(linkNames(sb, c.name), ["lo"]);
    assert.equal(nodeVeths(sb), []);
    assert.equal(reserved(sb), []);
    assert.equal(netfilter(sb).v4, before.v4);
  });
}

test.run();
