import { test } from "uvu";
import * as assert from "uvu/assert";
import { join } from "node:path";
import { BIN, sandboxed, type Sandbox } from "../helpers/sandbox.ts";
import { startEtcd, waitGone } from "../helpers/etcd.ts";
import {
  agentLog,
  attach,
  ETCD_ADDR,
  makeOverlay,
  type Overlay,
  type OverlayNode,
  subnetEnv,
  until,
} from "../helpers/overlay-net.ts";
import { addPod, icmpFrom, json, leases, SUBNETS as PREFIX, withOverlay as overlay } from "../helpers/overlay-pods.ts";

/**
 * tscni-agent across sandboxed nodes: an underlay switch, etcd and two or three node namespaces,
 * one agent per node. Leases in flannel's shape, the vxlan objects per peer, pods on different
 * nodes talking with their own source addresses, and a deleted lease leaving its peer.
 * More (host-gw, DirectRouting, MTU, --public-ip, address change, the flannel plugin): tscni-agent-2.test.ts.
 */
const it = sandboxed(test, "agent");
const CONFIG = { Network: "10.50.0.0/16", Backend: { Type: "vxlan" } };

const withOverlay = (sb: Sandbox, count: number, fn: (o: Overlay) => Promise<void>) => overlay(sb, count, CONFIG, fn);

it("two nodes: distinct flannel-shaped leases, vxlan objects per peer, pods ping across with their own source, a deleted lease leaves its peer", async (sb) => {
  await withOverlay(sb, 2, async (o) => {
    const [n0, n1] = o.nodes as [OverlayNode, OverlayNode];
    const e0 = await subnetEnv(n0);
    const e1 = await subnetEnv(n1);
    assert.is(e0.FLANNEL_NETWORK, "10.50.0.0/16");
    assert.is(e0.FLANNEL_MTU, "1450", "underlay 1500 minus the 50 of VXLAN");
    assert.is(e0.FLANNEL_IPMASQ, "false");
    assert.match(e0.FLANNEL_SUBNET!, /^10\.50\.\d+\.1\/24$/);
    assert.is.not(e0.FLANNEL_SUBNET, e1.FLANNEL_SUBNET, "distinct subnets");
    assert.is.not(e0.FLANNEL_SUBNET, "10.50.0.1/24", "never the first subnet of Network");

    const ls = leases(o);
    assert.is(ls.length, 2);
    const own = (n: OverlayNode) => ls.find((l) => l.value.PublicIP === n.addr)!;
    for (const [n, e] of [
      [n0, e0],
      [n1, e1],
    ] as const) {
      const l = own(n);
      assert.ok(l, `a lease carries ${n.addr}`);
      assert.is(l.key, `${PREFIX}${e.FLANNEL_SUBNET!.replace(/\.1\/24$/, ".0-24")}`);
      assert.is(l.value.BackendType, "vxlan");
      assert.is(l.value.BackendData!.VNI, 1);
      assert.ok(l.lease, "attached to an etcd lease");
      const dev = json(sb, n.ns, ["ip", "-j", "-d", "link", "show", "flannel.1"])[0];
      assert.is(dev.address, l.value.BackendData!.VtepMAC, "the lease carries the device's MAC");
      assert.is(dev.mtu, 1450);
      assert.is(dev.linkinfo.info_kind, "vxlan");
      assert.is(dev.linkinfo.info_data.id, 1);
      assert.is(dev.linkinfo.info_data.learning, false);
      assert.is(dev.linkinfo.info_data.local, n.addr);
      assert.is(dev.linkinfo.info_data.port, 8472);
    }

    // n0's objects for its peer n1: neighbour, FDB, onlink route.
    const p1 = own(n1);
    const sub1 = p1.key.slice(PREFIX.length).replace("-", "/");
    const addr1 = sub1.split("/")[0];
    const peerRoute = () =>
      (
        json(sb, n0.ns, ["ip", "-j", "route", "show", "dev", "flannel.1"]) as {
          dst: string;
          gateway?: string;
          flags: string[];
        }[]
      ).find((r) => r.dst === sub1);
    const route = await until("n0's route to n1's subnet", peerRoute);
    assert.is(route.gateway, addr1);
    assert.ok(route.flags.includes("onlink"));
    const neigh = json(sb, n0.ns, ["ip", "-j", "neigh", "show", "dev", "flannel.1"]);
    assert.equal(neigh, [{ dst: addr1, lladdr: p1.value.BackendData!.VtepMAC, state: ["PERMANENT"] }]);
    const fdb = json(sb, n0.ns, ["bridge", "-j", "fdb", "show", "dev", "flannel.1"]);
    assert.equal(
      fdb.map((f: { mac: string; dst: string }) => [f.mac, f.dst]),
      [[p1.value.BackendData!.VtepMAC, n1.addr]],
    );

    // Pods on different nodes reach each other, and arrive with their own address.
    const a = addPod(sb, n0, e0, "pod-a");
    const b = addPod(sb, n1, e1, "pod-b");
    await until(
      "n1's route to n0's subnet",
      () => (json(sb, n1.ns, ["ip", "-j", "route", "show", "dev", "flannel.1"]) as unknown[]).length > 0,
    );
    // Docker's FORWARD policy: FLANNEL-FWD must keep cluster traffic flowing.
    for (const n of [n0, n1]) {
      sb.inNs(n.ns, ["iptables", "-P", "FORWARD", "DROP"]);
      const rules = sb.inNs(n.ns, ["iptables", "-S"]).stdout;
      assert.match(rules, /-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD/);
      assert.match(rules, /-A FLANNEL-FWD -s 10\.50\.0\.0\/16 -m comment --comment "flanneld forward" -j ACCEPT/);
      assert.match(rules, /-A FLANNEL-FWD -d 10\.50\.0\.0\/16 -m comment --comment "flanneld forward" -j ACCEPT/);
    }
    sb.inNs(b.ns, ["iptables", "-A", "INPUT", "-s", a.ip, "-p", "icmp", "-j", "ACCEPT"]);
    const ping = sb.inNs(a.ns, ["busybox", "ping", "-c", "2", "-W", "2", b.ip], { allowFailure: true });
    assert.is(ping.code, 0, `pod ${a.ip} on n0 pings pod ${b.ip} on n1: ${ping.stdout}${ping.stderr}`);
    const counted = sb.inNs(b.ns, ["iptables", "-nvxL", "INPUT"]).stdout;
    const pkts = Number(/^\s*(\d+)\s+\d+\s+ACCEPT/m.exec(counted)?.[1] ?? 0);
    assert.ok(pkts >= 2, `pod b saw the pings from ${a.ip} itself (no NAT): ${counted}`);
    assert.is(sb.inNs(b.ns, ["busybox", "ping", "-c", "1", "-W", "2", a.ip], { allowFailure: true }).code, 0);

    // A node that leaves: its agent stops (exit 0, its device kept), then its key is deleted.
    assert.is(await o.stopAgent(n1), 0, "SIGTERM is a clean exit");
    assert.ok(json(sb, n1.ns, ["ip", "-j", "link", "show", "flannel.1"]).length === 1, "kernel state kept on exit");
    o.ctl(["del", p1.key]);
    await until("n0 to drop n1's route", () => !peerRoute());
    await until("n0 to drop n1's neighbour and FDB entry", () => {
      const n = json(sb, n0.ns, ["ip", "-j", "neigh", "show", "dev", "flannel.1"]);
      const f = json(sb, n0.ns, ["bridge", "-j", "fdb", "show", "dev", "flannel.1"]);
      return n.length === 0 && f.length === 0;
    });
  });
});

it("its own key deleted: the agent takes the same subnet back; restarted, it keeps subnet and MAC", async (sb) => {
  await withOverlay(sb, 1, async (o) => {
    const [n0] = o.nodes as [OverlayNode];
    const e0 = await subnetEnv(n0);
    const [l] = leases(o);
    o.ctl(["del", l!.key]);
    const back = await until("the key to come back", () => leases(o).find((x) => x.key === l!.key));
    assert.is(back.value.BackendData!.VtepMAC, l!.value.BackendData!.VtepMAC);
    assert.match(agentLog(n0), /own lease .* was deleted/);
    assert.is(await o.stopAgent(n0), 0);
    o.startAgent(n0, ["--subnet-lease-ttl=60"]);
    await until("the restarted agent's log line", () =>
      /acquired .*\(etcd lease/.test(agentLog(n0).split("SIGTERM")[1] ?? ""),
    );
    assert.equal(await subnetEnv(n0), e0);
    const again = leases(o);
    assert.is(again.length, 1);
    assert.is(again[0]!.key, l!.key, "the lease carrying its PublicIP is reused");
    assert.is(again[0]!.value.BackendData!.VtepMAC, l!.value.BackendData!.VtepMAC, "the device and its MAC are kept");
  });
});

it("restart reconcile removes a peer that vanished while the agent was down (flannel's issue 2554)", async (sb) => {
  await withOverlay(sb, 3, async (o) => {
    const [n0, n1, n2] = o.nodes as [OverlayNode, OverlayNode, OverlayNode];
    for (const n of o.nodes) await subnetEnv(n);
    const routes = () => json(sb, n0.ns, ["ip", "-j", "route", "show", "dev", "flannel.1"]) as { dst: string }[];
    await until("n0's routes to both peers", () => routes().length === 2);
    const gone = leases(o).find((l) => l.value.PublicIP === n2.addr)!;
    assert.is(await o.stopAgent(n0), 0);
    assert.is(await o.stopAgent(n2), 0);
    o.ctl(["del", gone.key]);
    assert.is(routes().length, 2, "nothing removes it while n0's agent is down");
    o.startAgent(n0, ["--subnet-lease-ttl=60"]);
    const sub2 = gone.key.slice(PREFIX.length).replace("-", "/");
    await until("the restarted agent to drop the vanished peer", () => !routes().some((r) => r.dst === sub2));
    const left = routes();
    assert.is(left.length, 1, "the live peer stays");
    const mac2 = gone.value.BackendData!.VtepMAC;
    const fdb = json(sb, n0.ns, ["bridge", "-j", "fdb", "show", "dev", "flannel.1"]) as { mac: string }[];
    assert.not.ok(
      fdb.some((f) => f.mac === mac2),
      "its FDB entry went too",
    );
    const neigh = json(sb, n0.ns, ["ip", "-j", "neigh", "show", "dev", "flannel.1"]) as { lladdr: string }[];
    assert.not.ok(
      neigh.some((x) => x.lladdr === mac2),
      "and its neighbour",
    );
    void n1;
  });
});

it("etcd down: pods keep talking and nothing is flushed; etcd back: a node that joins afterwards is learned", async (sb) => {
  const o = await makeOverlay(sb, 3, CONFIG);
  try {
    const [n0, n1, n2] = o.nodes as [OverlayNode, OverlayNode, OverlayNode];
    o.startAgent(n0);
    o.startAgent(n1);
    const e0 = await subnetEnv(n0);
    const e1 = await subnetEnv(n1);
    const routes = (n: OverlayNode) => json(sb, n.ns, ["ip", "-j", "route", "show", "dev", "flannel.1"]) as unknown[];
    await until("both nodes to know each other", () => routes(n0).length === 1 && routes(n1).length === 1);
    const a = addPod(sb, n0, e0, "pod-a");
    const b = addPod(sb, n1, e1, "pod-b");
    o.etcd.stop();
    await waitGone(o.etcd.pid);
    await until("the agents to notice", () => /re-listing/.test(agentLog(n0)));
    assert.is(routes(n0).length, 1, "a store outage flushes nothing");
    assert.is(sb.inNs(a.ns, ["busybox", "ping", "-c", "1", "-W", "2", b.ip], { allowFailure: true }).code, 0);
    const c = addPod(sb, n0, e0, "pod-c");
    assert.is(
      sb.inNs(c.ns, ["busybox", "ping", "-c", "1", "-W", "2", b.ip], { allowFailure: true }).code,
      0,
      "a new pod starts and talks",
    );
    o.etcd = await startEtcd(sb, o.etcdNs, ETCD_ADDR);
    o.startAgent(n2);
    await subnetEnv(n2);
    await until("n0 and n1 to learn n2 without a restart", () => routes(n0).length === 2 && routes(n1).length === 2);
  } catch (e) {
    for (const n of o.nodes) process.stderr.write(`--- ${n.ns} agent log\n${agentLog(n)}`);
    throw e;
  } finally {
    await o.stopAll();
  }
});

it("a VXLAN device deleted by hand is recreated, its new MAC published and the peer's FDB and neighbour corrected", async (sb) => {
  await withOverlay(sb, 2, async (o) => {
    const [n0, n1] = o.nodes as [OverlayNode, OverlayNode];
    await subnetEnv(n0);
    await subnetEnv(n1);
    const mine = () => leases(o).find((l) => l.value.PublicIP === n0.addr)!;
    const fdb1 = () =>
      json(sb, n1.ns, ["bridge", "-j", "fdb", "show", "dev", "flannel.1"]) as { mac: string; dst: string }[];
    const old = mine().value.BackendData!.VtepMAC;
    await until("n1's FDB entry for n0", () => fdb1().some((f) => f.mac === old));
    sb.inNs(n0.ns, ["ip", "link", "del", "flannel.1"]);
    const dev = await until("flannel.1 back on n0", () =>
      json(sb, n0.ns, ["ip", "-j", "link", "show"]).find((l: { ifname: string }) => l.ifname === "flannel.1"),
    );
    await until("the lease to carry the new MAC", () => mine().value.BackendData!.VtepMAC === dev.address);
    await until("n1's FDB to follow", () => {
      const f = fdb1();
      return f.length === 1 && f[0]!.mac === dev.address && f[0]!.dst === n0.addr;
    });
    const neigh = json(sb, n1.ns, ["ip", "-j", "neigh", "show", "dev", "flannel.1"]) as { lladdr: string }[];
    assert.equal(
      neigh.map((x) => x.lladdr),
      [dev.address],
      "the neighbour follows, no stale entry",
    );
    assert.ok(
      (json(sb, n0.ns, ["ip", "-j", "route", "show", "dev", "flannel.1"]) as unknown[]).length === 1,
      "n0's peer route is back",
    );
  });
});

it("a short TTL is renewed before it runs out: the same key and create revision, a fresh etcd lease", async (sb) => {
  const o = await makeOverlay(sb, 1, CONFIG);
  try {
    const [n0] = o.nodes as [OverlayNode];
    o.startAgent(n0, ["--subnet-lease-ttl=4"]);
    await subnetEnv(n0);
    const get = () => {
      const out = o.ctl(["get", "--prefix", PREFIX, "-w", "json"]).stdout;
      // Lease IDs are int64s beyond a double's precision: read from the text, not JSON.parse.
      const leaseIds = [...out.matchAll(/"lease":(\d+)/g)].map((m) => m[1]);
      return ((JSON.parse(out).kvs ?? []) as { key: string; create_revision: number }[]).map((kv, i) => ({
        ...kv,
        lease: leaseIds[i],
      }));
    };
    const [first] = get();
    assert.ok(first);
    // Three renewals at TTL/2 outlive the 4 s TTL more than twice over.
    await until("three renewals", () => (agentLog(n0).match(/renewed /g) ?? []).length >= 3);
    const [now] = get();
    assert.ok(now, "the key outlived its TTL");
    assert.is(now!.key, first!.key);
    assert.is(now!.create_revision, first!.create_revision, "renewed in place, not deleted and recreated");
    assert.is.not(now!.lease, first!.lease, "attached to a fresh etcd lease");
  } catch (e) {
    for (const n of o.nodes) process.stderr.write(`--- ${n.ns} agent log\n${agentLog(n)}`);
    throw e;
  } finally {
    await o.stopAll();
  }
});

it("--ip-masq: an external host on the underlay sees the node's address, a pod on another node sees the pod's", async (sb) => {
  const o = await makeOverlay(sb, 2, CONFIG);
  try {
    const [n0, n1] = o.nodes as [OverlayNode, OverlayNode];
    const ext = sb.addNamespace("ext");
    attach(sb, ext, "192.168.100.50");
    for (const n of o.nodes) {
      sb.inNs(n.ns, ["ip", "route", "add", "default", "via", "192.168.100.50"]);
      o.startAgent(n, ["--ip-masq"]);
    }
    const e0 = await subnetEnv(n0);
    const e1 = await subnetEnv(n1);
    assert.is(e0.FLANNEL_IPMASQ, "true");
    const routes = (n: OverlayNode) => json(sb, n.ns, ["ip", "-j", "route", "show", "dev", "flannel.1"]) as unknown[];
    await until("both nodes to know each other", () => routes(n0).length === 1 && routes(n1).length === 1);
    // A default route, as the flannel plugin's delegate with isDefaultGateway gives pods.
    const a = addPod(sb, n0, e0, "pod-a", [{ dst: "0.0.0.0/0" }]);
    const b = addPod(sb, n1, e1, "pod-b", [{ dst: "0.0.0.0/0" }]);
    const count = (ns: string, src: string) => icmpFrom(sb, ns, src);
    const extFromNode = count(ext, n0.addr);
    const extFromPod = count(ext, a.ip);
    const bFromPod = count(b.ns, a.ip);
    assert.is(
      sb.inNs(a.ns, ["busybox", "ping", "-c", "2", "-W", "2", "192.168.100.50"], { allowFailure: true }).code,
      0,
    );
    assert.ok(extFromNode() >= 2, "the external host sees n0's address");
    assert.is(extFromPod(), 0, "not the pod's");
    assert.is(sb.inNs(a.ns, ["busybox", "ping", "-c", "2", "-W", "2", b.ip], { allowFailure: true }).code, 0);
    assert.ok(bFromPod() >= 2, "pod to pod across nodes is not masqueraded");
    assert.match(
      sb.inNs(n0.ns, ["iptables", "-t", "nat", "-S"]).stdout,
      /-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG/,
    );
  } catch (e) {
    for (const n of o.nodes) process.stderr.write(`--- ${n.ns} agent log\n${agentLog(n)}`);
    throw e;
  } finally {
    await o.stopAll();
  }
});

it("a missing config key is logged by its full name (/healthz 503 until it comes up, then 200); bad flags exit 2 naming the flag", async (sb) => {
  const bad = sb.inNode([join(BIN, "tscni-agent"), "--subnet-lease-ttl=soon"], { allowFailure: true });
  assert.is(bad.code, 2);
  assert.match(bad.stderr, /--subnet-lease-ttl: "soon" is not a positive whole number/);
  const unknown = sb.inNode([join(BIN, "tscni-agent"), "--bogus=1"], { allowFailure: true });
  assert.is(unknown.code, 2);
  assert.match(unknown.stderr, /unknown flag --bogus/);
  const o = await makeOverlay(sb, 1, CONFIG);
  try {
    const [n0] = o.nodes as [OverlayNode];
    o.ctl(["put", "/coreos.com/network/config", '{"Network":"10.50.0.0/16"}']);
    o.startAgent(n0, ["--healthz-port=8081"]);
    const health = () =>
      sb.inNs(n0.ns, ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:8081/healthz"], {
        allowFailure: true,
      }).stdout;
    await until("the config complaint", () => /\/coreos\.com\/network\/config is invalid: Backend/.test(agentLog(n0)));
    o.ctl(["del", "/coreos.com/network/config"]);
    await until("the missing-key complaint", () =>
      /\/coreos\.com\/network\/config not found in etcd/.test(agentLog(n0)),
    );
    assert.is(
      await until("/healthz to answer", () => health() !== "000" && health()),
      "503",
      "not healthy before subnet.env",
    );
    o.ctl(["put", "/coreos.com/network/config", JSON.stringify(CONFIG)]);
    await subnetEnv(n0);
    assert.is(health(), "200", "healthy once subnet.env is written");
  } finally {
    await o.stopAll();
  }
});

test.run();
