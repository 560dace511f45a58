import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync } from "node:fs";
import { join, resolve } from "node:path";
import { libcniClient } from "../../test/helpers/libcni.ts";
import { sh } from "../../test/helpers/sandbox.ts";

/**
 * Everything the benchmark needs on a fresh Debian 12 machine, each step skipped when done: the
 * packages (those listed for "bench" in test/setup.sh: the reference plugins, iperf3, strace, the Go
 * toolchain and libcni for the client),
 * our build, the libcni client and the benchmark's own worker.
 */

const ROOT = resolve(import.meta.dirname, "..", "..");

export interface Tools {
  ours: string;
  reference: string;
  client: string;
  worker: string;
}

export function setUp(opts: { ours?: string; reference: string }): Tools {
  step("packages", () =>
    sh(["bash", join(ROOT, "test", "setup.sh"), "--packages-for", "bench"], { timeoutMs: 900_000 }),
  );
  let ours = opts.ours ?? process.env.TSCNI_BIN;
  if (!ours) {
    // node_modules and a build newer than every source file (test/setup.sh --demo does just that).
    step("build", () => sh(["bash", join(ROOT, "test", "setup.sh"), "--demo"], { timeoutMs: 900_000 }));
    ours = join(ROOT, process.env.TSCNI_DIST ?? "dist", "bin");
  }
  ours = resolve(ours);
  for (const dir of [ours, opts.reference]) {
    if (!existsSync(join(dir, "bridge"))) throw new Error(`no bridge plugin in ${dir}`);
  }
  const client = step("libcni client", () => libcniClient());
  const worker = step("worker", buildWorker);
  return { ours, reference: opts.reference, client, worker };
}

function step<T>(what: string, fn: () => T): T {
  process.stderr.write(`bench: setting up ${what}\n`);
  return fn();
}

/** bench/worker is plain Go (standard library only): built once per source version. */
function buildWorker(): string {
  const src = join(ROOT, "bench", "worker", "main.go");
  const hash = createHash("sha256").update(readFileSync(src)).digest("hex").slice(0, 16);
  const out = `/tmp/tscni-bench-worker/${hash}/bench-worker`;
  if (existsSync(out)) return out;
  mkdirSync(join(out, ".."), { recursive: true });
  const tmp = `${out}.tmp.${process.pid}`;
  sh(["go", "build", "-trimpath", "-o", tmp, src], {
    timeoutMs: 600_000,
    env: {
      ...process.env,
      GO111MODULE: "off",
      GOPROXY: "off",
      CGO_ENABLED: "0",
      GOCACHE: process.env.GOCACHE ?? "/tmp/tscni-gocache",
    },
  });
  renameSync(tmp, out);
  return out;
}
