import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { cniEnv, sandboxed } from "../helpers/sandbox.ts";
import {
  addOk,
  addrsOf,
  bridgeConf,
  cni,
  cniPath,
  link,
  linkNames,
  netfilter,
  nftMasqRules,
  ping,
  reservations,
  startWhoami,
  tracedSpawns,
  whoami,
  withPrev,
  type Ipam,
} from "../helpers/bridge-net.ts";

const inSandbox = sandboxed(test, "bridge");

// The bridge plugin end to end: connectivity between containers, to the gateway and through
// masquerade to an external host, the result it reports, and what it leaves in the node.

const sha512 = (s: string) => createHash("sha512").update(s).digest("hex");

for (const ipam of ["ours", "reference"] as Ipam[]) {
  inSandbox(`two containers on one bridge reach each other and the gateway (${ipam} host-local)`, (sb) => {
    const path = cniPath(sb, ipam);
    const conf = bridgeConf(sb);
    const a = sb.addContainer();
    const b = sb.addContainer();
    const ra = addOk(sb, { id: "ctr-a", netns: a.path, path }, conf);
    const rb = addOk(sb, { id: "ctr-b", netns: b.path, path }, conf);

    // The result: bridge, host veth, container interface (with the sandbox as given), IPs on index 2.
    assert.is(ra.cniVersion, "1.0.0");
    assert.is(ra.interfaces.length, 3);
    assert.is(ra.interfaces[0].name, "cni0");
    assert.match(ra.interfaces[1].name, /^veth[0-9a-f]{8}$/);
    assert.equal(ra.interfaces[2], { name: "eth0", mac: link(sb, a.name, "eth0")!.address, sandbox: a.path });
    assert.equal(ra.ips, [{ interface: 2, address: "10.22.0.2/24", gateway: "10.22.0.1" }]);
    assert.equal(ra.routes, [{ dst: "0.0.0.0/0" }]);
    assert.equal(rb.ips[0].address, "10.22.0.3/24");

    // Kernel state matches the result.
    const br = link(sb, sb.node, "cni0")!;
    assert.is(br.linkinfo?.info_kind, "bridge");
    assert.equal(addrsOf(br), ["10.22.0.1/24"]);
    assert.is(br.address, ra.interfaces[0].mac);
    const hostA = link(sb, sb.node, ra.interfaces[1].name)!;
    assert.is(hostA.master, "cni0");
    assert.is(hostA.address, ra.interfaces[1].mac);
    assert.is(hostA.linkinfo?.info_slave_data?.hairpin, false);
    assert.equal(addrsOf(link(sb, a.name, "eth0")), ["10.22.0.2/24"]);
    assert.match(sb.inNs(a.name, ["ip", "route", "show", "default"]).stdout, /default via 10\.22\.0\.1 dev eth0/);
    assert.is(sb.inNs(a.name, ["cat", "/proc/sys/net/ipv4/conf/eth0/arp_notify"]).stdout.trim(), "1");
    assert.is(sb.inNode(["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.trim(), "1");

    assert.ok(ping(sb, a.name, "10.22.0.1"), "a reaches the gateway");
    assert.ok(ping(sb, a.name, "10.22.0.3"), "a reaches b");
    assert.ok(ping(sb, b.name, "10.22.0.2"), "b reaches a");
    assert.equal(reservations(sb), ["10.22.0.2", "10.22.0.3"]);

    // The bridge MAC is pinned: it stays when its ports change.
    const mac = link(sb, sb.node, "cni0")!.address;
    const rb2 = cni(sb, "DEL", { id: "ctr-b", netns: b.path, path }, withPrev(conf, rb));
    assert.is(rb2.code, 0, rb2.stdout);
    assert.is(link(sb, sb.node, "cni0")!.address, mac);
  });
}

for (const backend of ["iptables", "nftables"]) {
  inSandbox(`masquerade (${backend}): an external host sees the node's address; DEL removes every rule`, async (sb) => {
    const ext = sb.addExternalHost("192.0.2.1/24", "192.0.2.2/24");
    const before = netfilter(sb);
    const server: ChildProcess = await startWhoami(sb, ext, 8080);
    try {
      const conf = bridgeConf(sb, { ipMasq: true, ipMasqBackend: backend });
      const c = sb.addContainer();
      const r = addOk(sb, { id: "masq-1", netns: c.path }, conf);
      assert.is(whoami(sb, c.name, "192.0.2.2", 8080), "192.0.2.1", "the external host sees the node, not 10.22.0.2");

      if (backend === "iptables") {
        // The reference's names: CNI- + 24 hex of sha512(network + container ID); %q comment.
        const name = `CNI-${sha512("brnet" + "masq-1").slice(0, 24)}`;
        const comment = '"name: \\"brnet\\" id: \\"masq-1\\""';
        assert.equal(
          netfilter(sb).v4.filter((l) => l.includes(name)),
          [
            `:${name} - [0:0]`,
            `-A POSTROUTING -s 10.22.0.2/32 -m comment --comment ${comment} -j ${name}`,
            `-A ${name} -d 10.22.0.0/24 -m comment --comment ${comment} -j ACCEPT`,
            `-A ${name} ! -d 224.0.0.0/4 -m comment --comment ${comment} -j MASQUERADE`,
          ],
        );
      } else {
        const tag = `${sha512("brnet").slice(0, 16)}-${sha512("eth0:masq-1").slice(0, 16)}`;
        assert.equal(nftMasqRules(sb), [
          `ip saddr 10.22.0.2 ip daddr != 10.22.0.0/24 masquerade comment "${tag}, net: brnet, if: eth0, id: masq-1"`,
        ]);
        assert.equal(netfilter(sb).v4, before.v4, "nothing in iptables");
      }

      const d = cni(sb, "DEL", { id: "masq-1", netns: c.path }, withPrev(conf, r));
      assert.is(d.code, 0, d.stdout);
      const after = netfilter(sb);
      assert.equal(after.v4, before.v4);
      assert.equal(after.v6, before.v6);
      assert.equal(nftMasqRules(sb), []);
      assert.equal(reservations(sb), []);
      assert.equal(linkNames(sb, c.name), ["lo"]);
      assert.equal(
        linkNames(sb, sb.node).filter((n) => n.startsWith("veth")),
        [],
      );
    } finally {
      server.kill();
    }
  });
}

inSandbox("dual stack: IPv6 address, default route and masquerade in ip6tables; the gateway answers at once", (sb) => {
  const conf = {
    ...bridgeConf(sb, { ipMasq: true, isDefaultGateway: true }),
    ipam: {
      type: "host-local",
      dataDir: `${sb.tmp}/ipam`,
      ranges: [[{ subnet: "10.22.0.0/24" }], [{ subnet: "fd00:22::/64" }]],
    },
  };
  const c = sb.addContainer();
  const r = addOk(sb, { id: "dual", netns: c.path }, conf);
  assert.equal(r.ips, [
    { interface: 2, address: "10.22.0.2/24", gateway: "10.22.0.1" },
    { interface: 2, address: "fd00:22::2/64", gateway: "fd00:22::1" },
  ]);
  assert.equal(r.routes, [
    { dst: "0.0.0.0/0", gw: "10.22.0.1" },
    { dst: "::/0", gw: "fd00:22::1" },
  ]);
  const eth0 = link(sb, c.name, "eth0");
  assert.equal(addrsOf(eth0, "inet6"), ["fd00:22::2/64"]);
  assert.match(sb.inNs(c.name, ["ip", "-6", "route", "show", "default"]).stdout, /default via fd00:22::1 dev eth0/);
  assert.equal(addrsOf(link(sb, sb.node, "cni0"), "inet6"), ["fd00:22::1/64"]);
  assert.is(sb.inNode(["cat", "/proc/sys/net/ipv6/conf/all/forwarding"]).stdout.trim(), "1");
  assert.is(sb.inNs(c.name, ["cat", "/proc/sys/net/ipv6/conf/eth0/keep_addr_on_down"]).stdout.trim(), "1");
  assert.ok(ping(sb, c.name, "fd00:22::1"), "IPv6 gateway reachable");
  assert.ok(netfilter(sb).v6.some((l) => /^-A POSTROUTING -s fd00:22::2\/128 .* -j CNI-[0-9a-f]{24}$/.test(l)));
  assert.ok(netfilter(sb).v6.some((l) => /^-A CNI-[0-9a-f]{24} ! -d ff00::\/8 .* -j MASQUERADE$/.test(l)));

  const d = cni(sb, "DEL", { id: "dual", netns: c.path }, withPrev(conf, r));
  assert.is(d.code, 0, d.stdout);
  assert.ok(!netfilter(sb).v6.some((l) => l.includes("CNI-")), "ip6tables rules gone");
  assert.ok(!netfilter(sb).v4.some((l) => l.includes("CNI-")), "iptables rules gone");
});

inSandbox("two bridge networks on one node: each pod gets its own bridge and subnet", (sb) => {
  const one = bridgeConf(sb, { name: "net-one", bridge: "br-one" }, { subnet: "10.31.0.0/24" });
  const two = bridgeConf(sb, { name: "net-two", bridge: "br-two" }, { subnet: "10.32.0.0/24" });
  const a = sb.addContainer();
  const b = sb.addContainer();
  const ra = addOk(sb, { id: "a", netns: a.path }, one);
  const rb = addOk(sb, { id: "b", netns: b.path }, two);
  assert.is(ra.ips[0].address, "10.31.0.2/24");
  assert.is(rb.ips[0].address, "10.32.0.2/24");
  assert.equal(addrsOf(link(sb, sb.node, "br-one")), ["10.31.0.1/24"]);
  assert.equal(addrsOf(link(sb, sb.node, "br-two")), ["10.32.0.1/24"]);
  assert.is(link(sb, sb.node, ra.interfaces[1].name)!.master, "br-one");
  assert.is(link(sb, sb.node, rb.interfaces[1].name)!.master, "br-two");
  assert.ok(ping(sb, a.name, "10.31.0.1"));
  assert.ok(ping(sb, b.name, "10.32.0.1"));
  assert.equal(reservations(sb, "net-one"), ["10.31.0.2"]);
  assert.equal(reservations(sb, "net-two"), ["10.32.0.2"]);
});

inSandbox("a second ADD into the same netns (net1 on another bridge) leaves eth0 untouched", (sb) => {
  const main = bridgeConf(sb, { name: "main" }, { subnet: "10.41.0.0/24" });
  const second = bridgeConf(
    sb,
    { name: "second", bridge: "br-sec", isGateway: false },
    { subnet: "10.42.0.0/24", routes: [] },
  );
  const pod = sb.addContainer();
  const r0 = addOk(sb, { id: "pod", netns: pod.path }, main);
  const eth0Before = link(sb, pod.name, "eth0")!;
  const routesBefore = sb.inNs(pod.name, ["ip", "route"]).stdout;
  const r1 = addOk(sb, { id: "pod", ifname: "net1", netns: pod.path }, second);
  assert.equal(r1.interfaces[2], { name: "net1", mac: link(sb, pod.name, "net1")!.address, sandbox: pod.path });
  assert.equal(r1.ips, [{ interface: 2, address: "10.42.0.2/24", gateway: "10.42.0.1" }]);
  assert.equal(addrsOf(link(sb, pod.name, "net1")), ["10.42.0.2/24"]);
  assert.equal(addrsOf(link(sb, sb.node, "br-sec")), [], "isGateway false: no address on the bridge");
  const eth0After = link(sb, pod.name, "eth0")!;
  assert.equal([eth0After.address, addrsOf(eth0After)], [eth0Before.address, addrsOf(eth0Before)]);
  assert.ok(
    sb.inNs(pod.name, ["ip", "route"]).stdout.startsWith(routesBefore.trim().split("\n")[0]!),
    "the default route via eth0 stays first",
  );
  assert.is(cni(sb, "CHECK", { id: "pod", netns: pod.path }, withPrev(main, r0)).code, 0);
  assert.is(cni(sb, "CHECK", { id: "pod", ifname: "net1", netns: pod.path }, withPrev(second, r1)).code, 0);

  // DEL of net1 removes only net1.
  assert.is(cni(sb, "DEL", { id: "pod", ifname: "net1", netns: pod.path }, withPrev(second, r1)).code, 0);
  assert.equal(linkNames(sb, pod.name), ["eth0", "lo"]);
  assert.ok(ping(sb, pod.name, "10.41.0.1"));
});

inSandbox(
  "CNI_NETNS as /proc/PID/ns/net (a pod's shared namespace): ADD, CHECK and DEL work through it",
  async (sb) => {
    const pod = sb.addContainer();
    const holder = spawn("ip", ["netns", "exec", pod.name, "sleep", "300"], { stdio: "ignore" });
    try {
      const path = `/proc/${holder.pid}/ns/net`;
      const conf = bridgeConf(sb, { ipMasq: true });
      const r = addOk(sb, { id: "pid-path", netns: path }, conf);
      assert.is(r.interfaces[2].sandbox, path);
      assert.equal(addrsOf(link(sb, pod.name, "eth0")), ["10.22.0.2/24"], "the address is in the pod's namespace");
      assert.ok(ping(sb, pod.name, "10.22.0.1"));
      assert.is(cni(sb, "CHECK", { id: "pid-path", netns: path }, withPrev(conf, r)).code, 0);
      assert.is(cni(sb, "DEL", { id: "pid-path", netns: path }, withPrev(conf, r)).code, 0);
      assert.equal(linkNames(sb, pod.name), ["lo"]);
      assert.equal(reservations(sb), []);
    } finally {
      holder.kill();
    }
  },
);

inSandbox(
  "the IPAM plugin runs in-process when it is this executable, and is executed otherwise; spawns per ADD/DEL",
  (sb) => {
    const conf = bridgeConf(sb, { ipMasq: true });
    const report: string[] = [];
    for (const ipam of ["ours", "reference"] as Ipam[]) {
      const c = sb.addContainer();
      const env = cniEnv("ADD", { CNI_CONTAINERID: `trace-${ipam}`, CNI_NETNS: c.path, CNI_PATH: cniPath(sb, ipam) });
      const add = tracedSpawns(sb, env, conf);
      assert.is(add.code, 0, add.stdout);
      const del = tracedSpawns(sb, { ...env, CNI_COMMAND: "DEL" }, withPrev(conf, JSON.parse(add.stdout)));
      assert.is(del.code, 0, del.stdout);
      const hostLocalRuns = [...add.spawns, ...del.spawns].filter((p) => p === "host-local").length;
      assert.is(
        hostLocalRuns,
        ipam === "ours" ? 0 : 2,
        `host-local executions with ${ipam} IPAM: ${add.spawns} / ${del.spawns}`,
      );
      report.push(
        `${ipam} IPAM: ADD ${add.spawns.length} [${add.spawns.join(" ")}], DEL ${del.spawns.length} [${del.spawns.join(" ")}]`,
      );
      if (ipam === "ours") {
        // The budget: node batch, container sysctl + batch, gateway batch (first pod only), iptables-save + restore.
        assert.ok(add.spawns.length <= 6, report.join("\n"));
        assert.ok(del.spawns.length <= 4, report.join("\n"));
      }
    }
    process.stderr.write(`  spawns: ${report.join("; ")}\n`);
    assert.equal(reservations(sb), []);
  },
);

test.run();
