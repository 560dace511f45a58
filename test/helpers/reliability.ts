import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { clientVars, libcniClient, ourCnitool, writeNetconf, type ClientEnv } from "./libcni.ts";
import { type Sandbox, sh } from "./sandbox.ts";
import { startPlugin, type PluginRun } from "./plugin-run.ts";
import { nodeLinks, nodeSnapshot, type NodeSnapshot } from "./node-state.ts";

/**
 * Pieces for the reliability tests: the standard conflist (loopback, bridge with gateway,
 * masquerade and hairpin over host-local, portmap), the libcni client run asynchronously in its own
 * process group (so a SIGKILL takes the client, the plugins and every tool they started), a full
 * snapshot of what an attachment can leave in the node, and a seeded random source.
 */
export const NET = "relnet";
export const BRIDGE_NAME = "relbr0";
export const SUBNET = "10.61.0.0/16";
export const HOST_PORT = 18080;
export const PORT_MAPPINGS = [{ hostPort: HOST_PORT, containerPort: 80, protocol: "tcp" }];

export interface Net {
  sb: Sandbox;
  dataDir: string;
  client: ClientEnv;
  /** The client binary: the libcni client, or our cnitool for 1.1.0 lists (Debian's libcni predates 1.1.0). */
  tool: string;
}

/** The standard conflist written under the sandbox, with its data and cache dirs there too. */
export function standardNet(
  sb: Sandbox,
  opts: { cniVersion?: string; dataDir?: string; ipMasqBackend?: string; tool?: string; loopback?: boolean } = {},
): Net {
  const dataDir = opts.dataDir ?? join(sb.tmp, "ipam");
  const conflist = {
    cniVersion: opts.cniVersion ?? "1.0.0",
    name: NET,
    plugins: [
      ...(opts.loopback === false ? [] : [{ type: "loopback" }]),
      {
        type: "bridge",
        bridge: BRIDGE_NAME,
        isGateway: true,
        ipMasq: true,
        hairpinMode: true,
        ...(opts.ipMasqBackend ? { ipMasqBackend: opts.ipMasqBackend } : {}),
        ipam: { type: "host-local", dataDir, ranges: [[{ subnet: SUBNET }]], routes: [{ dst: "0.0.0.0/0" }] },
      },
      { type: "portmap", capabilities: { portMappings: true }, snat: true },
    ],
  };
  const netconfPath = writeNetconf(
    sb,
    { "10-rel.conflist": conflist },
    `net.d-${Math.random().toString(36).slice(2, 8)}`,
  );
  const tool = opts.tool ?? (opts.cniVersion === "1.1.0" ? ourCnitool() : libcniClient());
  return {
    sb,
    dataDir,
    tool,
    client: { netconfPath, cacheDir: join(sb.tmp, "cache"), capArgs: { portMappings: PORT_MAPPINGS } },
  };
}

export type Outcome = Pick<PluginRun, "code" | "signal" | "stdout" | "stderr">;

/**
 * Runs the client in the node namespace without waiting. `killPlugins()` SIGKILLs every process
 * the client started (plugins and the tools they run) the way a runtime's timeout kills a plugin,
 * while the client lives on to report the failure; `kill()` takes the client's whole process group.
 */
export function clientAsync(
  net: Net,
  verb: "add" | "del" | "check",
  containerId: string,
  netnsPath: string,
  extraEnv: Record<string, string> = {},
) {
  const vars = clientVars({ ...net.client, containerId, ifname: "eth0", capArgs: net.client.capArgs ?? {} });
  const { child, done } = startPlugin(net.sb, net.tool, { ...vars, ...extraEnv }, undefined, {
    args: [verb, NET, netnsPath],
    detached: true,
  });
  return {
    done,
    kill() {
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        // already gone
      }
    },
    killPlugins() {
      killDescendants(child.pid!);
    },
  };
}

function signal(pid: number, sig: NodeJS.Signals) {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** Pid -> parent pid of every process, from /proc. */
function parents(): Map<number, number> {
  const out = new Map<number, number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      out.set(Number(entry), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/**
 * SIGKILLs all descendants of `root` at once, not `root` itself. They are first frozen with
 * SIGSTOP until no new one appears, so none can start another process between the listing and
 * the kill (an orphan would escape to init and carry on).
 */
export function killDescendants(root: number) {
  const frozen = new Set<number>();
  for (let pass = 0; pass < 20; pass++) {
    const ppid = parents();
    const found: number[] = [];
    const walk = (pid: number) => {
      for (const [child, parent] of ppid) {
        if (parent !== pid) continue;
        found.push(child);
        walk(child);
      }
    };
    walk(root);
    const fresh = found.filter((p) => !frozen.has(p));
    if (fresh.length === 0) break;
    for (const p of fresh) {
      signal(p, "SIGSTOP");
      frozen.add(p);
    }
  }
  for (const p of frozen) signal(p, "SIGKILL");
}

/** The same, waited for. */
export const client = (
  net: Net,
  verb: "add" | "del" | "check",
  containerId: string,
  netnsPath: string,
  extraEnv: Record<string, string> = {},
) => clientAsync(net, verb, containerId, netnsPath, extraEnv).done;

/** Everything an attachment can leave in the node, normalised so two snapshots compare equal. */
export interface NodeState extends NodeSnapshot {
  reservations: string[];
}

/** Reservation files (address names) of `network` under `dataDir`. */
export function reservationFiles(dataDir: string, network = NET): string[] {
  const dir = join(dataDir, network);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => /^[0-9a-f.:]+$/i.test(f) && /[.:]/.test(f))
    .sort();
}

export function nodeState(net: Net): NodeState {
  return { ...nodeSnapshot(net.sb), reservations: reservationFiles(net.dataDir) };
}

/** Names of the container namespace's links (just "lo ..." once nothing is attached). */
export const containerLinks = (sb: Sandbox, ns: string) => nodeLinks(sb, ns);

/** mulberry32: a small deterministic generator, so a failing run can be replayed from its seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The seed of this run: TSCNI_SEED when set (to replay), else a fresh one; print it on failure. */
export function runSeed(): number {
  const fixed = process.env.TSCNI_SEED;
  return fixed ? Number(fixed) >>> 0 : (Date.now() ^ (process.pid << 16)) >>> 0;
}

/** TSCNI_LONG=1 selects the full counts of the long loops. */
export const LONG = process.env.TSCNI_LONG === "1";

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A node-side helper to delete a link, ignoring "not there". */
export const delLink = (_sb: Sandbox, ns: string, dev: string) =>
  sh(["ip", "-n", ns, "link", "del", dev], { allowFailure: true });
