import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { BIN, REF_BIN, type Sandbox, cniEnv, sh } from "./sandbox.ts";
import { runPlugin, runPluginAsync, type RunOptions } from "./plugin-run.ts";
import { iptablesRules, nftRuleset } from "./node-state.ts";

/**
 * Pieces for bridge integration tests: plugin directories (our bridge with our host-local, which
 * runs in-process, or with the reference host-local, which is executed), ADD/DEL/CHECK calls, and
 * snapshots of everything an attachment may leave behind in the node.
 */
export const BRIDGE = join(BIN, "bridge");
export const REF_BRIDGE = join(REF_BIN, "bridge");

export type Ipam = "ours" | "reference";

/**
 * CNI_PATH for a run. "ours": the build directory itself, where host-local is a hard link to the
 * same executable (delegation runs in-process). "reference": a directory whose host-local is the
 * reference binary, so delegation executes it.
 */
export function cniPath(sb: Sandbox, ipam: Ipam = "ours"): string {
  if (ipam === "ours") return BIN;
  const dir = join(sb.tmp, "cni-ref-ipam");
  if (!existsSync(dir)) {
    mkdirSync(dir);
    symlinkSync(BRIDGE, join(dir, "bridge"));
    symlinkSync(join(REF_BIN, "host-local"), join(dir, "host-local"));
  }
  return dir;
}

export function bridgeConf(sb: Sandbox, extra: Record<string, unknown> = {}, ipam: Record<string, unknown> = {}) {
  return {
    cniVersion: "1.0.0",
    name: "brnet",
    type: "bridge",
    bridge: "cni0",
    isGateway: true,
    ...extra,
    ipam: {
      type: "host-local",
      dataDir: join(sb.tmp, "ipam"),
      subnet: "10.22.0.0/24",
      routes: [{ dst: "0.0.0.0/0" }],
      ...ipam,
    },
  };
}

export interface Call {
  id?: string;
  ifname?: string;
  netns: string;
  path?: string;
  args?: string;
  binary?: string;
}

function callEnv(command: string, c: Call) {
  return cniEnv(command, {
    CNI_CONTAINERID: c.id ?? "ctr1",
    CNI_IFNAME: c.ifname ?? "eth0",
    CNI_NETNS: c.netns,
    CNI_PATH: c.path ?? BIN,
    ...(c.args ? { CNI_ARGS: c.args } : {}),
  });
}

export function cni(sb: Sandbox, command: string, c: Call, conf: unknown, opts?: RunOptions) {
  return runPlugin(sb, c.binary ?? BRIDGE, callEnv(command, c), conf, opts);
}

export function addOk(sb: Sandbox, c: Call, conf: unknown): any {
  const r = cni(sb, "ADD", c, conf);
  if (r.code !== 0) throw new Error(`bridge ADD failed: ${r.stdout}${r.stderr}`);
  return r.json;
}

export const withPrev = (conf: object, prevResult: unknown) => ({ ...conf, prevResult });

interface LinkJson {
  ifname: string;
  ifindex: number;
  flags: string[];
  mtu: number;
  address: string;
  master?: string;
  operstate?: string;
  link_index?: number;
  linkinfo?: { info_kind?: string; info_slave_kind?: string; info_slave_data?: Record<string, unknown> };
  addr_info?: { family: string; local: string; prefixlen: number; scope: string }[];
}

export function links(sb: Sandbox, ns: string): LinkJson[] {
  return JSON.parse(sb.inNs(ns, ["ip", "-d", "-j", "addr", "show"]).stdout) as LinkJson[];
}

export const link = (sb: Sandbox, ns: string, name: string) => links(sb, ns).find((l) => l.ifname === name);

export const addrsOf = (l: LinkJson | undefined, family = "inet") =>
  (l?.addr_info ?? [])
    .filter((a) => a.family === family && a.scope === "global")
    .map((a) => `${a.local}/${a.prefixlen}`);

export const linkNames = (sb: Sandbox, ns: string) =>
  links(sb, ns)
    .map((l) => l.ifname)
    .sort();

/** The node's nat rules for both families and its nft ruleset. */
export const netfilter = (sb: Sandbox): { v4: string[]; v6: string[]; nft: string } => ({
  v4: iptablesRules(sb, 4, { table: "nat" }),
  v6: iptablesRules(sb, 6, { table: "nat" }),
  nft: nftRuleset(sb),
});

/** Rules in the inet masquerade table's per-address chain (the reference's nftables layout). */
export function nftMasqRules(sb: Sandbox): string[] {
  const r = sb.inNode(["nft", "list", "chain", "inet", "cni_plugins_masquerade", "masq_checks"], {
    allowFailure: true,
  });
  return r.stdout
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => /^ip6? saddr /.test(l));
}

/** IPs host-local holds for `network` under the sandbox's data dir. */
export function reservations(sb: Sandbox, network = "brnet", dataDir = join(sb.tmp, "ipam")): string[] {
  const dir = join(dataDir, network);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f !== "lock" && !f.startsWith("last_reserved_ip"))
    .sort();
}

/** One ICMP echo (busybox ping: this machine has no iputils); a few tries while neighbours resolve. */
export function ping(sb: Sandbox, ns: string, addr: string, tries = 3): boolean {
  const v6 = addr.includes(":");
  for (let i = 0; i < tries; i++) {
    const r = sb.inNs(ns, ["busybox", v6 ? "ping6" : "ping", "-c", "1", "-W", "1", addr], { allowFailure: true });
    if (r.code === 0) return true;
  }
  return false;
}

/**
 * Processes a plugin run spawns, counted by strace: one entry per child process, named by the
 * last program it executed (nsenter execs ip in the same process: that counts once, as "ip").
 */
export function tracedSpawns(
  sb: Sandbox,
  env: Record<string, string>,
  conf: unknown,
  binary = BRIDGE,
): { code: number; stdout: string; spawns: string[] } {
  const log = join(sb.tmp, `strace-${Math.random().toString(36).slice(2)}.log`);
  const r = runPlugin(sb, binary, env, conf, {
    wrapper: ["strace", "-f", "-e", "trace=execve", "-e", "signal=none", "-o", log],
  });
  const byPid = new Map<string, string>();
  const pending = new Map<string, string>();
  for (const line of sh(["cat", log]).stdout.split("\n")) {
    const start = /^(\d+)\s+execve\("([^"]+)"/.exec(line);
    if (start) pending.set(start[1]!, start[2]!);
    const pid = /^(\d+)\s/.exec(line)?.[1];
    if (pid && /(execve\(|execve resumed>).*= 0$/.test(line) && pending.has(pid))
      byPid.set(pid, pending.get(pid)!.split("/").pop()!);
  }
  const spawns = [...byPid.values()].slice(1); // the first is the plugin itself
  return { code: r.code, stdout: r.stdout, spawns };
}

/** A TCP server in `ns` that answers every connection with the peer address it sees, then closes. */
export function startWhoami(_sb: Sandbox, ns: string, port: number): Promise<ChildProcess> {
  const script = `require("node:net").createServer((s) => s.end(s.remoteAddress.replace(/^::ffff:/, "") + "\\n")).listen(${port}, () => console.log("ready"));`;
  const child = spawn("ip", ["netns", "exec", ns, "node", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    child.stdout!.on("data", (d: Buffer) => d.toString().includes("ready") && resolve(child));
    child.on("exit", (code) => reject(new Error(`whoami server exited with ${code}`)));
  });
}

/** Connects from `ns` (busybox nc) and returns what the server said, or "" when it could not. */
export function whoami(sb: Sandbox, ns: string, host: string, port: number): string {
  return sb.inNs(ns, ["busybox", "nc", "-w", "3", host, String(port)], { allowFailure: true }).stdout.trim();
}

/** The same call as cni(), without waiting: several of them run at once. */
export const cniAsync = (sb: Sandbox, command: string, c: Call, conf: unknown) =>
  runPluginAsync(sb, c.binary ?? BRIDGE, callEnv(command, c), conf);

/**
 * The same call as cni(), entering the node namespace with nsenter: unlike `ip netns exec` that
 * leaves /sys mounted for the machine's own namespace, as some runtimes leave it.
 */
export const cniNsenter = (sb: Sandbox, command: string, c: Call, conf: unknown) =>
  cni(sb, command, c, conf, { entry: "nsenter" });
