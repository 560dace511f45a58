import { test } from "uvu";
import * as assert from "uvu/assert";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { BIN, REF_BIN, type Sandbox, sandboxed } from "../helpers/sandbox.ts";
import { addOk, bridgeConf, cni, link, linkNames, withPrev, type Call } from "../helpers/bridge-net.ts";
import { libcniClient, runClient, writeNetconf } from "../helpers/libcni.ts";
import { tcpThroughput } from "../helpers/throughput.ts";

const inSandbox = sandboxed(test, "bandwidth");

// bandwidth end to end: real bounded TCP transfers through the shaped veth, the kernel objects it
// makes (tbf on the host end, ifb named as the reference names it), CHECK, DEL with and without
// the namespace, rollback, the reference's messages for bad rates, the reference on the other side
// of every verb, and the upstream ptp + bandwidth chain through the libcni client.

const BW = join(BIN, "bandwidth");
const REF_BW = join(REF_BIN, "bandwidth");

const MBIT = 1_000_000;

function bwConf(limits: Record<string, unknown>, prevResult?: unknown) {
  return { cniVersion: "1.0.0", name: "brnet", type: "bandwidth", ...limits, ...(prevResult ? { prevResult } : {}) };
}

const shaping = (ingressMbit: number, egressMbit: number) => ({
  ingressRate: ingressMbit * MBIT,
  ingressBurst: 80_000,
  egressRate: egressMbit * MBIT,
  egressBurst: 80_000,
});

const ifbOf = (network: string, id: string) =>
  `bwp${createHash("sha512")
    .update(network + id)
    .digest("hex")
    .slice(0, 12)}`;

interface Pod {
  ns: string;
  path: string;
  id: string;
  result: any;
  ip: string;
  hostVeth: string;
}

function pod(sb: Sandbox, id: string): Pod {
  const c = sb.addContainer();
  const result = addOk(sb, { id, netns: c.path }, bridgeConf(sb));
  return {
    ns: c.name,
    path: c.path,
    id,
    result,
    ip: result.ips[0].address.split("/")[0],
    hostVeth: result.interfaces[1].name,
  };
}

const call = (p: Pod, binary = BW): Call => ({ id: p.id, netns: p.path, binary });

function bw(sb: Sandbox, command: string, p: Pod, conf: unknown, binary = BW) {
  return cni(sb, command, call(p, binary), conf);
}

function bwOk(sb: Sandbox, command: string, p: Pod, conf: unknown, binary = BW): any {
  const r = bw(sb, command, p, conf, binary);
  if (r.code !== 0) throw new Error(`${binary} ${command} failed: ${r.stdout}${r.stderr}`);
  return r.json;
}

/** The qdiscs of a node link, as tc reports them (kind, handle, options). */
const qdiscs = (sb: Sandbox, dev: string): any[] =>
  JSON.parse(sb.inNode(["tc", "-j", "qdisc", "show", "dev", dev]).stdout || "[]");

const tbfOf = (sb: Sandbox, dev: string) => qdiscs(sb, dev).find((q) => q.kind === "tbf" && q.root);
const hasIngress = (sb: Sandbox, dev: string) => qdiscs(sb, dev).some((q) => q.kind === "ingress");
const ifbs = (sb: Sandbox) => linkNames(sb, sb.node).filter((n) => n.startsWith("bwp"));

const mbit = (bps: number) => Math.round(bps / 1e5) / 10;

inSandbox("shaped transfers land near the configured rates both ways; after DEL they are fast again", async (sb) => {
  const a = pod(sb, "ctr-a");
  const b = pod(sb, "ctr-b");
  bwOk(sb, "ADD", a, bwConf(shaping(16, 4), a.result));

  // From a: through the ifb's bucket (4 Mbit/s). To a: the host end's bucket (16 Mbit/s).
  const out = await tcpThroughput(b.ns, a.ns, b.ip, 5201, 5201, 2);
  const into = await tcpThroughput(a.ns, b.ns, a.ip, 5202, 5202, 2);
  assert.ok(out > 2 * MBIT && out < 6 * MBIT, `egress ${mbit(out)} Mbit/s, shaped to 4`);
  assert.ok(into > 9 * MBIT && into < 22 * MBIT, `ingress ${mbit(into)} Mbit/s, shaped to 16`);

  bwOk(sb, "DEL", a, bwConf(shaping(16, 4), a.result));
  const free = await tcpThroughput(b.ns, a.ns, b.ip, 5203, 5203, 2);
  assert.ok(free > 20 * out, `unshaped ${mbit(free)} Mbit/s is not far above shaped ${mbit(out)} Mbit/s`);
});

inSandbox("ADD: tbf on the host end, ifb named as the reference with the veth's MTU, in the result; CHECK", (sb) => {
  const p = pod(sb, "ctr-obj");
  const conf = bwConf(shaping(8, 4), p.result);
  const r = bwOk(sb, "ADD", p, conf);
  const ifb = ifbOf("brnet", "ctr-obj");

  assert.equal(r.interfaces.slice(0, 3), p.result.interfaces);
  assert.equal(r.interfaces[3], { name: ifb, mac: link(sb, sb.node, ifb)!.address });
  assert.equal(r.ips, p.result.ips);
  assert.is(link(sb, sb.node, ifb)!.mtu, link(sb, sb.node, p.hostVeth)!.mtu);
  assert.ok(link(sb, sb.node, ifb)!.flags.includes("UP"));

  assert.equal(tbfOf(sb, p.hostVeth).options, { rate: 1_000_000, burst: 10_000, lat: 25_000 });
  assert.equal(tbfOf(sb, ifb).options, { rate: 500_000, burst: 10_000, lat: 25_000 });
  const filters = sb.inNode(["tc", "filter", "show", "dev", p.hostVeth, "ingress"]).stdout;
  assert.match(filters, `Egress Redirect to device ${ifb}`);
  // One redirect action (the reference 1.1.1 installs the same action twice).
  assert.is(filters.split("Egress Redirect").length - 1, 1);

  bwOk(sb, "CHECK", p, withPrev(conf, r));
  const other = bw(sb, "CHECK", p, withPrev(bwConf(shaping(16, 4)), r));
  assert.is(other.json.msg, "Rate doesn't match");
  const moreBurst = bw(sb, "CHECK", p, withPrev(bwConf({ ...shaping(8, 4), egressBurst: 800_000 }), r));
  assert.is(moreBurst.json.msg, "Burst doesn't match");

  // CHECK fails when a piece is gone.
  sb.inNode(["ip", "link", "del", ifb]);
  assert.is(bw(sb, "CHECK", p, withPrev(conf, r)).code, 1);
});

inSandbox("DEL removes the ifb and the host end's qdiscs; again, and without the namespace, it succeeds", (sb) => {
  const p = pod(sb, "ctr-del");
  const conf = bwConf(shaping(8, 4), p.result);
  const r = bwOk(sb, "ADD", p, conf);
  bwOk(sb, "DEL", p, withPrev(conf, r));
  assert.equal(ifbs(sb), []);
  assert.is(tbfOf(sb, p.hostVeth), undefined);
  assert.not.ok(hasIngress(sb, p.hostVeth));
  bwOk(sb, "DEL", p, withPrev(conf, r));

  // The namespace gone: the ifb, which lives on the node, still goes.
  const q = pod(sb, "ctr-gone");
  const rq = bwOk(sb, "ADD", q, bwConf(shaping(8, 4), q.result));
  sb.inNode(["ip", "netns", "del", q.ns], { allowFailure: true });
  const gone = cni(sb, "DEL", { id: q.id, netns: "/var/run/netns/does-not-exist", binary: BW }, withPrev(conf, rq));
  assert.is(gone.code, 0, gone.stdout);
  assert.equal(ifbs(sb), []);
});

inSandbox("the reference on the other side: our ADD, its CHECK and DEL; its ADD, our CHECK and DEL", (sb) => {
  const p = pod(sb, "ctr-x");
  const conf = bwConf(shaping(8, 4), p.result);
  const ours = bwOk(sb, "ADD", p, conf);
  bwOk(sb, "CHECK", p, withPrev(conf, ours), REF_BW);
  bwOk(sb, "DEL", p, withPrev(conf, ours), REF_BW);
  assert.equal(ifbs(sb), []);

  // The reference leaves the host end's qdiscs to the veth's removal; take them off to start again.
  sb.inNode(["tc", "qdisc", "del", "dev", p.hostVeth, "root"], { allowFailure: true });
  sb.inNode(["tc", "qdisc", "del", "dev", p.hostVeth, "ingress"], { allowFailure: true });
  const theirs = bwOk(sb, "ADD", p, conf, REF_BW);
  assert.equal(theirs.interfaces[3].name, ours.interfaces[3].name);
  assert.equal(tbfOf(sb, p.hostVeth).options, { rate: 1_000_000, burst: 10_000, lat: 25_000 });
  bwOk(sb, "CHECK", p, withPrev(conf, theirs));
  bwOk(sb, "DEL", p, withPrev(conf, theirs));
  assert.equal(ifbs(sb), []);
  assert.is(tbfOf(sb, p.hostVeth), undefined);
});

inSandbox("bad rates and calls: the reference's messages, and nothing is left behind", (sb) => {
  const p = pod(sb, "ctr-bad");
  const cases: [string, Record<string, unknown>, string][] = [
    ["rate without burst", { ingressRate: 8000 }, "if rate is set, burst must also be set"],
    ["burst without rate", { egressBurst: 8000 }, "if burst is set, rate must also be set"],
    ["burst of 4 GB", { egressRate: 8000, egressBurst: 8 * 2 ** 32 }, "burst cannot be more than 4GB"],
    [
      "runtime's rate without burst",
      { runtimeConfig: { bandwidth: { ingressRate: 8000 } } },
      "if rate is set, burst must also be set",
    ],
  ];
  for (const [what, limits, msg] of cases) {
    for (const binary of [BW, REF_BW]) {
      const r = bw(sb, "ADD", p, bwConf(limits, p.result), binary);
      assert.is(r.code, 1, `${what} (${binary})`);
      assert.is(r.json.msg, msg, `${what} (${binary})`);
    }
  }
  const notChained = bw(sb, "ADD", p, bwConf(shaping(8, 4)));
  assert.is(notChained.json.msg, "must be called as chained plugin");
  const noPeer = bw(sb, "ADD", p, bwConf(shaping(8, 4), { ...p.result, interfaces: [p.result.interfaces[2]] }));
  assert.is(noPeer.json.msg, "no veth peer of container interface found in host ns");
  const negative = bw(sb, "ADD", p, bwConf({ ingressRate: -1, ingressBurst: 10 }, p.result));
  assert.is(negative.code, 1);
  assert.match(negative.json.msg, "ingressRate");
  assert.equal(ifbs(sb), []);
  assert.is(tbfOf(sb, p.hostVeth), undefined);
  assert.not.ok(hasIngress(sb, p.hostVeth));
});

inSandbox("a failed ADD removes what it made and keeps what was there before", (sb) => {
  const p = pod(sb, "ctr-rb");
  // Someone's ingress qdisc on the host end: the token bucket (made first) and the ifb must go,
  // that qdisc must stay.
  sb.inNode(["tc", "qdisc", "add", "dev", p.hostVeth, "handle", "ffff:", "ingress"]);
  const r = bw(sb, "ADD", p, bwConf(shaping(8, 4), p.result));
  assert.is(r.code, 1);
  assert.match(r.json.msg, `failed to create the ingress qdisc on ${p.hostVeth}`);
  assert.equal(ifbs(sb), []);
  assert.is(tbfOf(sb, p.hostVeth), undefined);
  assert.ok(hasIngress(sb, p.hostVeth));
});

inSandbox("the runtime's limits apply when the config sets none; the config's win over them", (sb) => {
  const p = pod(sb, "ctr-rt");
  const runtime = { runtimeConfig: { bandwidth: { ingressRate: 2 * MBIT, ingressBurst: 16_000 } } };
  bwOk(sb, "ADD", p, bwConf(runtime, p.result));
  assert.equal(tbfOf(sb, p.hostVeth).options.rate, 250_000);
  assert.equal(ifbs(sb), []);
  bwOk(sb, "DEL", p, bwConf(runtime, p.result));

  bwOk(sb, "ADD", p, bwConf({ ...runtime, ingressRate: 8 * MBIT, ingressBurst: 80_000 }, p.result));
  assert.equal(tbfOf(sb, p.hostVeth).options.rate, 1_000_000);

  // Nothing to shape: prevResult passes through and nothing is made.
  const q = pod(sb, "ctr-none");
  const r = bwOk(sb, "ADD", q, bwConf({}, q.result));
  assert.equal(r.interfaces, q.result.interfaces);
  assert.is(tbfOf(sb, q.hostVeth), undefined);
});

inSandbox("Kubernetes' unlimited burst is capped to what the kernel can hold, not wrapped around", (sb) => {
  const p = pod(sb, "ctr-k8s");
  // containerd sends the annotation's rate with a burst of 2^32-1 bits.
  const burstBits = 2 ** 32 - 1;
  bwOk(sb, "ADD", p, bwConf({ ingressRate: 10 * MBIT, ingressBurst: burstBits }, p.result));
  const burst = tbfOf(sb, p.hostVeth).options.burst;
  // 1.25 MB/s for at most ~274.9 s of 64 ns ticks in 32 bits: the burst reads back near 343 MB.
  assert.ok(burst > 340e6 && burst <= Math.floor(burstBits / 8), `burst ${burst}`);
});

inSandbox("ptp + bandwidth through the libcni client with the bandwidth capability: shaping works", async (sb) => {
  const conflist = {
    cniVersion: "1.0.0",
    name: "slow",
    plugins: [
      {
        type: "ptp",
        ipMasq: false,
        ipam: { type: "host-local", dataDir: join(sb.tmp, "ipam"), subnet: "10.41.0.0/24" },
      },
      { type: "bandwidth", capabilities: { bandwidth: true } },
    ],
  };
  const netconf = writeNetconf(sb, { "10-slow.conflist": conflist });
  const a = sb.addContainer();
  const b = sb.addContainer();
  const env = (id: string, capArgs?: unknown) => ({
    netconfPath: netconf,
    cacheDir: join(sb.tmp, "cache"),
    containerId: id,
    capArgs,
  });
  // Only pod-a's own traffic is shaped: what it receives is not.
  const limits = { bandwidth: { egressRate: 4 * MBIT, egressBurst: 80_000 } };
  const ra = runClient(sb, libcniClient(), ["add", "slow", a.path], env("pod-a", limits));
  assert.is(ra.code, 0, ra.stderr);
  const rb = runClient(sb, libcniClient(), ["add", "slow", b.path], env("pod-b"));
  assert.is(rb.code, 0, rb.stderr);
  const ipOf = (ns: string) =>
    JSON.parse(sb.inNs(ns, ["ip", "-j", "-4", "addr", "show", "dev", "eth0"]).stdout)[0].addr_info[0].local;

  const shaped = await tcpThroughput(b.name, a.name, ipOf(b.name), 5204, 5204, 2);
  const free = await tcpThroughput(a.name, b.name, ipOf(a.name), 5205, 5205, 1);
  assert.ok(shaped > 2 * MBIT && shaped < 6 * MBIT, `shaped ${mbit(shaped)} Mbit/s`);
  assert.ok(free > 10 * shaped, `pod-b to pod-a ${mbit(free)} Mbit/s`);
  assert.is(ifbs(sb).length, 1);

  assert.is(runClient(sb, libcniClient(), ["del", "slow", a.path], env("pod-a", limits)).code, 0);
  assert.is(runClient(sb, libcniClient(), ["del", "slow", b.path], env("pod-b")).code, 0);
  assert.equal(ifbs(sb), []);
});

test.run();
