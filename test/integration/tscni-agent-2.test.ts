import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { waitGone } from "../helpers/etcd.ts";
import { agentLog, subnetEnv, until, type Overlay, type OverlayNode } from "../helpers/overlay-net.ts";
import {
  addPod,
  fdbOf,
  icmpFrom,
  json,
  leaseOf,
  leases,
  neighsOf,
  pings,
  podAdd,
  routeTo,
  SUBNETS,
  withOverlay,
} from "../helpers/overlay-pods.ts";
import { sandboxed, type Sandbox } from "../helpers/sandbox.ts";

/**
 * tscni-agent, continued: the host-gw backend, vxlan DirectRouting, --public-ip, a node whose
 * address changes, and the agent with the real flannel plugin in one chain (full-size DF packets
 * across nodes included).
 */
const it = sandboxed(test, "agent2");
const NETWORK = "10.60.0.0/16";
const VXLAN = { Network: NETWORK, Backend: { Type: "vxlan" } };

const links = (sb: Sandbox, n: OverlayNode) => json(sb, n.ns, ["ip", "-j", "-d", "link", "show"]) as IpLinkJson[];
interface IpLinkJson {
  ifname: string;
  address: string;
  linkinfo?: { info_data?: { local?: string } };
  stats64?: { tx: { packets: number } };
}
const txPackets = (sb: Sandbox, n: OverlayNode, dev: string) =>
  (json(sb, n.ns, ["ip", "-s", "-j", "link", "show", dev]) as IpLinkJson[])[0]!.stats64!.tx.packets;

/** Two nodes up and knowing each other: their subnet.env and each one's lease. */
async function twoNodes(o: Overlay, ready: (n: OverlayNode, peer: string) => unknown) {
  const [n0, n1] = o.nodes as [OverlayNode, OverlayNode];
  const e0 = await subnetEnv(n0);
  const e1 = await subnetEnv(n1);
  const l0 = await until("n0's lease", () => leaseOf(o, n0.addr));
  const l1 = await until("n1's lease", () => leaseOf(o, n1.addr));
  await until("both nodes to know each other", () => ready(n0, l1.subnet) && ready(n1, l0.subnet));
  return { n0, n1, e0, e1, l0, l1 };
}

it("host-gw: a route via the peer's PublicIP, no VXLAN device, pods ping with their own source; a deleted lease removes the route", async (sb) => {
  await withOverlay(sb, 2, { Network: NETWORK, Backend: { Type: "host-gw" } }, async (o) => {
    const { n0, n1, e0, e1, l1 } = await twoNodes(o, (n, peer) => routeTo(sb, n, peer));
    assert.is(e0.FLANNEL_MTU, "1500", "no encapsulation: the underlay's MTU");
    assert.equal(l1.value, { PublicIP: n1.addr, PublicIPv6: null, BackendType: "host-gw" }, "flannel's host-gw value");
    const route = routeTo(sb, n0, l1.subnet)!;
    assert.is(route.gateway, n1.addr);
    assert.is(route.dev, "eth0");
    for (const n of [n0, n1])
      assert.not.ok(
        links(sb, n).some((l) => l.ifname.startsWith("flannel")),
        `no flannel.* device on ${n.ns}`,
      );
    const a = addPod(sb, n0, e0, "pod-a");
    const b = addPod(sb, n1, e1, "pod-b");
    const fromA = icmpFrom(sb, b.ns, a.ip);
    assert.ok(pings(sb, a.ns, b.ip, 2), `pod ${a.ip} on n0 pings pod ${b.ip} on n1`);
    assert.ok(fromA() >= 2, "pod b saw pod a's own address");
    // Stopped first: a running agent takes its deleted key straight back, and n0 may never be seen
    // without the route.
    assert.is(await o.stopAgent(n1), 0);
    o.ctl(["del", l1.key]);
    await until("n0 to drop the route to n1's subnet", () => !routeTo(sb, n0, l1.subnet));
  });
});

it("DirectRouting: a peer on our L2 gets a direct route and no VXLAN traffic, one behind a router keeps VXLAN; restart reconcile drops a stale direct route", async (sb) => {
  await withOverlay(sb, 2, { Network: NETWORK, Backend: { Type: "vxlan", DirectRouting: true } }, async (o) => {
    const { n0, n1, e0, e1, l0, l1 } = await twoNodes(o, (n, peer) => routeTo(sb, n, peer)?.dev === "eth0");
    assert.is(l1.value.BackendType, "vxlan", "the lease is still a vxlan lease");
    assert.is(routeTo(sb, n0, l1.subnet)!.gateway, n1.addr);
    assert.equal(fdbOf(sb, n0), [], "no FDB entry for a direct peer");
    assert.equal(neighsOf(sb, n0), [], "nor a neighbour");
    // A node behind a router (its PublicIP off our subnet): the VXLAN trio, through the watch.
    const far = { key: `${SUBNETS}10.60.200.0-24`, mac: "02:aa:bb:cc:dd:ee", ip: "172.16.0.9" };
    o.ctl([
      "put",
      far.key,
      JSON.stringify({ PublicIP: far.ip, BackendType: "vxlan", BackendData: { VNI: 1, VtepMAC: far.mac } }),
    ]);
    const farRoute = await until("n0's route to the far node", () => routeTo(sb, n0, "10.60.200.0/24"));
    assert.is(farRoute.dev, "flannel.1");
    assert.ok(farRoute.flags.includes("onlink"));
    assert.equal(
      fdbOf(sb, n0).map((f) => [f.mac, f.dst]),
      [[far.mac, far.ip]],
    );
    // Pods talk across without a packet through the VXLAN device.
    const a = addPod(sb, n0, e0, "pod-a");
    const b = addPod(sb, n1, e1, "pod-b");
    const before = [txPackets(sb, n0, "flannel.1"), txPackets(sb, n1, "flannel.1")];
    assert.ok(pings(sb, a.ns, b.ip, 3), "pods ping across directly");
    assert.equal([txPackets(sb, n0, "flannel.1"), txPackets(sb, n1, "flannel.1")], before, "nothing encapsulated");
    o.ctl(["del", far.key]);
    await until("the far node's objects to go", () => !routeTo(sb, n0, "10.60.200.0/24") && fdbOf(sb, n0).length === 0);
    // n1 vanishes while n0's agent is down: the restarted agent removes the direct route.
    assert.is(await o.stopAgent(n0), 0);
    assert.is(await o.stopAgent(n1), 0);
    o.ctl(["del", l1.key]);
    o.startAgent(n0, ["--subnet-lease-ttl=60"]);
    await until("the restarted agent to drop the stale direct route", () => !routeTo(sb, n0, l1.subnet));
    assert.ok(routeTo(sb, n0, "192.168.100.0/24"), "the underlay's own route stays");
    void l0;
  });
});

it("--public-ip: the lease carries that address, the VXLAN device sends from it, the peer's FDB points at it", async (sb) => {
  await withOverlay(
    sb,
    2,
    VXLAN,
    async (o) => {
      const [n0, n1] = o.nodes as [OverlayNode, OverlayNode];
      const extra = "192.168.100.111";
      sb.inNs(n0.ns, ["ip", "addr", "add", `${extra}/24`, "dev", "eth0"]);
      o.startAgent(n0, ["--subnet-lease-ttl=60", `--public-ip=${extra}`]);
      o.startAgent(n1, ["--subnet-lease-ttl=60"]);
      const e0 = await subnetEnv(n0);
      const e1 = await subnetEnv(n1);
      const l0 = await until("n0's lease", () => leaseOf(o, extra));
      assert.not.ok(leaseOf(o, n0.addr), "no lease for the interface's first address");
      const dev = links(sb, n0).find((l) => l.ifname === "flannel.1")!;
      assert.is(dev.linkinfo?.info_data?.local, extra, "VXLAN local is the given address");
      assert.is(l0.value.BackendData!.VtepMAC, dev.address);
      await until("n1's FDB entry for n0 at that address", () =>
        fdbOf(sb, n1).some((f) => f.mac === dev.address && f.dst === extra),
      );
      const a = addPod(sb, n0, e0, "pod-a");
      const b = addPod(sb, n1, e1, "pod-b");
      await until("n0's route to n1", () => json(sb, n0.ns, ["ip", "-j", "route", "show", "dev", "flannel.1"]).length);
      assert.ok(pings(sb, b.ns, a.ip, 2), "n1's pod reaches n0's pod through the given address");
    },
    false,
  );
});

it("a node restarted with another address keeps its subnet and MAC; its peer replaces FDB dst and neighbour, nothing stale, pods talk again", async (sb) => {
  await withOverlay(sb, 2, VXLAN, async (o) => {
    const { n0, n1, e0, e1, l1 } = await twoNodes(o, (n, peer) => routeTo(sb, n, peer));
    const mac = l1.value.BackendData!.VtepMAC;
    const a = addPod(sb, n0, e0, "pod-a");
    const b = addPod(sb, n1, e1, "pod-b");
    assert.ok(pings(sb, a.ns, b.ip), "pods talk before the change");
    assert.is(await o.stopAgent(n1), 0);
    const moved = "192.168.100.42";
    sb.inNs(n1.ns, ["ip", "addr", "del", `${n1.addr}/24`, "dev", "eth0"]);
    sb.inNs(n1.ns, ["ip", "addr", "add", `${moved}/24`, "dev", "eth0"]);
    o.startAgent(n1, ["--subnet-lease-ttl=60"]);
    const again = await until("n1's lease to carry its new address", () => leaseOf(o, moved));
    assert.is(again.key, l1.key, "the same key: subnet kept");
    assert.is(again.value.BackendData!.VtepMAC, mac, "the same VTEP MAC");
    assert.is(leases(o).length, 2, "no second lease for the node");
    assert.equal(await subnetEnv(n1), e1);
    await until("n0's FDB entry to point at the new address", () => {
      const f = fdbOf(sb, n0);
      return f.length === 1 && f[0]!.mac === mac && f[0]!.dst === moved;
    });
    assert.equal(
      neighsOf(sb, n0).map((x) => [x.dst, x.lladdr]),
      [[l1.subnet.split("/")[0], mac]],
      "one neighbour, for the same MAC",
    );
    const dev = links(sb, n1).find((l) => l.ifname === "flannel.1")!;
    assert.is(dev.linkinfo?.info_data?.local, moved, "n1's device sends from its new address");
    assert.is(dev.address, mac);
    await until("n1's route back to n0", () => routeTo(sb, n1, leaseOf(o, n0.addr)!.subnet));
    assert.ok(pings(sb, a.ns, b.ip, 2), "the old pods talk again");
  });
});

it("one chain: the agent writes subnet.env, the flannel plugin ADDs pods on two nodes that reach each other; a full-size DF packet passes, one byte more does not", async (sb) => {
  await withOverlay(sb, 2, VXLAN, async (o) => {
    const { n0, n1, e0 } = await twoNodes(o, (n, peer) => routeTo(sb, n, peer));
    const mtu = Number(e0.FLANNEL_MTU);
    assert.is(mtu, 1450);
    // conf/10-tscni-flannel.conflist's flannel entry, pointed at this node's subnet.env and dirs.
    const addFlannel = (n: OverlayNode, id: string) =>
      podAdd(
        sb,
        n,
        "flannel",
        {
          cniVersion: "1.0.0",
          name: "cbr0",
          type: "flannel",
          subnetFile: n.subnetFile,
          dataDir: join(n.dir, "flannel"),
          delegate: { bridge: "cni0", hairpinMode: true, isDefaultGateway: true },
          ipam: { dataDir: join(n.dir, "ipam") },
        },
        id,
      );
    const a = addFlannel(n0, "pod-a");
    const b = addFlannel(n1, "pod-b");
    const [eth0] = json(sb, a.ns, ["ip", "-j", "link", "show", "eth0"]);
    assert.is(eth0.mtu, mtu, "the pod got FLANNEL_MTU");
    assert.ok(pings(sb, a.ns, b.ip, 2), "pods on two nodes reach each other");
    const df = (size: number) =>
      sb.inNs(a.ns, ["ping", "-M", "do", "-c", "1", "-W", "2", "-s", String(size), b.ip], { allowFailure: true });
    const full = df(mtu - 28);
    assert.is(full.code, 0, `a ${mtu}-byte DF packet crosses: ${full.stdout}${full.stderr}`);
    const over = df(mtu - 27);
    assert.is.not(over.code, 0, `one byte more does not: ${over.stdout}${over.stderr}`);
  });
});

/**
 * The tools a running process (and its children) execute while `during` runs, traced by strace
 * attached to its PID: each execve's argv.
 */
async function execsOf(sb: Sandbox, pid: number, during: () => Promise<void>): Promise<string[][]> {
  const log = join(sb.tmp, `strace-${pid}.log`);
  const st = spawn("strace", ["-f", "-e", "trace=execve", "-e", "signal=none", "-o", log, "-p", String(pid)], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  await new Promise<void>((res, rej) => {
    st.stderr!.on("data", (d: Buffer) => /attached/.test(d.toString()) && res());
    st.on("exit", () => rej(new Error("strace did not attach")));
  });
  try {
    await during();
  } finally {
    process.kill(st.pid!, "SIGINT");
    await waitGone(st.pid!);
  }
  return readFileSync(log, "utf8")
    .split("\n")
    .flatMap((l) => {
      const m = /execve\("[^"]*", \[([^\]]*)\]/.exec(l);
      return m ? [[...m[1]!.matchAll(/"([^"]*)"/g)].map((w) => w[1]!)] : [];
    });
}

it("with 40 peers a watch event costs its own peer's ops: at most three tool runs and no dump", async (sb) => {
  await withOverlay(sb, 1, VXLAN, async (o) => {
    const [n0] = o.nodes as [OverlayNode];
    await subnetEnv(n0);
    const far = (i: number) => ({
      key: `${SUBNETS}10.60.${100 + i}.0-24`,
      value: JSON.stringify({
        PublicIP: `172.16.1.${i + 1}`,
        BackendType: "vxlan",
        BackendData: { VNI: 1, VtepMAC: `02:aa:00:00:00:${(i + 1).toString(16).padStart(2, "0")}` },
      }),
    });
    for (let i = 0; i < 40; i++) o.ctl(["put", far(i).key, far(i).value]);
    await until("40 peers programmed", () => fdbOf(sb, n0).length === 40);
    const execs = await execsOf(sb, n0.agent!.pid, async () => {
      o.ctl(["put", far(40).key, far(40).value]);
      await until("the 41st peer's route", () => routeTo(sb, n0, "10.60.140.0/24"));
      o.ctl(["del", far(3).key]);
      await until("the 4th peer's route to go", () => !routeTo(sb, n0, "10.60.103.0/24"));
    });
    const batches = execs.filter((argv) => argv.includes("-batch"));
    const changes = batches.filter((argv) => !argv.includes("-j"));
    assert.ok(
      changes.length >= 2 && changes.length <= 6,
      `two events, at most three runs each: ${JSON.stringify(batches)}`,
    );
    assert.not.ok(
      batches.some((argv) => argv[0] === "bridge" && argv.includes("-j")),
      "no FDB dump: an event diffs against what its lease had programmed",
    );
    assert.is(fdbOf(sb, n0).length, 40, "the other peers untouched");
  });
});

it("agents restarted on both nodes keep their subnets and drop no established flow: one TCP connection between pods carries data before and after", async (sb) => {
  await withOverlay(sb, 2, VXLAN, async (o) => {
    const { n0, n1, e0, e1 } = await twoNodes(o, (n, peer) => routeTo(sb, n, peer));
    const a = addPod(sb, n0, e0, "pod-a");
    const b = addPod(sb, n1, e1, "pod-b");
    // One connection: busybox nc -l serves exactly one client, so data after the restarts arriving
    // at it means the same flow survived.
    const received = join(sb.tmp, "received");
    const out = openSync(received, "w");
    // Its stdin stays open: at end of input busybox nc stops relaying.
    const server = spawn("ip", ["netns", "exec", b.ns, "busybox", "nc", "-l", "-p", "5001"], {
      stdio: ["pipe", out, "ignore"],
    });
    closeSync(out);
    let client: ReturnType<typeof spawn> | undefined;
    try {
      const text = () => readFileSync(received, "utf8");
      await until("the server to listen", () =>
        / 0\.0\.0\.0:5001 | \*:5001 | \[::\]:5001 /.test(sb.inNs(b.ns, ["ss", "-ltnH"]).stdout),
      );
      client = spawn("ip", ["netns", "exec", a.ns, "busybox", "nc", b.ip, "5001"], {
        stdio: ["pipe", "ignore", "ignore"],
      });
      client.stdin!.write("before\n");
      await until("the first line across", () => text().includes("before"));
      // Nothing the peers' traffic uses may go away, even for a moment: the kernel's own log of
      // route, neighbour and link changes on n0 across the restarts.
      const events = join(sb.tmp, "n0-events");
      const log = openSync(events, "w");
      const monitor = spawn("ip", ["netns", "exec", n0.ns, "ip", "monitor", "route", "neigh", "link"], {
        stdio: ["ignore", log, "ignore"],
      });
      closeSync(log);
      try {
        await new Promise((r) => setTimeout(r, 300));
        for (const n of [n0, n1]) {
          assert.is(await o.stopAgent(n), 0);
          o.startAgent(n, ["--subnet-lease-ttl=60"]);
        }
        await until("both restarted agents to hold their leases", () =>
          [n0, n1].every((n) => /acquired .*\(etcd lease/.test(agentLog(n).split("SIGTERM")[1] ?? "")),
        );
      } finally {
        monitor.kill();
      }
      const deleted = readFileSync(events, "utf8")
        .split("\n")
        .filter((l) => l.startsWith("Deleted"));
      assert.equal(deleted, [], "no route, neighbour or link of n0 removed across the restarts");
      assert.equal(await subnetEnv(n0), e0, "n0 keeps its subnet");
      assert.equal(await subnetEnv(n1), e1, "n1 keeps its subnet");
      client!.stdin!.write("after\n");
      await until("data after the restarts on the same connection", () => text().includes("after"));
      assert.is(client!.exitCode, null, "the client's connection is still open");
    } finally {
      client?.kill();
      server.kill();
    }
  });
});

test.run();
