import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BIN, type Sandbox, sandboxed } from "../helpers/sandbox.ts";
import { LONG, runSeed } from "../helpers/reliability.ts";
import { FUZZ_PLUGINS, describe, makeCase, type FuzzCase, type FuzzPaths } from "../fuzz/harness.ts";
import type { CniError } from "../../lib/cni/errors.ts";
import { prepare, type Seen } from "../../lib/cni/skel.ts";
import { findPlugin } from "../../plugins/index.ts";

const inSandbox = sandboxed(test, "reliab");

/**
 * In-process fuzzing of everything a plugin does before it acts (environment, stdin JSON, name,
 * version, verb, CNI_NETNS, the plugin's own config parsing), thousands of mutated configs and
 * environments per plugin: each ends in a parsed request or a CniError, never another exception.
 * host-local, whose only effects are files in its dataDir (here the sandbox's), also runs its verb
 * in-process, ADD followed by DEL, and must leave no reservation behind.
 *
 * 1000 cases per plugin by default, 10000 with TSCNI_LONG=1; TSCNI_SEED=<n> replays a run.
 */
const PER_PLUGIN = LONG ? 10_000 : 1000;

function setUp(sb: Sandbox, netns: string): FuzzPaths {
  const resolv = join(sb.tmp, "resolv.conf");
  writeFileSync(resolv, "nameserver 10.63.0.53\nsearch fz.example\noptions ndots:3\n");
  const subnetEnv = join(sb.tmp, "subnet.env");
  writeFileSync(
    subnetEnv,
    "FLANNEL_NETWORK=10.63.0.0/16\nFLANNEL_SUBNET=10.63.12.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
  );
  const notADir = join(sb.tmp, "not-a-dir");
  writeFileSync(notADir, "");
  return {
    dataDir: join(sb.tmp, "ipam"),
    tuningDir: join(sb.tmp, "tuning"),
    resolv,
    subnetEnv,
    logFile: join(sb.tmp, "plugin.log"),
    netns,
    badNetns: ["/var/run/netns/tc-reliab-gone", notADir, "", "/proc/self/ns/net"],
    oddResolv: ["/dev/null", sb.tmp, join(sb.tmp, "missing.conf")],
    oddDataDirs: [notADir, join(sb.tmp, "ipam2")],
    bin: BIN,
  };
}

/** Reservation files under a dataDir, every network. */
function reservations(dataDir: string): string[] {
  if (!existsSync(dataDir) || !statSync(dataDir).isDirectory()) return [];
  const out: string[] = [];
  for (const net of readdirSync(dataDir)) {
    const dir = join(dataDir, net);
    if (net === ".tscni" || !statSync(dir).isDirectory()) continue;
    for (const f of readdirSync(dir)) if (/^[0-9a-f.:]+$/i.test(f) && /[.:]/.test(f)) out.push(`${net}/${f}`);
  }
  return out.sort();
}

/** By the class chain's names: lazily imported modules may be a second instance of errors.ts under tsx. */
function isCniError(e: unknown): e is CniError {
  for (let p = e instanceof Error ? Object.getPrototypeOf(e) : null; p; p = Object.getPrototypeOf(p)) {
    if (p.constructor?.name === "CniError") return typeof (e as CniError).code === "number";
  }
  return false;
}

async function runCase(c: FuzzCase): Promise<string | undefined> {
  const spec = findPlugin(c.plugin)!;
  const seen: Seen = { version: "1.1.0" };
  const input = Buffer.from(JSON.stringify(c.config));
  const expect = async (what: string, f: () => unknown) => {
    try {
      await f();
      return true;
    } catch (e) {
      if (isCniError(e)) {
        JSON.stringify(e.toJSON(seen.version));
        return false;
      }
      throw new Error(`${what} threw ${(e as Error)?.constructor?.name}: ${(e as Error)?.stack ?? e}`);
    }
  };
  try {
    let prepared: Awaited<ReturnType<typeof prepare>> | undefined;
    if (!(await expect("prepare", async () => (prepared = await prepare(spec, c.env, () => input, seen)))))
      return undefined;
    if (c.plugin !== "host-local" || !prepared) return undefined;
    const { impl, req } = prepared;
    const before = reservations((req.config as { dataDir: string }).dataDir);
    switch (req.command) {
      case "ADD": {
        let added = false;
        await expect("ADD", async () => {
          const { toWire } = await import("../../lib/cni/result.ts");
          JSON.stringify(toWire(await impl.add(req), req.version));
          added = true;
        });
        if (added && !(await expect("DEL", () => impl.del({ ...req, command: "DEL" }))))
          return "DEL after a successful ADD failed";
        break;
      }
      case "DEL":
        await expect("DEL", () => impl.del(req));
        break;
      case "CHECK":
        await expect("CHECK", () => impl.check(req));
        break;
      case "GC":
        await expect("GC", () => impl.gc?.(req));
        break;
      case "STATUS":
        await expect("STATUS", () => impl.status?.(req));
        break;
    }
    const after = reservations((req.config as { dataDir: string }).dataDir);
    if (JSON.stringify(after) !== JSON.stringify(before))
      return `reservations changed: ${JSON.stringify(before)} -> ${JSON.stringify(after)}`;
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

inSandbox(
  `in-process fuzz: ${PER_PLUGIN} mutated configs and environments per plugin end in a request or a CniError`,
  async (sb) => {
    const seed = runSeed();
    const ctr = sb.addContainer();
    const paths = setUp(sb, ctr.path);
    mkdirSync(paths.dataDir, { recursive: true });
    const failures: string[] = [];
    let accepted = 0;
    for (const plugin of FUZZ_PLUGINS) {
      for (let i = 0; i < PER_PLUGIN && failures.length < 5; i++) {
        let c: ReturnType<typeof makeCase>;
        try {
          c = makeCase(seed, plugin, i, paths);
        } catch (e) {
          // A broken generator is a test bug, but its seed must still be on record to replay it.
          throw new Error(
            `making case ${plugin} #${i} with seed ${seed} (TSCNI_SEED=${seed}): ${(e as Error).message}`,
          );
        }
        const problem = await runCase(c);
        if (problem) failures.push(`${problem}\n      ${describe(c, seed)}`);
        else accepted++;
      }
    }
    assert.equal(failures, [], `seed ${seed} (replay with TSCNI_SEED=${seed})`);
    assert.is(accepted, FUZZ_PLUGINS.length * PER_PLUGIN);
    console.log(`  in-process fuzz: seed ${seed}, ${accepted} cases`);
  },
);

test.run();
