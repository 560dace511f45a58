import { test } from "uvu";
import * as assert from "uvu/assert";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { runPluginAsync } from "../helpers/plugin-run.ts";
import { type Sandbox, cniEnv, sandboxed } from "../helpers/sandbox.ts";
import { EXT_ADDR, addSegment, addressOf, cni, conf, linkIn, ok, ours, ping } from "../helpers/sublink-net.ts";

const inSandbox = sandboxed(test, "dhcp");

/**
 * macvlan + dhcp as users run it: dnsmasq serves DHCP in an "external host" namespace on the
 * macvlan master's L2, our daemon runs in the node namespace with its socket in the test's temp
 * dir, and both are stopped by PID. Assertions read dnsmasq's lease file and send packets.
 */
const MACVLAN = ours("macvlan");

/** Waits (bounded) until `cond` holds; false when it never did. */
async function until(cond: () => boolean, ms = 20_000): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(100)) if (cond()) return true;
  return cond();
}

interface Running {
  proc: ChildProcess;
  stderr: () => string;
}

/** A long-running program in namespace `ns` (ip netns exec replaces itself, so the PID is the program's). */
function start(ns: string, argv: string[]): Running {
  const proc = spawn("ip", ["netns", "exec", ns, ...argv], { stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  proc.stderr!.on("data", (d) => {
    err += d;
  });
  return { proc, stderr: () => err };
}

async function stop(r: Running) {
  if (r.proc.exitCode !== null || r.proc.pid === undefined) return;
  const gone = new Promise((resolve) => r.proc.once("exit", resolve));
  process.kill(r.proc.pid, "SIGTERM");
  await gone;
}

/** dnsmasq as the segment's DHCP server: 2-minute leases (its minimum) renewed at T1 = 3 s. */
function dnsmasq(sb: Sandbox, ext: string): Running {
  return start(ext, [
    "dnsmasq",
    "--keep-in-foreground",
    "--conf-file=/dev/null",
    "--port=0",
    "--user=root",
    "--interface=eth0",
    "--bind-interfaces",
    "--log-facility=-",
    "--dhcp-authoritative",
    "--dhcp-range=192.0.2.100,192.0.2.150,255.255.255.0,2m",
    `--dhcp-option=option:router,${EXT_ADDR}`,
    "--dhcp-option=option:dns-server,192.0.2.53",
    "--dhcp-option=option:T1,3s",
    "--dhcp-option=option:T2,100s",
    `--dhcp-leasefile=${join(sb.tmp, "dnsmasq.leases")}`,
    `--pid-file=${join(sb.tmp, "dnsmasq.pid")}`,
  ]);
}

/** dnsmasq's leases: address to expiry (epoch seconds). */
function leases(sb: Sandbox): Map<string, number> {
  const file = join(sb.tmp, "dnsmasq.leases");
  const out = new Map<string, number>();
  if (!existsSync(file)) return out;
  for (const line of readFileSync(file, "utf8").split("\n")) {
    const [expiry, , ip] = line.split(" ");
    if (ip) out.set(ip, Number(expiry));
  }
  return out;
}

async function daemon(sb: Sandbox, timeout = "20s"): Promise<{ d: Running; socket: string }> {
  const socket = join(sb.tmp, "dhcp.sock");
  const d = start(sb.node, [ours("dhcp"), "daemon", "-socketpath", socket, "-timeout", timeout, "-resendmax", "2s"]);
  assert.ok(await until(() => existsSync(socket)), `the daemon listens: ${d.stderr()}`);
  return { d, socket };
}

inSandbox("macvlan + dhcp: leases from dnsmasq, reachability, renewal at T1, release on DEL", async (sb) => {
  const seg = addSegment(sb);
  const server = dnsmasq(sb, seg.ext);
  const { d, socket } = await daemon(sb);
  try {
    const [a, b] = [sb.addContainer(), sb.addContainer()];
    const config = conf(sb, "macvlan", { master: seg.master }, { type: "dhcp", daemonSocketPath: socket });
    // Both ADDs at once: the daemon serves them concurrently, each with its own client ID.
    const add = (netns: string, id: string) =>
      runPluginAsync(sb, MACVLAN, cniEnv("ADD", { CNI_CONTAINERID: id, CNI_NETNS: netns }), config);
    const runs = await Promise.all([add(a.path, "a"), add(b.path, "b")]);
    const [ra, rb] = runs.map((r, i) => ok(r, `ADD ${"ab"[i]}`));
    const [ipa, ipb] = [addressOf(linkIn(sb, a.name, "eth0")), addressOf(linkIn(sb, b.name, "eth0"))];
    assert.ok(ipa && /^192\.0\.2\.1([0-4]\d|50)$/.test(ipa), `a's address ${ipa} is from the range`);
    assert.ok(ipb && ipb !== ipa, "b gets its own lease");
    assert.equal(ra.ips, [{ address: `${ipa}/24`, gateway: EXT_ADDR, interface: 0 }]);
    assert.equal(ra.routes, [{ dst: "0.0.0.0/0", gw: EXT_ADDR }]);
    // The DNS option reaches the IPAM result, but macvlan reports only its own `dns`, as the reference.
    assert.is(rb.ips[0].address, `${ipb}/24`);
    assert.equal([...leases(sb).keys()].sort(), [ipa, ipb].sort(), "dnsmasq holds both leases");
    assert.ok(ping(sb, a.name, EXT_ADDR), "a reaches the external host");

    // Renewal: dnsmasq moves a lease's expiry forward when the daemon renews it at T1.
    const first = leases(sb).get(ipa)!;
    assert.ok(await until(() => (leases(sb).get(ipa) ?? 0) > first), "the daemon renewed a's lease");

    ok(cni(sb, MACVLAN, "CHECK", { netns: a.path, id: "a" }, { ...config, prevResult: ra }), "CHECK a");
    ok(cni(sb, MACVLAN, "DEL", { netns: a.path, id: "a" }, config), "DEL a");
    assert.ok(await until(() => !leases(sb).has(ipa)), "DEL released a's lease at the server");
    assert.ok(leases(sb).has(ipb), "b's lease stays");
    ok(cni(sb, MACVLAN, "DEL", { netns: b.path, id: "b" }, config), "DEL b");
    assert.ok(await until(() => leases(sb).size === 0), "DEL released b's lease");
  } finally {
    await stop(d);
    await stop(server);
  }
  assert.not.ok(existsSync(socket), "the daemon removed its socket on SIGTERM");
});

inSandbox("a restarted daemon resumes renewing the leases it kept on disk, and releases them on DEL", async (sb) => {
  const seg = addSegment(sb);
  const server = dnsmasq(sb, seg.ext);
  let { d, socket } = await daemon(sb);
  try {
    const ctr = sb.addContainer();
    const config = conf(sb, "macvlan", { master: seg.master }, { type: "dhcp", daemonSocketPath: socket });
    ok(cni(sb, MACVLAN, "ADD", { netns: ctr.path }, config), "ADD");
    const ip = addressOf(linkIn(sb, ctr.name, "eth0"))!;
    await stop(d);
    const before = leases(sb).get(ip)!;
    ({ d } = await daemon(sb));
    assert.ok(await until(() => (leases(sb).get(ip) ?? 0) > before), "the new daemon renewed the lease");
    assert.ok(d.stderr().includes(`resumed the lease of ctr1/macvlannet/eth0 on ${ip}`), d.stderr());
    ok(cni(sb, MACVLAN, "DEL", { netns: ctr.path }, config), "DEL");
    assert.ok(await until(() => !leases(sb).has(ip)), "the new daemon released it");
  } finally {
    await stop(d);
    await stop(server);
  }
});

inSandbox("ADD without a daemon is a CNI error naming the socket, and leaves no link", async (sb) => {
  const seg = addSegment(sb);
  const ctr = sb.addContainer();
  const socket = join(sb.tmp, "nobody.sock");
  const config = conf(sb, "macvlan", { master: seg.master }, { type: "dhcp", daemonSocketPath: socket });
  const r = cni(sb, MACVLAN, "ADD", { netns: ctr.path }, config);
  assert.is(r.code, 1);
  assert.is(r.json.code, 999);
  assert.ok(r.json.msg.startsWith(`error dialing DHCP daemon: dial unix ${socket}`), r.json.msg);
  assert.is(linkIn(sb, ctr.name, "eth0"), undefined, "the failed ADD rolled its link back");
});

inSandbox("no DHCP server on the segment: ADD fails with the daemon's reason and rolls its link back", async (sb) => {
  const seg = addSegment(sb);
  const { d, socket } = await daemon(sb, "2s");
  try {
    const ctr = sb.addContainer();
    const config = conf(sb, "macvlan", { master: seg.master }, { type: "dhcp", daemonSocketPath: socket });
    const r = cni(sb, MACVLAN, "ADD", { netns: ctr.path }, config);
    assert.is(r.code, 1);
    assert.is(r.json.code, 999);
    assert.match(r.json.msg, /^error calling DHCP.Allocate: no DHCPOFFER from a DHCP server on eth0 within 2s/);
    assert.is(linkIn(sb, ctr.name, "eth0"), undefined, "the failed ADD rolled its link back");
    ok(cni(sb, MACVLAN, "DEL", { netns: ctr.path }, config), "DEL after the failed ADD");
  } finally {
    await stop(d);
  }
});

inSandbox("a daemon takes over the socket a killed daemon left behind", async (sb) => {
  const { d, socket } = await daemon(sb);
  const gone = new Promise((resolve) => d.proc.once("exit", resolve));
  process.kill(d.proc.pid!, "SIGKILL");
  await gone;
  assert.ok(existsSync(socket), "SIGKILL left the socket file");
  const again = await daemon(sb);
  try {
    assert.ok(await until(() => again.d.stderr().includes("listening")), again.d.stderr());
    assert.is(again.d.proc.exitCode, null, "the second daemon runs");
  } finally {
    await stop(again.d);
  }
});

test.run();
