import { alternate, pairOf, type Pair, type Sides } from "../lib/ab.ts";
import { OTHER_NETWORKS, type OtherNetwork } from "../lib/side.ts";
import { must, type Samples } from "./latency.ts";
import { traced } from "./spawns.ts";

/** One network kind's pod operations on one side. */
export interface NetworkPods {
  add: Samples;
  del: Samples;
  /** Processes the plugins spawned in one traced ADD and one traced DEL (both networks of the pod). */
  spawnsAdd: number;
  spawnsDel: number;
}

export interface OtherNetworks {
  measured: OtherNetwork[];
  /** Kinds left out, with why (a side without the plugin). */
  skipped: string[];
  pods: Pair<Partial<Record<OtherNetwork, NetworkPods>>>;
}

const empty = (): NetworkPods => ({
  add: { wall: [], cpu: [] },
  del: { wall: [], cpu: [] },
  spawnsAdd: 0,
  spawnsDel: 0,
});

/**
 * Scenario 8: ADD and DEL of a macvlan pod and of a ptp pod (each after the loopback network, as
 * for the bridge pods), alternating sides, then one traced ADD and DEL each for the processes
 * spawned per call. A kind runs only when both sides have its plugin.
 */
export async function otherNetworks(sides: Sides, iterations: number): Promise<OtherNetworks> {
  const out: OtherNetworks = { measured: [], skipped: [], pods: pairOf(() => ({})) };
  for (const kind of OTHER_NETWORKS) {
    const missing = (["ours", "reference"] as const).filter((k) => !sides[k].has(kind));
    if (missing.length > 0) {
      out.skipped.push(`${kind} (not in ${missing.join(" and ")})`);
      continue;
    }
    out.measured.push(kind);
    const per = { ours: empty(), reference: empty() };
    await alternate(sides, iterations, async (side, key) => {
      const pod = side.newPod();
      const add = must(await side.addPod(pod, {}, side.otherConfs[kind]), side, `${kind} ADD`);
      const del = must(await side.delPod(pod, {}, side.otherConfs[kind]), side, `${kind} DEL`);
      per[key].add.wall.push(add.wallMs);
      per[key].add.cpu.push(add.cpuMs);
      per[key].del.wall.push(del.wallMs);
      per[key].del.cpu.push(del.cpuMs);
    });
    for (const key of ["ours", "reference"] as const) {
      const side = sides[key];
      const pod = side.newPod();
      const count = (procs: Awaited<ReturnType<typeof traced>>) => procs.reduce((n, p) => n + p.spawned.length, 0);
      per[key].spawnsAdd = count(await traced(side, "add", pod, side.otherConfs[kind]));
      per[key].spawnsDel = count(await traced(side, "del", pod, side.otherConfs[kind]));
      out.pods[key][kind] = per[key];
    }
  }
  return out;
}
