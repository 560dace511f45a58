import { spawn } from "node:child_process";
import { existsSync, mkdirSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type Etcd, etcdctl, startEtcd, waitGone } from "./etcd.ts";
import { BIN, type Sandbox } from "./sandbox.ts";

/**
 * Several "nodes" on one underlay, all inside the sandbox: the sandbox's node namespace is the
 * underlay switch (a bridge), and an etcd namespace and each node namespace hang off it by a veth
 * (their eth0, 192.168.100.x/24). Agents run one per node namespace and are stopped by PID.
 */
export const ETCD_ADDR = "192.168.100.2";
export const nodeAddr = (i: number) => `192.168.100.${11 + i}`;

export interface OverlayNode {
  ns: string;
  addr: string;
  dir: string;
  subnetFile: string;
  agent?: { pid: number; exited: Promise<number | null> };
}

export interface Overlay {
  etcd: Etcd;
  etcdNs: string;
  nodes: OverlayNode[];
  ctl(args: string[], allowFailure?: boolean): ReturnType<typeof etcdctl>;
  startAgent(n: OverlayNode, extra?: string[]): void;
  stopAgent(n: OverlayNode): Promise<number | null>;
  stopAll(): Promise<void>;
}

/** Joins a namespace to the underlay switch as eth0 with `addr`/24. */
export function attach(sb: Sandbox, ns: string, addr: string) {
  const hostIf = `u${ns.slice(-8)}`.slice(0, 15);
  sb.inNode(["ip", "link", "add", hostIf, "type", "veth", "peer", "name", "eth0", "netns", ns]);
  sb.inNode(["ip", "link", "set", hostIf, "master", "br0", "up"]);
  sb.inNs(ns, ["ip", "addr", "add", `${addr}/24`, "dev", "eth0"]);
  sb.inNs(ns, ["ip", "link", "set", "eth0", "up"]);
  sb.inNs(ns, ["ip", "link", "set", "lo", "up"]);
}

/** `bin`: the plugin directory whose tscni-agent runs (the benchmark passes its --bin). */
export async function makeOverlay(sb: Sandbox, count: number, config: object, bin = BIN): Promise<Overlay> {
  sb.inNode(["ip", "link", "add", "br0", "type", "bridge"]);
  sb.inNode(["ip", "link", "set", "br0", "up"]);
  const etcdNs = sb.addNamespace("etcd");
  attach(sb, etcdNs, ETCD_ADDR);
  const nodes: OverlayNode[] = [];
  for (let i = 0; i < count; i++) {
    const ns = sb.addNamespace(`n${i}`);
    attach(sb, ns, nodeAddr(i));
    const dir = join(sb.tmp, `node${i}`);
    mkdirSync(dir);
    nodes.push({ ns, addr: nodeAddr(i), dir, subnetFile: join(dir, "subnet.env") });
  }
  const etcd = await startEtcd(sb, etcdNs, ETCD_ADDR);
  const ctl = (args: string[], allowFailure = false) => etcdctl(sb, etcdNs, etcd.url, args, allowFailure);
  ctl(["put", "/coreos.com/network/config", JSON.stringify(config)]);
  const o: Overlay = {
    etcd,
    etcdNs,
    nodes,
    ctl,
    startAgent(n, extra = []) {
      const log = openSync(join(n.dir, "agent.log"), "a");
      const child = spawn(
        "ip",
        [
          "netns",
          "exec",
          n.ns,
          join(bin, "tscni-agent"),
          `--etcd-endpoints=${etcd.url}`,
          "--iface=eth0",
          `--subnet-file=${n.subnetFile}`,
          ...extra,
        ],
        { stdio: ["ignore", log, log] },
      );
      n.agent = { pid: child.pid!, exited: new Promise((res) => child.on("exit", (code) => res(code))) };
    },
    async stopAgent(n) {
      if (!n.agent) return null;
      process.kill(n.agent.pid, "SIGTERM");
      const code = await n.agent.exited;
      await waitGone(n.agent.pid);
      n.agent = undefined;
      return code;
    },
    async stopAll() {
      for (const n of nodes) if (n.agent) await o.stopAgent(n).catch(() => {});
      o.etcd.stop();
      await waitGone(o.etcd.pid);
    },
  };
  return o;
}

/** Waits for a condition the agents bring about (convergence is measured by the bench, not here). */
export async function until<T>(what: string, fn: () => T | undefined | false, tries = 300): Promise<T> {
  for (let i = 0; i < tries; i++) {
    const v = fn();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`gave up waiting for ${what}`);
}

/** subnet.env as a map, once the agent has written it. */
export const subnetEnv = (n: OverlayNode) =>
  until(`${n.subnetFile}`, () =>
    existsSync(n.subnetFile)
      ? Object.fromEntries(
          readFileSync(n.subnetFile, "utf8")
            .trim()
            .split("\n")
            .map((l) => l.split("=") as [string, string]),
        )
      : undefined,
  );

export const agentLog = (n: OverlayNode) =>
  existsSync(join(n.dir, "agent.log")) ? readFileSync(join(n.dir, "agent.log"), "utf8") : "";
