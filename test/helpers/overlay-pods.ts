import * as assert from "uvu/assert";
import { join } from "node:path";
import { runPlugin } from "./plugin-run.ts";
import { agentLog, makeOverlay, type Overlay, type OverlayNode } from "./overlay-net.ts";
import { BIN, cniEnv, type Sandbox } from "./sandbox.ts";

/** What the agent tests share: the store's leases, pods on a node, kernel dumps, packet counters. */
export const SUBNETS = "/coreos.com/network/subnets/";

export const json = (sb: Sandbox, ns: string, argv: string[]) => JSON.parse(sb.inNs(ns, argv).stdout || "[]");

/**
 * An overlay of `count` nodes around `fn`, each node's agent started with `agentArgs` (false: the
 * test starts them); agent logs printed when it fails, everything stopped by PID after.
 */
export async function withOverlay(
  sb: Sandbox,
  count: number,
  config: object,
  fn: (o: Overlay) => Promise<void>,
  agentArgs: string[] | false = ["--subnet-lease-ttl=60"],
) {
  const o = await makeOverlay(sb, count, config);
  try {
    if (agentArgs) for (const n of o.nodes) o.startAgent(n, agentArgs);
    await fn(o);
  } catch (e) {
    for (const n of o.nodes) process.stderr.write(`--- ${n.ns} agent log\n${agentLog(n)}`);
    throw e;
  } finally {
    await o.stopAll();
  }
}

export interface Lease {
  key: string;
  value: { PublicIP: string; BackendType: string; BackendData?: { VNI: number; VtepMAC: string } };
  lease?: number;
}

export const leases = (o: Overlay): Lease[] => {
  const out = o.ctl(["get", "--prefix", SUBNETS, "-w", "json"]).stdout;
  const kvs = (JSON.parse(out).kvs ?? []) as { key: string; value: string; lease?: number }[];
  return kvs.map((kv) => ({
    key: Buffer.from(kv.key, "base64").toString(),
    value: JSON.parse(Buffer.from(kv.value, "base64").toString()),
    lease: kv.lease,
  }));
};

/** The lease carrying a node's address, and its subnet as a CIDR. */
export function leaseOf(o: Overlay, addr: string) {
  const l = leases(o).find((x) => x.value.PublicIP === addr);
  return l && { ...l, subnet: l.key.slice(SUBNETS.length).replace("-", "/") };
}

/** A pod on a node: bridge + host-local over the node's FLANNEL_SUBNET, as the flannel plugin delegates. */
export function addPod(
  sb: Sandbox,
  n: OverlayNode,
  env: Record<string, string>,
  id: string,
  routes = [{ dst: env.FLANNEL_NETWORK }],
) {
  const conf = {
    cniVersion: "1.0.0",
    name: "overlay",
    type: "bridge",
    bridge: "cni0",
    isGateway: true,
    ipMasq: false,
    mtu: Number(env.FLANNEL_MTU),
    ipam: {
      type: "host-local",
      dataDir: join(n.dir, "ipam"),
      subnet: env.FLANNEL_SUBNET!.replace(/\.1\//, ".0/"),
      routes,
    },
  };
  return podAdd(sb, n, "bridge", conf, id);
}

/** ADDs a new container on a node with one of our plugins; its namespace and first address. */
export function podAdd(sb: Sandbox, n: OverlayNode, plugin: string, conf: object, id: string) {
  const ctr = sb.addContainer();
  const r = runPlugin(
    { node: n.ns },
    join(BIN, plugin),
    cniEnv("ADD", { CNI_CONTAINERID: id, CNI_NETNS: ctr.path }),
    conf,
  );
  assert.is(r.code, 0, r.stdout + r.stderr);
  return { ns: ctr.name, ip: (r.json.ips[0].address as string).split("/")[0]! };
}

/** Counts ICMP packets from `src` arriving in `ns` (an INPUT rule's counter): who the sender looked like. */
export function icmpFrom(sb: Sandbox, ns: string, src: string) {
  sb.inNs(ns, ["iptables", "-A", "INPUT", "-s", src, "-p", "icmp", "-j", "ACCEPT"]);
  return () => {
    const out = sb.inNs(ns, ["iptables", "-nvxL", "INPUT"]).stdout;
    const line = out.split("\n").find((l) => l.includes(` ${src} `));
    return Number(line?.trim().split(/\s+/)[0] ?? 0);
  };
}

export const pings = (sb: Sandbox, from: string, to: string, count = 1) =>
  sb.inNs(from, ["busybox", "ping", "-c", String(count), "-W", "2", to], { allowFailure: true }).code === 0;

export interface Route {
  dst: string;
  gateway?: string;
  dev: string;
  flags: string[];
}

/** A node's main-table route to `dst`, if any. */
export const routeTo = (sb: Sandbox, n: OverlayNode, dst: string) =>
  (json(sb, n.ns, ["ip", "-j", "route", "show"]) as Route[]).find((r) => r.dst === dst);

export const fdbOf = (sb: Sandbox, n: OverlayNode) =>
  json(sb, n.ns, ["bridge", "-j", "fdb", "show", "dev", "flannel.1"]) as { mac: string; dst: string }[];

export const neighsOf = (sb: Sandbox, n: OverlayNode) =>
  json(sb, n.ns, ["ip", "-j", "neigh", "show", "dev", "flannel.1"]) as {
    dst: string;
    lladdr: string;
    state: string[];
  }[];
