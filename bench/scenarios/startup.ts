import { readFileSync } from "node:fs";
import { join } from "node:path";
import { alternate, pairOf, type Pair, type Sides } from "../lib/ab.ts";
import { BenchFailure, must, type Samples } from "./latency.ts";

/** Scenario 6a: a plugin's VERSION, run directly (no client): the price of starting the executable. */
export async function versionStartup(
  sides: Sides,
  iterations: number,
  plugin = "bridge",
): Promise<Pair<Samples & { rssKb: number[] }>> {
  const out = pairOf(() => ({ wall: [] as number[], cpu: [] as number[], rssKb: [] as number[] }));
  await alternate(sides, iterations, async (side, key) => {
    const run = await side.runPlugin(plugin, { CNI_COMMAND: "VERSION" }, '{"cniVersion":"1.0.0"}');
    if (run.code !== 0 || !run.stdout.includes("supportedVersions"))
      throw new BenchFailure(`${side.label}: ${plugin} VERSION: ${run.stdout}${run.stderr}`);
    out[key].wall.push(run.wallMs);
    out[key].cpu.push(run.cpuMs);
    out[key].rssKb.push(run.maxRssKb);
  });
  return out;
}

export interface Memory {
  /** Peak RSS (KiB) of each plugin process (with anything it spawned), per run. */
  perPlugin: Record<string, number[]>;
  /** Peak RSS of the largest single process of the whole ADD, libcni client included. */
  largestKb: number[];
}

/**
 * Scenario 6b: resident memory of one pod ADD. Each plugin runs behind the worker in wrapper mode,
 * which reads the plugin's peak RSS from wait4; our host-local stays in-process inside bridge.
 */
export async function addMemory(sides: Sides, iterations: number): Promise<Pair<Memory>> {
  const out = pairOf<Memory>(() => ({ perPlugin: {}, largestKb: [] }));
  const dirs = { ours: sides.ours.makeRssWrappers(), reference: sides.reference.makeRssWrappers() };
  await alternate(sides, iterations, async (side, key, i) => {
    const log = join(side.sandbox.tmp, `rss-${i}.log`);
    const opts = { cniPath: dirs[key], env: { TSCNI_BENCH_WRAP_REAL: side.bin, TSCNI_BENCH_WRAP_LOG: log } };
    const pod = side.newPod(8080);
    const add = must(await side.addPod(pod, opts), side, "ADD with RSS wrappers");
    out[key].largestKb.push(add.maxRssKb);
    for (const line of readFileSync(log, "utf8").trim().split("\n")) {
      const [name, command, kb] = line.split(" ");
      if (command !== "ADD" || !name) continue;
      out[key].perPlugin[name] ??= [];
      out[key].perPlugin[name].push(Number(kb));
    }
    must(await side.delPod(pod), side, "DEL after the RSS ADD");
  });
  return out;
}
