import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { makeOverlay, type Overlay, type OverlayNode, subnetEnv } from "../../test/helpers/overlay-net.ts";
import { Sandbox, sh } from "../../test/helpers/sandbox.ts";
import { tcpThroughput } from "../../test/helpers/throughput.ts";
import type { Tools } from "../lib/setup.ts";
import { newPod, type Pod, runLibcni } from "../lib/side.ts";
import { PeerWatch, type PeerObjects } from "../lib/peer-watch.ts";
import { StoreWriter } from "../lib/store-writer.ts";
import { Worker, type Run } from "../lib/worker.ts";
import { record, type Samples, samples } from "./latency.ts";

/**
 * Scenario 10: the overlay (issue 18). Nodes are namespaces on one underlay switch with an etcd
 * beside them and a tscni-agent in each (test/helpers/overlay-net.ts, the integration tests' own
 * set-up). Measured: how fast a lease in etcd becomes a route + neighbour + FDB entry on the
 * peers (3 real nodes, then one real agent facing 100 or 1000 simulated peers), what that costs
 * the agent, pod ADD/DEL through the flannel plugin against the bridge it delegates to, and TCP
 * throughput across nodes over VXLAN against the same pods routed without encapsulation.
 */

const PREFIX = "/coreos.com/network";
const SUBNETS = `${PREFIX}/subnets/`;
/** Real agents lease from 10.128.1.0–10.128.200.0; simulated peers take 10.129.0.0 upward. */
const CONFIG = { Network: "10.128.0.0/13", SubnetLen: 24, SubnetMax: "10.128.200.0", Backend: { Type: "vxlan" } };
const DEV = "flannel.1";
const SERVER_PORT = 5201;
/** Simulated peers beyond this would leave the /13. */
const MAX_FAKE = 1700;

export interface OverlaySettings {
  /** Lease puts timed against the three real nodes. */
  rounds: number;
  /** Simulated peer counts, each against a fresh agent. */
  sizes: number[];
  /** Leases added one at a time after the simulated ones. */
  extraLeases: number;
  /** How long one agent may take to program the simulated peers before the figures are taken as they are. */
  convergeTimeoutS: number;
  podIterations: number;
  throughputRuns: number;
  seconds: number;
}

export interface SimulatedPeers {
  peers: number;
  /** From the first put leaving the writer to the last peer's last object; NaN when not all came. */
  convergeMs: number;
  /** Peers fully programmed when the wait ended. */
  programmed: number;
  /** The agent's own user+system CPU while it programmed them, and that of the ip/bridge it ran. */
  cpuMs: number;
  childCpuMs: number;
  /** VmHWM and VmRSS of the agent once all were programmed, and VmRSS before the first put. */
  hwmKb: number;
  rssKb: number;
  rssBeforeKb: number;
  /** One more lease after them, each: put to programmed. */
  nextPeerMs: number[];
  /** SIGTERM to exit, ms; NaN when it had not exited after STOP_GRACE_MS (then killed). */
  stopMs: number;
}

export interface OverlayResults {
  skipped?: string;
  /** Put of a new lease to its three objects on all three real nodes, and delete to all gone. */
  realNodes: { addMs: number[]; delMs: number[] };
  simulated: SimulatedPeers[];
  /** Pod ADD/DEL, one libcni run of a one-plugin network each, alternating. */
  pods: { flannel: { add: Samples; del: Samples }; bridge: { add: Samples; del: Samples } };
  /** Gbit/s per run; `mtu` is the pods' (FLANNEL_MTU), the same on every path. */
  throughput: { vxlan: number[]; hostGw: number[]; sameNode: number[]; seconds: number; mtu: number };
  settings: OverlaySettings;
}

const log = (m: string) => process.stderr.write(`bench: 10 · ${m}\n`);

/** What keeps the scenario from running here, if anything. */
function missing(tools: Tools): string | undefined {
  for (const p of ["tscni-agent", "flannel", "bridge"])
    if (!existsSync(join(tools.ours, p))) return `no ${p} in ${tools.ours}`;
  const onPath = (tool: string) => (process.env.PATH ?? "").split(":").some((d) => d && existsSync(join(d, tool)));
  for (const tool of ["etcd", "etcdctl", "iperf3"])
    if (!onPath(tool)) return `${tool} is not installed (test/setup.sh --packages-for bench)`;
  return undefined;
}

/** Simulated peer i: a subnet nobody leased, a PublicIP in 198.18.0.0/15 (RFC 2544's benchmarking range, held by no namespace here, so nothing is ever sent to it) and a locally administered MAC. */
function fakePeer(i: number): PeerObjects & { key: string; value: string } {
  const subnetAddr = `10.${129 + (i >> 8)}.${i & 255}.0`;
  const j = i + 1;
  const publicIp = `198.18.${j >> 8}.${j & 255}`;
  const vtepMac = `02:be:00:00:${((i >> 8) & 255).toString(16).padStart(2, "0")}:${(i & 255).toString(16).padStart(2, "0")}`;
  // flannel's lease value, as any node (ours or flanneld) writes it.
  const value = JSON.stringify({
    PublicIP: publicIp,
    PublicIPv6: null,
    BackendType: "vxlan",
    BackendData: { VNI: 1, VtepMAC: vtepMac },
  });
  return { subnet: `${subnetAddr}/24`, addr: subnetAddr, vtepMac, publicIp, key: `${SUBNETS}${subnetAddr}-24`, value };
}

/** A real node as its peers must see it: its subnet from subnet.env, its device's MAC. */
async function realPeer(sb: Sandbox, n: OverlayNode): Promise<PeerObjects> {
  const env = await subnetEnv(n);
  const addr = env.FLANNEL_SUBNET!.replace(/\.1\/\d+$/, ".0");
  const link = JSON.parse(sb.inNs(n.ns, ["ip", "-j", "link", "show", DEV]).stdout)[0] as { address: string };
  return { subnet: `${addr}/24`, addr, vtepMac: link.address.toLowerCase(), publicIp: n.addr };
}

/** Waits until every watch holds every peer; the wall-clock time the last object appeared, NaN on timeout. */
async function programmed(watches: PeerWatch[], peers: PeerObjects[], timeoutMs: number): Promise<number> {
  const ok = await Promise.all(
    watches.map((w) => w.until(() => peers.every((p) => w.programmedAt(p) !== undefined), timeoutMs)),
  );
  if (!ok.every(Boolean)) return NaN;
  return Math.max(...watches.flatMap((w) => peers.map((p) => w.programmedAt(p)!)));
}

/** Lease put → objects on the three real nodes, then delete → objects gone, `rounds` times. */
async function realNodes(watches: PeerWatch[], store: StoreWriter, rounds: number) {
  const out = { addMs: [] as number[], delMs: [] as number[] };
  for (let r = 0; r < rounds; r++) {
    const p = fakePeer(MAX_FAKE + r);
    const put = await store.put([{ key: p.key, value: p.value }]);
    out.addMs.push((await programmed(watches, [p], 30_000)) - put.sentAt);
    const del = await store.del([p.key]);
    const gone = await Promise.all(watches.map((w) => w.until(() => w.gone(p), 30_000)));
    out.delMs.push(gone.every(Boolean) ? Math.max(...watches.map((w) => w.lastEventAt)) - del.sentAt : NaN);
  }
  return out;
}

/** A node's pods through the libcni client, timed by a worker in the node's namespace. */
class NodeClient {
  readonly worker: Worker;
  private readonly cacheDir: string;
  private pods = 0;

  constructor(
    private readonly sb: Sandbox,
    readonly node: OverlayNode,
    private readonly tools: Tools,
  ) {
    this.worker = new Worker(node.ns, tools.worker);
    this.cacheDir = join(node.dir, "cni-cache");
  }

  newPod(): Pod {
    return newPod(this.sb, ++this.pods);
  }

  async run(verb: "add" | "del", conf: string, pod: Pod): Promise<Run> {
    const r = await runLibcni(
      this.worker,
      this.tools.client,
      { bin: this.tools.ours, cacheDir: this.cacheDir },
      verb,
      conf,
      pod,
    );
    if (r.code !== 0) throw new Error(`${verb} on ${this.node.ns} (${conf}) exited ${r.code}: ${r.stderr || r.stdout}`);
    return r;
  }

  /** ADD that returns the pod's address. */
  async add(conf: string, pod: Pod): Promise<string> {
    const r = await this.run("add", conf, pod);
    return (JSON.parse(r.stdout) as { ips: { address: string }[] }).ips[0]!.address.split("/")[0]!;
  }
}

const writeConf = (path: string, plugin: object) =>
  writeFileSync(path, JSON.stringify({ cniVersion: "1.0.0", name: "cbr0", plugins: [plugin] }, null, 2));

/**
 * The flannel network of conf/10-tscni-flannel.conflist (without portmap), and a bridge network
 * made of exactly the delegate config flannel saved for a warm-up pod: the same bridge, IPAM store
 * and options, so the difference is the delegation alone.
 */
async function podNetworks(c: NodeClient): Promise<{ flannel: string; bridge: string }> {
  const dir = join(c.node.dir, "net.d");
  mkdirSync(dir, { recursive: true });
  const flannel = join(dir, "10-flannel.conflist");
  const dataDir = join(c.node.dir, "flannel");
  writeConf(flannel, {
    type: "flannel",
    subnetFile: c.node.subnetFile,
    dataDir,
    delegate: { hairpinMode: true, isDefaultGateway: true },
    ipam: { dataDir: join(c.node.dir, "ipam") },
  });
  const warm = c.newPod();
  await c.add(flannel, warm);
  const { name: _n, cniVersion: _v, ...delegate } = JSON.parse(readFileSync(join(dataDir, warm.containerId), "utf8"));
  await c.run("del", flannel, warm);
  const bridge = join(dir, "20-bridge.conflist");
  writeConf(bridge, delegate);
  return { flannel, bridge };
}

async function podTimes(c: NodeClient, confs: { flannel: string; bridge: string }, iterations: number) {
  const out = { flannel: { add: samples(), del: samples() }, bridge: { add: samples(), del: samples() } };
  for (let i = 0; i < iterations; i++) {
    const order = i % 2 === 0 ? (["flannel", "bridge"] as const) : (["bridge", "flannel"] as const);
    for (const which of order) {
      const pod = c.newPod();
      record(out[which].add, await c.run("add", confs[which], pod));
      record(out[which].del, await c.run("del", confs[which], pod));
    }
  }
  return out;
}

/**
 * iperf3 from a pod on node 0 to a pod on node 1 over VXLAN, to the same pod with node 0's and
 * node 1's routes to each other's subnet swapped for plain ones via the peer's underlay address
 * (host-gw's shape: no encapsulation), and to a second pod on node 0. The agents are stopped
 * first (their kernel state stays, as on any SIGTERM), so no reconcile puts a VXLAN route back.
 * `confs`: each node's flannel network.
 */
async function throughput(
  sb: Sandbox,
  o: Overlay,
  clients: [NodeClient, NodeClient],
  peers: [PeerObjects, PeerObjects],
  confs: [string, string],
  runs: number,
  seconds: number,
) {
  const [c0, c1] = clients;
  const [n0, n1] = [c0.node, c1.node];
  const client = c0.newPod();
  const local = c0.newPod();
  const remote = c1.newPod();
  await c0.add(confs[0], client);
  const localIp = await c0.add(confs[0], local);
  const remoteIp = await c1.add(confs[1], remote);
  for (const n of o.nodes) await stopAgent(n);
  const route = (n: OverlayNode, p: PeerObjects, plain: boolean, via: string) =>
    sb.inNs(n.ns, [
      "ip",
      "route",
      "replace",
      p.subnet,
      ...(plain ? ["via", via, "dev", "eth0"] : ["via", p.addr, "dev", DEV, "onlink"]),
    ]);
  const routing = (plain: boolean) => {
    route(n0, peers[1], plain, n1.addr);
    route(n1, peers[0], plain, n0.addr);
  };
  const out = { vxlan: [] as number[], hostGw: [] as number[], sameNode: [] as number[] };
  const gbps = async (serverNs: string, ip: string) =>
    (await tcpThroughput(serverNs, client.netns, ip, SERVER_PORT, SERVER_PORT, seconds)) / 1e9;
  for (let i = 0; i < runs; i++) {
    const paths = ["vxlan", "hostGw", "sameNode"] as const;
    // A different path first each run, so a drift of the machine's load spreads over all three.
    for (let k = 0; k < paths.length; k++) {
      const path = paths[(i + k) % paths.length]!;
      if (path === "sameNode") out.sameNode.push(await gbps(local.netns, localIp));
      else {
        routing(path === "hostGw");
        try {
          out[path].push(await gbps(remote.netns, remoteIp));
        } finally {
          routing(false);
        }
      }
    }
  }
  return out;
}

const STOP_GRACE_MS = 15_000;

/**
 * SIGTERM, then SIGKILL when the agent has not exited within STOP_GRACE_MS: an agent busy with a
 * backlog of peers may take minutes to get to its signal, and the benchmark must go on. Resolves
 * to the ms it took to exit, NaN when it had to be killed.
 */
async function stopAgent(n: OverlayNode): Promise<number> {
  if (!n.agent) return 0;
  const { pid, exited } = n.agent;
  const t0 = performance.now();
  process.kill(pid, "SIGTERM");
  const clean = await Promise.race([exited.then(() => true), sleep(STOP_GRACE_MS).then(() => false)]);
  if (!clean) process.kill(pid, "SIGKILL");
  await exited;
  n.agent = undefined;
  return clean ? performance.now() - t0 : NaN;
}

function agentStat(pid: number, clkTck: number) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // Fields 14–17 of proc(5), counted from the state (field 3) here.
  const ticks = (i: number) => Number(f[i - 3]);
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
  return {
    cpuMs: ((ticks(14) + ticks(15)) * 1000) / clkTck,
    childCpuMs: ((ticks(16) + ticks(17)) * 1000) / clkTck,
    hwmKb: kb("VmHWM"),
    rssKb: kb("VmRSS"),
  };
}

/** One real agent, alone in etcd with `count` simulated peers put at once, then a few more one by one. */
async function simulated(tools: Tools, count: number, s: OverlaySettings, clkTck: number): Promise<SimulatedPeers> {
  const sb = new Sandbox("bchsim");
  const o = await makeOverlay(sb, 1, CONFIG, tools.ours);
  const [n0] = o.nodes as [OverlayNode];
  const watch = new PeerWatch(n0.ns, DEV);
  const store = new StoreWriter(o.etcdNs, o.etcd.url);
  try {
    await watch.started();
    o.startAgent(n0);
    await subnetEnv(n0);
    const pid = n0.agent!.pid;
    const before = agentStat(pid, clkTck);
    const fakes = Array.from({ length: count }, (_, i) => fakePeer(i));
    const put = await store.put(fakes.map((p) => ({ key: p.key, value: p.value })));
    const last = await programmed([watch], fakes, s.convergeTimeoutS * 1000);
    const after = agentStat(pid, clkTck);
    const done = fakes.filter((p) => watch.programmedAt(p) !== undefined).length;
    const nextPeerMs: number[] = [];
    // Behind an agent still busy with the first ones, one more would measure that backlog.
    for (let k = 0; k < (Number.isFinite(last) ? s.extraLeases : 0); k++) {
      const p = fakePeer(count + k);
      const one = await store.put([{ key: p.key, value: p.value }]);
      nextPeerMs.push((await programmed([watch], [p], 60_000)) - one.sentAt);
    }
    // The kernel's own count, against a monitor that might have missed a notification.
    const routes = (JSON.parse(sb.inNs(n0.ns, ["ip", "-j", "route", "show", "dev", DEV]).stdout) as unknown[]).length;
    if (Number.isFinite(last) && nextPeerMs.every(Number.isFinite) && routes !== count + nextPeerMs.length)
      throw new Error(`${DEV} on ${n0.ns} holds ${routes} routes, expected ${count + nextPeerMs.length}`);
    return {
      peers: count,
      convergeMs: last - put.sentAt,
      programmed: done,
      cpuMs: after.cpuMs - before.cpuMs,
      childCpuMs: after.childCpuMs - before.childCpuMs,
      hwmKb: after.hwmKb,
      rssKb: after.rssKb,
      rssBeforeKb: before.rssKb,
      nextPeerMs,
      stopMs: await stopAgent(n0),
    };
  } finally {
    await store.close();
    await watch.close();
    await stopAgent(n0);
    await o.stopAll();
    sb.cleanup();
  }
}

export async function overlayNetwork(tools: Tools, s: OverlaySettings): Promise<OverlayResults> {
  const empty = { flannel: { add: samples(), del: samples() }, bridge: { add: samples(), del: samples() } };
  const out: OverlayResults = {
    realNodes: { addMs: [], delMs: [] },
    simulated: [],
    pods: empty,
    throughput: { vxlan: [], hostGw: [], sameNode: [], seconds: s.seconds, mtu: NaN },
    settings: s,
  };
  const why = missing(tools);
  if (why) return { ...out, skipped: why };
  const clkTck = Number(sh(["getconf", "CLK_TCK"]).stdout.trim()) || 100;

  const sb = new Sandbox("bchovl");
  let o: Overlay | undefined;
  const watches: PeerWatch[] = [];
  const clients: NodeClient[] = [];
  let store: StoreWriter | undefined;
  try {
    o = await makeOverlay(sb, 3, CONFIG, tools.ours);
    for (const n of o.nodes) watches.push(new PeerWatch(n.ns, DEV));
    await Promise.all(watches.map((w) => w.started()));
    for (const n of o.nodes) o.startAgent(n);
    const peers = await Promise.all(o.nodes.map((n) => realPeer(sb, n)));
    const mesh = await Promise.all(
      watches.map((w, i) =>
        programmed(
          [w],
          peers.filter((_, j) => j !== i),
          60_000,
        ),
      ),
    );
    if (mesh.some(Number.isNaN)) throw new Error("the three agents did not program each other within 60 s");
    out.throughput.mtu = Number((await subnetEnv(o.nodes[0]!)).FLANNEL_MTU);
    store = new StoreWriter(o.etcdNs, o.etcd.url);

    log(`lease put → route+neighbour+FDB on 3 real nodes ×${s.rounds}`);
    out.realNodes = await realNodes(watches, store, s.rounds);

    for (const n of o.nodes.slice(0, 2)) clients.push(new NodeClient(sb, n, tools));
    const [c0, c1] = clients as [NodeClient, NodeClient];
    log(`pod ADD/DEL through flannel vs the bridge it delegates to ×${s.podIterations}`);
    const confs = await podNetworks(c0);
    out.pods = await podTimes(c0, confs, s.podIterations);

    log(`TCP throughput across nodes: VXLAN, host-gw routes, same node (iperf3 ${s.seconds} s ×${s.throughputRuns})`);
    const remote = await podNetworks(c1);
    const t = await throughput(
      sb,
      o,
      [c0, c1],
      [peers[0]!, peers[1]!],
      [confs.flannel, remote.flannel],
      s.throughputRuns,
      s.seconds,
    );
    out.throughput = { ...out.throughput, ...t };
  } finally {
    await store?.close();
    for (const w of watches) await w.close();
    for (const c of clients) await c.worker.close();
    for (const n of o?.nodes ?? []) await stopAgent(n);
    await o?.stopAll();
    sb.cleanup();
  }

  for (const count of s.sizes) {
    log(`${count} simulated peers on one agent, then ${s.extraLeases} more one by one`);
    out.simulated.push(await simulated(tools, count, s, clkTck));
  }
  return out;
}
