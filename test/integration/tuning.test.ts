import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { BIN, cniEnv, REF_BIN, type Sandbox, sh, sandboxed } from "../helpers/sandbox.ts";
import { runPlugin } from "../helpers/plugin-run.ts";

const inSandbox = sandboxed(test, "fwtune");

// The tuning plugin on a container interface made by hand (a veth whose container end is CNI_IFNAME
// in a container namespace), with a hand-built prevResult and a dataDir under the sandbox's tmp dir.
// Link attributes and sysctls are read back from inside the container namespace.

const OURS = join(BIN, "tuning");
const REF = join(REF_BIN, "tuning");

interface Ctr {
  name: string;
  path: string;
  ifname: string;
}

function addContainer(sb: Sandbox, ifname = "eth0"): Ctr {
  const c = sb.addContainer();
  sh([
    "ip",
    "link",
    "add",
    `h${ifname}`.slice(0, 15),
    "netns",
    sb.node,
    "type",
    "veth",
    "peer",
    "name",
    ifname,
    "netns",
    c.name,
  ]);
  sb.inNs(c.name, ["ip", "link", "set", ifname, "up"]);
  return { ...c, ifname };
}

function prevResult(c: Ctr) {
  return {
    cniVersion: "1.0.0",
    interfaces: [{ name: "cni0" }, { name: c.ifname, mac: "02:11:22:33:44:55", sandbox: c.path }],
    ips: [{ interface: 1, address: "10.77.0.2/24", gateway: "10.77.0.1" }],
  };
}

function conf(sb: Sandbox, c: Ctr | undefined, extra: Record<string, unknown> = {}) {
  return {
    cniVersion: "1.0.0",
    name: "tunenet",
    type: "tuning",
    dataDir: join(sb.tmp, "tuning"),
    ...extra,
    ...(c ? { prevResult: prevResult(c) } : {}),
  };
}

function call(sb: Sandbox, bin: string, cmd: string, c: Ctr, config: unknown, args = "") {
  return runPlugin(
    sb,
    bin,
    cniEnv(cmd, {
      CNI_NETNS: c.path,
      CNI_IFNAME: c.ifname,
      CNI_CONTAINERID: "ctr-1",
      ...(args ? { CNI_ARGS: args } : {}),
    }),
    config,
  );
}

function ok(r: { code: number; stdout: string; stderr: string }, what: string) {
  assert.is(r.code, 0, `${what} failed: ${r.stdout}${r.stderr}`);
}

/** What tuning may change on the link, read inside the container. */
function link(sb: Sandbox, c: Ctr) {
  const l = JSON.parse(sb.inNs(c.name, ["ip", "-j", "link", "show", "dev", c.ifname]).stdout)[0];
  return {
    mac: l.address as string,
    mtu: l.mtu as number,
    txqlen: l.txqlen as number,
    promisc: l.flags.includes("PROMISC"),
    allmulti: l.flags.includes("ALLMULTI"),
  };
}

function sysctl(sb: Sandbox, ns: string, path: string): string {
  return sb.inNs(ns, ["cat", `/proc/sys/${path}`]).stdout.trim();
}

const SYSCTLS = ["net/ipv4/conf/eth0/arp_filter", "net/core/somaxconn", "net/ipv4/tcp_rmem", "net/ipv4/ip_forward"];
const snapshot = (sb: Sandbox, c: Ctr) => ({
  link: link(sb, c),
  sysctls: SYSCTLS.map((p) => sysctl(sb, c.name, p)),
  files: backups(sb),
});
const backups = (sb: Sandbox) => (existsSync(join(sb.tmp, "tuning")) ? readdirSync(join(sb.tmp, "tuning")) : []);

inSandbox("ADD sets sysctls and link attributes in the container, DEL puts every original back", (sb) => {
  const c = addContainer(sb);
  const before = snapshot(sb, c);
  const nodeSomaxconn = sysctl(sb, sb.node, "net/core/somaxconn");
  const config = conf(sb, c, {
    mac: "C2:B0:57:49:47:F1",
    mtu: 1400,
    promisc: true,
    allmulti: true,
    txQLen: 77,
    sysctl: {
      "net.ipv4.conf.IFNAME.arp_filter": "1",
      "net/core/somaxconn": "555",
      "net.ipv4.tcp_rmem": "4096 8192 16384",
    },
  });
  const add = call(sb, OURS, "ADD", c, config);
  ok(add, "ADD");
  assert.equal(link(sb, c), { mac: "c2:b0:57:49:47:f1", mtu: 1400, txqlen: 77, promisc: true, allmulti: true });
  assert.is(sysctl(sb, c.name, "net/ipv4/conf/eth0/arp_filter"), "1");
  assert.is(sysctl(sb, c.name, "net/core/somaxconn"), "555");
  assert.is(sysctl(sb, c.name, "net/ipv4/tcp_rmem"), "4096\t8192\t16384");
  assert.is(sysctl(sb, sb.node, "net/core/somaxconn"), nodeSomaxconn, "the node namespace is untouched");
  assert.equal(
    add.json.interfaces[1],
    { name: "eth0", mac: "c2:b0:57:49:47:f1", sandbox: c.path },
    "the result carries the new MAC",
  );
  assert.equal(add.json.interfaces[0], { name: "cni0" });
  assert.equal(add.json.ips, prevResult(c).ips);

  const saved = JSON.parse(readFileSync(join(sb.tmp, "tuning", "ctr-1_eth0.json"), "utf8"));
  assert.equal(saved, {
    mac: before.link.mac,
    promisc: false,
    mtu: before.link.mtu,
    allmulti: false,
    txQLen: before.link.txqlen,
    sysctl: {
      "net/ipv4/conf/eth0/arp_filter": before.sysctls[0],
      "net/core/somaxconn": before.sysctls[1],
      "net/ipv4/tcp_rmem": before.sysctls[2],
    },
  });
  ok(call(sb, OURS, "CHECK", c, config), "CHECK");

  ok(call(sb, OURS, "DEL", c, config), "DEL");
  assert.equal(snapshot(sb, c), before, "link, sysctls and data dir are as before ADD");
  ok(call(sb, OURS, "DEL", c, config), "second DEL");
});

inSandbox("CHECK notices a changed attribute or sysctl", (sb) => {
  const c = addContainer(sb);
  const config = conf(sb, c, { mtu: 1400, sysctl: { "net.core.somaxconn": "555" } });
  ok(call(sb, OURS, "ADD", c, config), "ADD");
  sb.inNs(c.name, ["ip", "link", "set", "eth0", "mtu", "1300"]);
  const r = call(sb, OURS, "CHECK", c, config);
  assert.is(r.code, 1);
  assert.match(r.json.msg, /configured MTU of eth0 is 1400, current value is 1300/);
  sb.inNs(c.name, ["ip", "link", "set", "eth0", "mtu", "1400"]);
  sb.inNs(c.name, ["sysctl", "-q", "-w", "net.core.somaxconn=100"]);
  assert.match(
    call(sb, OURS, "CHECK", c, config).json.msg,
    /configured value of net\.core\.somaxconn is 555, current value is 100/,
  );
  const noPrev = call(sb, OURS, "CHECK", c, conf(sb, undefined));
  assert.match(noPrev.json.msg, /Required prevResult missing/);
});

inSandbox("MAC from CNI_ARGS, the mac capability and args.cni, in the reference's order", (sb) => {
  const c = addContainer(sb);
  const run = (extra: Record<string, unknown>, args = "") => {
    const r = call(sb, OURS, "ADD", c, conf(sb, c, extra), args);
    ok(r, "ADD");
    const mac = link(sb, c).mac;
    ok(call(sb, OURS, "DEL", c, conf(sb, c, extra), args), "DEL");
    return mac;
  };
  assert.is(
    run({ mac: "02:00:00:00:00:01" }, "IgnoreUnknown=1;K8S_POD_NAME=p;MAC=02:00:00:00:00:02"),
    "02:00:00:00:00:02",
  );
  assert.is(
    run({ mac: "02:00:00:00:00:01", runtimeConfig: { mac: "02:00:00:00:00:03" } }, "MAC=02:00:00:00:00:02"),
    "02:00:00:00:00:03",
  );
  assert.is(
    run({ runtimeConfig: { mac: "02:00:00:00:00:03" }, args: { cni: { mac: "02:00:00:00:00:04", mtu: 1280 } } }),
    "02:00:00:00:00:04",
  );
  const unknown = call(sb, OURS, "ADD", c, conf(sb, c, { mac: "02:00:00:00:00:01" }), "K8S_POD_NAME=p");
  assert.is(unknown.code, 1);
  assert.match(unknown.json.msg, /CNI_ARGS: unknown args/);
});

inSandbox("bad input: a CNI error naming the field, nothing changed", (sb) => {
  const c = addContainer(sb);
  const before = snapshot(sb, c);
  const cases: [Record<string, unknown>, RegExp][] = [
    [
      { sysctl: { "net.ipv4.conf.eth0...kernel.hostname": "x" } },
      /^invalid network config: sysctl: invalid net sysctl key .*"\.\."/,
    ],
    [{ sysctl: { "net/../kernel/hostname": "x" } }, /invalid net sysctl key/],
    [
      { sysctl: { "kernel.hostname": "x" } },
      /^invalid network config: sysctl: invalid net sysctl key "kernel\.hostname": only keys under net\./,
    ],
    [
      { args: { cni: { sysctl: { "vm.swappiness": "1" } } } },
      /^invalid network config: args\.cni\.sysctl: invalid net sysctl key/,
    ],
    [
      { mac: "01:00:5e:00:00:01", mtu: 1400 },
      /^invalid network config: mac: MAC address 01:00:5e:00:00:01 is not unicast/,
    ],
    [{ runtimeConfig: { mac: "ff:ff:ff:ff:ff:ff" } }, /^invalid network config: runtimeConfig\.mac: .*not unicast/],
    [{ mtu: -1, mac: "02:00:00:00:00:09" }, /^invalid network config: mtu: must not be negative/],
    [{ txQLen: -3 }, /^invalid network config: txQLen:/],
    [{ sysctl: { "net.core.somaxconn": "1", "net/core/somaxconn": "2" } }, /duplicated sysctl keys/],
    // Valid keys the container namespace does not have, or the kernel refuses there: earlier
    // keys and link attributes are rolled back.
    [
      { mac: "02:00:00:00:00:09", sysctl: { "net.core.somaxconn": "555", "net.ipv4.conf.nosuch.rp_filter": "1" } },
      /sysctl net\.ipv4\.conf\.nosuch\.rp_filter: no such key/,
    ],
    [
      { mac: "02:00:00:00:00:09", sysctl: { "net.core.somaxconn": "555", "net.core.rmem_max": "9999999" } },
      /sysctl net\.core\.rmem_max: .*Permission denied/,
    ],
    [
      { sysctl: { "net.core.somaxconn": "555", "net.ipv4.ip_forward": "not-a-number" } },
      /sysctl net\.ipv4\.ip_forward:/,
    ],
    [
      { mac: "02:00:00:00:00:09", promisc: true, mtu: 99999, sysctl: { "net.core.somaxconn": "555" } },
      /failed to set mtu of eth0: .*mtu greater than device maximum/,
    ],
  ];
  for (const [extra, msg] of cases) {
    const r = call(sb, OURS, "ADD", c, conf(sb, c, extra));
    assert.is(r.code, 1, `should fail: ${JSON.stringify(extra)}: ${r.stdout}`);
    assert.match(r.json.msg, msg);
    assert.equal(snapshot(sb, c), before, `nothing changed after ${JSON.stringify(extra)}`);
  }
  // The node's namespace was never the target.
  assert.not.match(readFileSync("/proc/sys/kernel/hostname", "utf8"), /^x$/);
});

inSandbox("IFNAME in a key is the whole interface name, dots included", (sb) => {
  const c = addContainer(sb, "eth0.5");
  const config = conf(sb, c, {
    sysctl: { "net.ipv4.conf.IFNAME.arp_filter": "1", "net/ipv4/conf/eth0.5/arp_ignore": "2" },
  });
  ok(call(sb, OURS, "ADD", c, config), "ADD");
  assert.is(sysctl(sb, c.name, "net/ipv4/conf/eth0.5/arp_filter"), "1");
  assert.is(sysctl(sb, c.name, "net/ipv4/conf/eth0.5/arp_ignore"), "2");
  ok(call(sb, OURS, "CHECK", c, config), "CHECK");
  ok(call(sb, OURS, "DEL", c, config), "DEL");
  assert.is(sysctl(sb, c.name, "net/ipv4/conf/eth0.5/arp_filter"), "0");
});

inSandbox("DEL with the namespace gone, or with nothing saved, succeeds and leaves no file", (sb) => {
  const c = addContainer(sb);
  const config = conf(sb, c, { mtu: 1400 });
  ok(call(sb, OURS, "DEL", c, config), "DEL before ADD");
  ok(call(sb, OURS, "ADD", c, config), "ADD");
  assert.equal(backups(sb), ["ctr-1_eth0.json"]);
  sh(["ip", "netns", "del", c.name]);
  ok(call(sb, OURS, "DEL", c, config), "DEL with the netns gone");
  assert.equal(backups(sb), []);
});

inSandbox("cross-implementation: same saved file as the reference, and each DEL restores the other's ADD", (sb) => {
  const c = addContainer(sb);
  const original = link(sb, c);
  // Debian's reference (1.1.1) predates txQLen; sysctls are not restored by it, so keep to attributes.
  const config = conf(sb, c, { mac: "c2:b0:57:49:47:f1", mtu: 1400, promisc: true, allmulti: true });
  const file = join(sb.tmp, "tuning", "ctr-1_eth0.json");

  ok(call(sb, REF, "ADD", c, config), "reference ADD");
  const refFile = readFileSync(file, "utf8");
  ok(call(sb, OURS, "CHECK", c, config), "our CHECK of the reference's ADD");
  ok(call(sb, OURS, "DEL", c, config), "our DEL of the reference's ADD");
  assert.equal(link(sb, c), original, "our DEL restored the reference's changes");
  assert.not.ok(existsSync(file));

  const ours = call(sb, OURS, "ADD", c, config);
  ok(ours, "our ADD");
  assert.is(readFileSync(file, "utf8"), refFile, "the saved file is byte for byte the reference's");
  ok(call(sb, REF, "CHECK", c, config), "reference CHECK of our ADD");
  ok(call(sb, REF, "DEL", c, config), "reference DEL of our ADD");
  assert.equal(link(sb, c), original, "the reference's DEL restored our changes");
  assert.not.ok(existsSync(file));
});

test.run();
