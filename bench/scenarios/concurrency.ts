import { alternate, pairOf, type Pair, type Sides } from "../lib/ab.ts";

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
  const out = pairOf<Burst>(() => ({ addWall: [], delWall: [], addErrors: 0, delErrors: 0, firstErrors: [], distinct: [], leftover: [] }));
  await alternate(sides, rounds, async (side, key) => {
    const r = out[key];
    const batch = Array.from({ length: pods }, (_, i) => side.newPod(40000 + i));
    let t0 = performance.now();
    const adds = await Promise.all(batch.map((pod) => side.addPod(pod)));
    r.addWall.push(performance.now() - t0);
    t0 = performance.now();
    const dels = await Promise.all(batch.map((pod) => side.delPod(pod)));
    r.delWall.push(performance.now() - t0);
    for (const [list, field] of [[adds, "addErrors"], [dels, "delErrors"]] as const) {
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
