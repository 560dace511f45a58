import { readFileSync } from "node:fs";
import { join } from "node:path";
import { alternate, pairOf, type Pair, type Sides } from "../lib/ab.ts";
import { FLOCK_STRACE_ARGS, flockMs } from "../lib/strace.ts";

export interface Burst {
  addWall: number[];
  delWall: number[];
  /** Failed pod operations, all rounds together (ADD and DEL). */
  addErrors: number;
  delErrors: number;
  firstErrors: string[];
  /** Distinct pod addresses per round (the lowest round is reported). */
  distinct: number[];
  /** Addresses host-local still held after the DELs, per round. */
  leftover: number[];
}

/**
 * Scenario 3: `pods` ADDs started at once, then their DELs at once, as a node does when a
 * deployment scales up and down. Wall time is from the first start to the last exit.
 */
export async function concurrentPods(sides: Sides, pods: number, rounds: number): Promise<Pair<Burst>> {
  const out = pairOf<Burst>(() => ({
    addWall: [],
    delWall: [],
    addErrors: 0,
    delErrors: 0,
    firstErrors: [],
    distinct: [],
    leftover: [],
  }));
  await alternate(sides, rounds, async (side, key) => {
    const r = out[key];
    const batch = Array.from({ length: pods }, (_, i) => side.newPod(40000 + i));
    let t0 = performance.now();
    const adds = await Promise.all(batch.map((pod) => side.addPod(pod)));
    r.addWall.push(performance.now() - t0);
    t0 = performance.now();
    const dels = await Promise.all(batch.map((pod) => side.delPod(pod)));
    r.delWall.push(performance.now() - t0);
    for (const [list, field] of [
      [adds, "addErrors"],
      [dels, "delErrors"],
    ] as const) {
      for (const run of list) {
        if (run.ok) continue;
        r[field]++;
        if (r.firstErrors.length < 3) r.firstErrors.push(run.error ?? "unknown");
      }
    }
    r.distinct.push(new Set(adds.filter((a) => a.ok && a.ip).map((a) => a.ip)).size);
    r.leftover.push(side.reservedAddresses().length);
  });
  return out;
}

export interface LockWaits {
  /** Per pod, ms inside flock(2) (host-local's store lock) during its pod-network ADD / DEL. */
  add: number[];
  del: number[];
  errors: number;
}

/**
 * Scenario 3, lock part: a separate burst with each pod network ADD (then DEL) under
 * `strace -e trace=flock -T`, to see how long pods queue for host-local's store lock. strace slows
 * every process, so the figures are for comparing the sides, not absolute.
 */
export async function lockWaits(sides: Sides, pods: number): Promise<Pair<LockWaits>> {
  const out = pairOf<LockWaits>(() => ({ add: [], del: [], errors: 0 }));
  await alternate(sides, 1, async (side, key) => {
    const batch = Array.from({ length: pods }, (_, i) => side.newPod(41000 + i));
    for (const verb of ["add", "del"] as const) {
      const runs = await Promise.all(
        batch.map(async (pod) => {
          const file = join(side.sandbox.tmp, `flock-${pod.index}-${verb}.log`);
          const run = await side.runClient(verb, side.podConf, pod, { prefix: [...FLOCK_STRACE_ARGS, "-o", file] });
          return run.code === 0 ? flockMs(readFileSync(file, "utf8")) : undefined;
        }),
      );
      for (const ms of runs) {
        if (ms === undefined) out[key].errors++;
        else out[key][verb].push(ms);
      }
    }
  });
  return out;
}
