import { alternate, pairOf, pool, type Pair, type Sides } from "../lib/ab.ts";
import type { PodRun, Side, Timing } from "../lib/side.ts";

/** Wall and CPU samples (ms) of one operation. */
export interface Samples {
  wall: number[];
  cpu: number[];
}
export const samples = (): Samples => ({ wall: [], cpu: [] });

export class BenchFailure extends Error {}

/** A failed pod operation outside the concurrency scenario (where errors are counted) stops the run. */
export function must(run: PodRun, side: Side, what: string): PodRun {
  if (!run.ok) throw new BenchFailure(`${side.label}: ${what}: ${run.error}`);
  return run;
}

export function record(s: Samples, run: Timing) {
  s.wall.push(run.wallMs);
  s.cpu.push(run.cpuMs);
}

/** Creates the bridge and the top-level chains on both sides, so later ADDs find a steady state. */
export async function warmUp(sides: Sides, pods = 2) {
  await alternate(sides, pods, async (side) => {
    const pod = side.newPod(8080);
    must(await side.addPod(pod), side, "warm-up ADD");
    must(await side.delPod(pod), side, "warm-up DEL");
  });
}

export interface SinglePod {
  add: Samples;
  del: Samples;
  cycle: Samples;
  /** The same operations split by network: where the pod's time goes. */
  byNetwork: Record<"loopback ADD" | "pod network ADD" | "pod network DEL" | "loopback DEL", Samples>;
}

/** Scenario 1: ADD of one pod (one TCP port published), its DEL, and the two together, on a bridge with no other pod. */
export async function singlePod(sides: Sides, iterations: number): Promise<Pair<SinglePod>> {
  const out = pairOf<SinglePod>(() => ({
    add: samples(),
    del: samples(),
    cycle: samples(),
    byNetwork: {
      "loopback ADD": samples(),
      "pod network ADD": samples(),
      "pod network DEL": samples(),
      "loopback DEL": samples(),
    },
  }));
  await alternate(sides, iterations, async (side, key) => {
    const pod = side.newPod(8080);
    const add = must(await side.addPod(pod), side, "ADD");
    const del = must(await side.delPod(pod), side, "DEL");
    record(out[key].add, add);
    record(out[key].del, del);
    record(out[key].cycle, { ...add, wallMs: add.wallMs + del.wallMs, cpuMs: add.cpuMs + del.cpuMs });
    const split = out[key].byNetwork;
    record(split["loopback ADD"], add.parts!.loopback);
    record(split["pod network ADD"], add.parts!.network);
    record(split["pod network DEL"], del.parts!.network);
    record(split["loopback DEL"], del.parts!.loopback);
  });
  return out;
}

export interface Crowded {
  /** Pods already on the bridge when the crowded pod is added. */
  others: number;
  first: { add: Samples; del: Samples };
  crowded: { add: Samples; del: Samples };
}

/**
 * Scenario 2: ADD and DEL of a pod alone on the bridge, then again once `total - 1` other pods (each
 * with its own host port) are on it: how the cost grows with the pod count. Both measured back to
 * back so the machine's load drifts as little as possible between them. Expects an empty bridge;
 * the population is left in place (the side's cleanup removes it with the node namespace).
 */
export async function crowdedBridge(sides: Sides, total: number, iterations: number): Promise<Pair<Crowded>> {
  const others = total - 1;
  const out = pairOf<Crowded>(() => ({
    others,
    first: { add: samples(), del: samples() },
    crowded: { add: samples(), del: samples() },
  }));
  const measure = (which: "first" | "crowded") =>
    alternate(sides, iterations, async (side, key) => {
      const pod = side.newPod(8080);
      record(out[key][which].add, must(await side.addPod(pod), side, `ADD (${which})`));
      record(out[key][which].del, must(await side.delPod(pod), side, `DEL (${which})`));
    });
  await measure("first");
  await Promise.all(
    (["ours", "reference"] as const).map(async (key) => {
      const side = sides[key];
      const pods = Array.from({ length: others }, (_, i) => side.newPod(20000 + i));
      await pool(pods, 4, async (pod) => must(await side.addPod(pod), side, `populating pod ${pod.index}`));
    }),
  );
  await measure("crowded");
  return out;
}

/** Scenario 4 (timing part): DEL of a pod that publishes no port (portmap has nothing to undo). */
export async function delWithoutPorts(sides: Sides, iterations: number): Promise<Pair<Samples>> {
  const out = pairOf(samples);
  await alternate(sides, iterations, async (side, key) => {
    const pod = side.newPod();
    must(await side.addPod(pod), side, "ADD without ports");
    record(out[key], must(await side.delPod(pod), side, "DEL without ports"));
  });
  return out;
}
