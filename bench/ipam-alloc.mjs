// Allocation cost of host-local as the store fills up: an empty /24, a /16 holding 10,000
// reservations, and a /64; printed as medians and as ratios to the empty /24.
//
//   node_modules/.bin/bun bench/ipam-alloc.mjs      (re-executes itself under bun when started with node)
//
// Two measurements per scenario:
// - in-process: the plugin's ADD then DEL on one attachment, as bridge runs it in-process. The store
//   keeps its size, so every iteration sees the same fill. Runs under bun, so the lock is the same
//   flock(2) through bun:ffi that the compiled binary uses.
// - end to end: the compiled binary ($TSCNI_BIN or dist/bin), one process per ADD and per DEL,
//   next to the reference Go plugin on an identical store (its ADD scans every reservation).
// The 10,000 reservations are written the way the reference writes them; the first call of ours
// after that rebuilds our index once, and that one-off cost is printed separately.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");

if (!process.versions.bun) {
  const r = spawnSync(
    join(root, "node_modules", ".bin", "bun"),
    [fileURLToPath(import.meta.url), ...process.argv.slice(2)],
    { stdio: "inherit" },
  );
  process.exit(r.status ?? 1);
}

const BIN = resolve(process.env.TSCNI_BIN ?? join(root, "dist", "bin"));
const REF = "/usr/lib/cni/host-local";
const IN_PROCESS_ITERATIONS = Number(process.env.ITERATIONS ?? 300);
const PROCESS_ITERATIONS = Number(process.env.PROCESS_ITERATIONS ?? 25);
const FILL = 10_000;

const { default: hostLocal } = await import("../plugins/host-local/index.ts");

const work = mkdtempSync(join(tmpdir(), "tscni-bench-ipam-"));
const netns = `hostlocal-bench-${process.pid}`;
spawnSync("ip", ["netns", "add", netns]);
const netnsPath = `/var/run/netns/${netns}`;

const scenarios = [
  { name: "empty /24", subnet: "10.60.0.0/24", fill: 0 },
  { name: `/16 with ${FILL} reservations`, subnet: "10.61.0.0/16", fill: FILL },
  { name: "/64", subnet: "fd00:64::/64", fill: 0 },
];

function config(dataDir, network, subnet) {
  return {
    cniVersion: "1.0.0",
    name: network,
    type: "host-local",
    ipam: { type: "host-local", dataDir, ranges: [[{ subnet }]] },
  };
}

/** Writes `count` reservations the way the reference does, from .0.2 upwards, and its last_reserved_ip. */
function prefill(dir, count) {
  mkdirSync(dir, { recursive: true });
  let last = "";
  for (let i = 0; i < count; i++) {
    const n = i + 2;
    last = `10.61.${n >> 8}.${n & 255}`;
    writeFileSync(join(dir, last), `fill-${i}\r\neth0`);
  }
  if (last) writeFileSync(join(dir, "last_reserved_ip.0"), last);
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const p90 = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.9)];

function request(command, raw, id) {
  const env = { command, containerId: id, netns: netnsPath, ifname: "eth0", args: "", path: [BIN] };
  return {
    ...env,
    stdin: Buffer.from(JSON.stringify(raw)),
    version: raw.cniVersion,
    netnsState: "ok",
    config: hostLocal.parseConfig(raw, env),
  };
}

/** Times our first call on a store written by someone else: it rebuilds our index once. */
async function firstTouch(raw) {
  const t0 = performance.now();
  await hostLocal.add(request("ADD", raw, "warm"));
  const ms = performance.now() - t0;
  await hostLocal.del(request("DEL", raw, "warm"));
  return ms;
}

function processRun(bin, command, raw, id) {
  const t = performance.now();
  const r = spawnSync(bin, [], {
    input: JSON.stringify(raw),
    env: {
      PATH: process.env.PATH,
      CNI_COMMAND: command,
      CNI_CONTAINERID: id,
      CNI_NETNS: netnsPath,
      CNI_IFNAME: "eth0",
      CNI_PATH: BIN,
    },
    encoding: "utf8",
  });
  const ms = performance.now() - t;
  if (r.status !== 0) throw new Error(`${bin} ${command}: ${r.stdout}${r.stderr}`);
  return ms;
}

const rows = scenarios.map((s, i) => ({ ...s, net: `bench${i}`, inproc: [], ours: [], ref: [] }));
try {
  for (const r of rows) {
    prefill(join(work, "ours", r.net), r.fill);
    prefill(join(work, "ref", r.net), r.fill);
    r.ourConfig = config(join(work, "ours"), r.net, r.subnet);
    r.refConfig = config(join(work, "ref"), r.net, r.subnet);
    r.firstTouch = await firstTouch(r.ourConfig);
  }
  // Scenarios take turns within each iteration, so a busy moment on the machine hits them alike.
  for (let i = 0; i < IN_PROCESS_ITERATIONS + 20; i++) {
    for (const r of rows) {
      const add = request("ADD", r.ourConfig, "bench");
      const t = performance.now();
      await hostLocal.add(add);
      if (i >= 20) r.inproc.push(performance.now() - t); // the first rounds warm the JIT up
      await hostLocal.del(request("DEL", r.ourConfig, "bench"));
    }
  }
  for (let i = 0; i < PROCESS_ITERATIONS; i++) {
    for (const r of rows) {
      r.ours.push(processRun(join(BIN, "host-local"), "ADD", r.ourConfig, "e2e"));
      processRun(join(BIN, "host-local"), "DEL", r.ourConfig, "e2e");
      r.ref.push(processRun(REF, "ADD", r.refConfig, "e2e"));
      processRun(REF, "DEL", r.refConfig, "e2e");
    }
  }
} finally {
  spawnSync("ip", ["netns", "del", netns]);
  rmSync(work, { recursive: true, force: true });
}
for (const r of rows) {
  r.inproc = { median: median(r.inproc), p90: p90(r.inproc), firstTouch: r.firstTouch };
  r.e2eOurs = median(r.ours);
  r.e2eRef = median(r.ref);
}

const base = rows[0];
const f = (x) => x.toFixed(2).padStart(7);
console.log(
  `host-local allocation cost (bun ${process.versions.bun}; in-process: median of ${IN_PROCESS_ITERATIONS} ADDs, end to end: median of ${PROCESS_ITERATIONS} ADD processes; load average ${loadavg()
    .map((x) => x.toFixed(2))
    .join(" ")})\n`,
);
console.log(
  "scenario                        in-process ms   p90   ratio | ours e2e ms  ratio | reference e2e ms  ratio",
);
for (const r of rows) {
  console.log(
    `${r.name.padEnd(30)} ${f(r.inproc.median)} ${f(r.inproc.p90)} ${f(r.inproc.median / base.inproc.median)}x | ${f(r.e2eOurs)} ${f(r.e2eOurs / base.e2eOurs)}x | ${f(r.e2eRef)} ${f(r.e2eRef / base.e2eRef)}x`,
  );
}
const filled = rows[1];
console.log(
  `\none-off index rebuild on first touch of the store holding ${FILL} reference-written reservations: ${filled.inproc.firstTouch.toFixed(1)} ms`,
);
const worst = Math.max(...rows.map((r) => r.inproc.median / base.inproc.median));
console.log(`worst in-process ratio to the empty /24: ${worst.toFixed(2)}x (target: within 2x)`);
