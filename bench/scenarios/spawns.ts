import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { pairOf, type Pair, type Sides } from "../lib/ab.ts";
import { PLUGIN_NAMES, type Pod, type Side } from "../lib/side.ts";
import { parseTrace, STRACE_ARGS, type PluginProc } from "../lib/strace.ts";
import { BenchFailure } from "./latency.ts";

/** What one plugin did during one pod operation, as strace saw it. */
export interface PluginActivity {
  plugin: string;
  /** Processes it ran (directly or through a helper), e.g. ["iptables-restore", "nsenter→ip"]. */
  spawned: string[];
  /** Under strace (slower than real life; good for proportions, not for absolute figures). */
  lifetimeMs: number[];
  firstSpawnMs: number[];
  childrenMs: number[];
}

export type Operation = "ADD" | "DEL" | "DEL, no port mappings";
export type Activity = Record<Operation, PluginActivity[]>;

/**
 * Scenarios 4 and 5: every process each plugin spawns during a pod's ADD and DEL (with one port
 * published) and during the DEL of a pod without ports, counted by running the libcni client under
 * `strace -f` and attributing each exec to the nearest plugin above it in the process tree.
 */
export async function spawnsPerPlugin(sides: Sides, runs: number): Promise<Pair<Activity>> {
  const out = pairOf<Activity>(() => ({ ADD: [], DEL: [], "DEL, no port mappings": [] }));
  for (let i = 0; i < runs; i++) {
    for (const key of i % 2 === 0 ? (["ours", "reference"] as const) : (["reference", "ours"] as const)) {
      const side = sides[key];
      const withPort = side.newPod(8080);
      merge(out[key].ADD, await traced(side, "add", withPort), i === 0);
      merge(out[key].DEL, await traced(side, "del", withPort), i === 0);
      const noPort = side.newPod();
      const add = await side.addPod(noPort);
      if (!add.ok) throw new BenchFailure(`${side.label}: ADD without ports: ${add.error}`);
      merge(out[key]["DEL, no port mappings"], await traced(side, "del", noPort), i === 0);
    }
  }
  return out;
}

/** One pod operation (both networks, in the order Side.addPod/delPod use) under strace. */
export async function traced(side: Side, verb: "add" | "del", pod: Pod, network = side.podConf): Promise<PluginProc[]> {
  const confs = verb === "add" ? [side.loopbackConf, network] : [network, side.loopbackConf];
  const procs: PluginProc[] = [];
  for (const conf of confs) {
    const file = join(side.sandbox.tmp, `strace-${pod.index}-${verb}.log`);
    const run = await side.runClient(verb, conf, pod, { prefix: [...STRACE_ARGS, "-o", file] });
    if (run.code !== 0) throw new BenchFailure(`${side.label}: traced ${verb.toUpperCase()}: ${run.stderr.trim()}`);
    procs.push(...parseTrace(readFileSync(file, "utf8"), side.bin, PLUGIN_NAMES));
    rmSync(file, { force: true });
  }
  return procs;
}

/** Folds one run's plugin processes into the per-plugin record (spawn lists from the first run). */
function merge(into: PluginActivity[], procs: PluginProc[], first: boolean) {
  const seen = new Set<string>();
  for (const p of procs) {
    // A plugin run twice in one operation (none here) would be told apart by its position.
    let name = p.plugin;
    while (seen.has(name)) name += "'";
    seen.add(name);
    let a = into.find((x) => x.plugin === name);
    if (!a) {
      a = { plugin: name, spawned: [], lifetimeMs: [], firstSpawnMs: [], childrenMs: [] };
      into.push(a);
    }
    if (first) a.spawned = p.spawned;
    a.lifetimeMs.push(p.lifetimeMs);
    a.firstSpawnMs.push(p.firstSpawnMs);
    a.childrenMs.push(p.childrenMs);
  }
}
