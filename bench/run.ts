/**
 * `npm run bench [-- --quick] [--bin DIR] [--ref DIR] [--out FILE] [--no-datapath] [--no-overlay]`
 *
 * Runs the same pod network scenarios through the same libcni client against our plugins and the
 * reference Go plugins, alternating between them, and writes a markdown report (bench/results.md
 * for a full run; a file under the temp directory for --quick, unless --out says otherwise) which
 * it also prints. Must run as root: it creates network namespaces, and everything it creates lives
 * in them (or in a temp directory) and is removed at the end.
 */
import { spawnSync } from "node:child_process";
import { existsSync, statSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { REF_BIN, Sandbox } from "../test/helpers/sandbox.ts";
import type { Sides } from "./lib/ab.ts";
import { describeMachine } from "./lib/machine.ts";
import { renderReport, type Results } from "./lib/report.ts";
import { setUp, type Tools } from "./lib/setup.ts";
import { withOneCoreBusy } from "./lib/burner.ts";
import { Side } from "./lib/side.ts";
import { concurrentPods, lockWaits } from "./scenarios/concurrency.ts";
import { dataPath } from "./scenarios/datapath.ts";
import { crowdedBridge, delWithoutPorts, singlePod, warmUp } from "./scenarios/latency.ts";
import { spawnsPerPlugin } from "./scenarios/spawns.ts";
import { otherNetworks } from "./scenarios/other-networks.ts";
import { dnsNetwork } from "./scenarios/dns-network.ts";
import { overlayNetwork, type OverlaySettings } from "./scenarios/overlay.ts";
import { addMemory, versionStartup } from "./scenarios/startup.ts";

const HERE = import.meta.dirname;

const { values: args } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    bin: { type: "string" },
    ref: { type: "string", default: REF_BIN },
    out: { type: "string" },
    "no-datapath": { type: "boolean", default: false },
    "no-overlay": { type: "boolean", default: false },
  },
});

const FULL = {
  iterations: 20,
  crowd: 200,
  crowdIterations: 10,
  dnsCrowd: 100,
  burst: 50,
  burstRounds: 2,
  traceRuns: 3,
  version: 30,
  memory: 3,
  iperfRuns: 2,
  iperfSeconds: 3,
  overlay: {
    rounds: 10,
    sizes: [100, 1000],
    extraLeases: 3,
    convergeTimeoutS: 600,
    podIterations: 20,
    throughputRuns: 3,
    seconds: 3,
  },
};
const QUICK = {
  iterations: 5,
  crowd: 30,
  crowdIterations: 5,
  dnsCrowd: 20,
  burst: 50,
  burstRounds: 1,
  traceRuns: 1,
  version: 10,
  memory: 1,
  iperfRuns: 1,
  iperfSeconds: 1,
  overlay: {
    rounds: 3,
    sizes: [100],
    extraLeases: 2,
    convergeTimeoutS: 120,
    podIterations: 5,
    throughputRuns: 1,
    seconds: 1,
  },
};
const cfg: typeof QUICK & { overlay: OverlaySettings } = args.quick ? QUICK : FULL;

function log(msg: string) {
  process.stderr.write(`bench: ${msg}\n`);
}

/** bench/ipam-alloc.mjs (host-local allocation cost, issue 3) is included when it exists. */
function ipamAllocation(ours: string): string | undefined {
  const script = join(HERE, "ipam-alloc.mjs");
  if (!existsSync(script)) return undefined;
  log("host-local allocation cost (bench/ipam-alloc.mjs)");
  const r = spawnSync(process.execPath, [script], {
    encoding: "utf8",
    env: { ...process.env, TSCNI_BIN: ours, ...(args.quick ? { ITERATIONS: "100", PROCESS_ITERATIONS: "10" } : {}) },
    timeout: 600_000,
    stdio: ["ignore", "pipe", "inherit"],
  });
  return r.status === 0 ? r.stdout : `_bench/ipam-alloc.mjs failed (exit ${r.status ?? r.signal})._`;
}

/** Sizes of the executable each side runs as bridge (ours: the one multicall executable). */
const executableBytes = (t: Tools) => ({
  ours: statSync(join(t.ours, "bridge")).size,
  reference: statSync(join(t.reference, "bridge")).size,
});

/** A pause after a heavy scenario, so its after-effects (kernel work, page cache) do not land on the next one. */
const settle = () => sleep(1000);

async function main() {
  if (process.getuid?.() !== 0) throw new Error("the benchmark creates network namespaces: run it as root");
  const started = performance.now();
  const tools = setUp({ ours: args.bin, reference: resolve(args.ref!) });
  const machine = describeMachine(tools.ours, tools.reference);
  const sides: Sides = {
    ours: new Side("ours", tools.ours, tools.client, tools.worker),
    reference: new Side("reference", tools.reference, tools.client, tools.worker),
  };
  const baseline = new Sandbox("bchvet");
  const cleanup = () => {
    for (const side of Object.values(sides)) side.sandbox.cleanup();
    baseline.cleanup();
  };
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.on(sig, () => {
      log(`${sig}: removing the benchmark's namespaces`);
      cleanup();
      process.exit(130);
    });
  }
  try {
    log("warm-up (bridge and chains created on both sides)");
    await warmUp(sides);
    log(`1 · single pod ADD/DEL ×${cfg.iterations}`);
    const single = await singlePod(sides, cfg.iterations);
    log(`1 · single pod ADD/DEL with the other core busy ×${cfg.iterations}`);
    const singleBusy = await withOneCoreBusy(() => singlePod(sides, cfg.iterations));
    await settle();
    log(`4 · DEL without port mappings ×${cfg.iterations}`);
    const noPorts = await delWithoutPorts(sides, cfg.iterations);
    log(`4/5 · processes per plugin (strace) ×${cfg.traceRuns}`);
    const activity = await spawnsPerPlugin(sides, cfg.traceRuns);
    await settle();
    log(`6 · VERSION ×${cfg.version}, memory of one ADD ×${cfg.memory}`);
    const version = await versionStartup(sides, cfg.version);
    const memory = await addMemory(sides, cfg.memory);
    await settle();
    log(`3 · ${cfg.burst} concurrent ADDs then DELs ×${cfg.burstRounds}`);
    const burst = await concurrentPods(sides, cfg.burst, cfg.burstRounds);
    await settle();
    log(`3 · lock waits: ${cfg.burst} concurrent ADDs then DELs under strace`);
    const locks = await lockWaits(sides, cfg.burst);
    await settle();
    let paths: Awaited<ReturnType<typeof dataPath>> | undefined;
    if (!args["no-datapath"]) {
      log(`7 · data path (iperf3 ${cfg.iperfSeconds} s ×${cfg.iperfRuns})`);
      paths = await dataPath(sides, baseline, cfg.iperfRuns, cfg.iperfSeconds);
      await settle();
    }
    log(`8 · macvlan and ptp pods ×${cfg.iterations}`);
    const others = await otherNetworks(sides, cfg.iterations);
    await settle();
    log(
      `9 · bridge + dnsname pods ×${cfg.iterations}, name lookups ×${cfg.iterations * 4}, then with ${cfg.dnsCrowd} pods on the network`,
    );
    const dns = await dnsNetwork(sides, cfg.iterations, cfg.dnsCrowd);
    await settle();
    let overlay: Awaited<ReturnType<typeof overlayNetwork>> | undefined;
    if (!args["no-overlay"]) {
      const o = cfg.overlay;
      log(
        `10 · overlay: convergence on 3 nodes ×${o.rounds}, ${o.sizes.join(" and ")} simulated peers, ` +
          `flannel vs bridge pods ×${o.podIterations}, throughput across nodes ×${o.throughputRuns}`,
      );
      overlay = await overlayNetwork(tools, o);
      await settle();
    }
    log(`2 · ${cfg.crowd - 1} pods on the bridge, then ADD/DEL ×${cfg.crowdIterations}`);
    const crowded = await crowdedBridge(sides, cfg.crowd, cfg.crowdIterations);
    const ipamAlloc = ipamAllocation(tools.ours);

    const results: Results = {
      mode: args.quick ? "quick" : "full",
      date: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
      durationS: (performance.now() - started) / 1000,
      machine,
      loadAtEnd: loadavg()
        .map((x) => x.toFixed(2))
        .join(" "),
      settings: {
        iterations: cfg.iterations,
        crowd: cfg.crowd,
        crowdIterations: cfg.crowdIterations,
        burst: cfg.burst,
        burstRounds: cfg.burstRounds,
        traceRuns: cfg.traceRuns,
      },
      single,
      singleBusy,
      executableBytes: executableBytes(tools),
      noPorts,
      activity,
      version,
      memory,
      burst,
      locks,
      crowded,
      others,
      dns,
      dataPath: paths,
      overlay,
      ipamAlloc,
    };
    const md = renderReport(results);
    const out = resolve(args.out ?? (args.quick ? join(tmpdir(), "tscni-bench-quick.md") : join(HERE, "results.md")));
    writeFileSync(out, md);
    process.stdout.write(md);
    log(`report written to ${out}`);
  } finally {
    log("cleaning up");
    await Promise.all(Object.values(sides).map((s) => s.close()));
    baseline.cleanup();
  }
}

main().catch((e) => {
  process.stderr.write(`bench: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
