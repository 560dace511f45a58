import { spawn } from "node:child_process";
import { mkdirSync, openSync } from "node:fs";
import { join } from "node:path";
import { type Sandbox, sh } from "./sandbox.ts";

/**
 * A one-member etcd (Debian's etcd-server) inside a sandbox namespace: its own data directory in
 * the test's temp dir, client and peer URLs on `addr` there, stopped by its PID. `ip netns exec`
 * execs etcd, so the PID spawned is etcd's own.
 */
export interface Etcd {
  pid: number;
  url: string;
  stop(): void;
}

export async function startEtcd(sb: Sandbox, ns: string, addr = "127.0.0.1", name = "etcd"): Promise<Etcd> {
  const dir = join(sb.tmp, name);
  mkdirSync(dir, { recursive: true });
  const url = `http://${addr}:2379`;
  const log = openSync(join(dir, "etcd.log"), "a");
  const child = spawn(
    "ip",
    [
      "netns",
      "exec",
      ns,
      "etcd",
      "--name",
      name,
      "--data-dir",
      join(dir, "data"),
      "--listen-client-urls",
      url,
      "--advertise-client-urls",
      url,
      "--listen-peer-urls",
      `http://${addr}:2380`,
      "--initial-advertise-peer-urls",
      `http://${addr}:2380`,
      "--initial-cluster",
      `${name}=http://${addr}:2380`,
    ],
    { stdio: ["ignore", log, log], detached: false },
  );
  const pid = child.pid!;
  const stop = () => {
    try {
      process.kill(pid, "SIGTERM");
    } catch {}
  };
  // Ready once etcdctl answers inside the namespace (etcdctl waits for no leader on its own).
  for (let i = 0; i < 100; i++) {
    const r = etcdctl(sb, ns, url, ["endpoint", "health"], true);
    if (r.code === 0) return { pid, url, stop };
    await new Promise((res) => setTimeout(res, 100));
  }
  stop();
  throw new Error(`etcd did not become healthy; see ${join(dir, "etcd.log")}`);
}

/** etcdctl (API v3) against the test's etcd, run inside its namespace. */
export function etcdctl(sb: Sandbox, ns: string, url: string, args: string[], allowFailure = false) {
  return sb.inNs(ns, ["etcdctl", `--endpoints=${url}`, "--dial-timeout=2s", ...args], { allowFailure });
}

/** Waits until the process with this PID is gone (a stopped daemon really stopped). */
export async function waitGone(pid: number) {
  for (let i = 0; i < 200; i++) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((res) => setTimeout(res, 50));
  }
  process.kill(pid, "SIGKILL");
}

export { sh };
