import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { CniError, Code } from "../cni/errors.ts";

/**
 * The one place that spawns kernel tools. Every command is an argv array (never a shell string);
 * work inside a container namespace is prefixed with nsenter so any netns path works, named or
 * /proc/PID/ns/net. Counting goes through here so the benchmark can report spawns per verb.
 */
export interface RunOptions {
  /** Network namespace path to run in; omitted means the plugin's own (node) namespace. */
  netns?: string;
  input?: string;
  /** Return the failure instead of throwing (for "delete if present" commands). */
  allowFailure?: boolean;
  timeoutMs?: number;
}

export interface RunResult {
  status: number;
  stdout: string;
  stderr: string;
}

export let spawnCount = 0;

export function run(argv: readonly string[], opts: RunOptions = {}): RunResult {
  const full = opts.netns ? ["nsenter", `--net=${opts.netns}`, "--", ...argv] : [...argv];
  spawnCount++;
  const r = spawnSync(full[0]!, full.slice(1), {
    input: opts.input ?? "",
    encoding: "utf8",
    timeout: opts.timeoutMs ?? 60_000,
    maxBuffer: 64 * 1024 * 1024,
    env: { ...process.env, LC_ALL: "C" },
  });
  if (r.error && !((r.error as NodeJS.ErrnoException).code === "EPIPE" && r.status !== null)) {
    throw new CniError(Code.Internal, `failed to run ${argv[0]}: ${r.error.message}`, full.join(" "));
  }
  const res = { status: r.status ?? 128, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
  // nsenter's own failure means CNI_NETNS cannot be entered: never mistake it for the command's answer.
  if (opts.netns && res.status !== 0 && /^nsenter: /m.test(res.stderr)) {
    throw new CniError(Code.InvalidEnv, `CNI_NETNS: cannot enter ${opts.netns}: ${res.stderr.trim().replace(/^nsenter: /, "")}`);
  }
  if (res.status !== 0 && !opts.allowFailure) {
    throw new CniError(Code.Internal, `${argv[0]} failed: ${res.stderr.trim() || `exit status ${res.status}`}`, full.join(" "));
  }
  return res;
}

/** Runs several iproute2 commands in one process (`ip -batch -`), failing on the first error. */
export function ipBatch(lines: readonly string[][], opts: Omit<RunOptions, "input"> & { json?: boolean } = {}): RunResult {
  if (lines.length === 0) return { status: 0, stdout: "", stderr: "" };
  for (const l of lines) {
    for (const w of l) {
      // ip's batch parser splits on whitespace and treats quotes and '#' specially: refuse such words.
      if (w === "" || /[\s"'#\\]/.test(w)) throw new CniError(Code.InvalidConfig, `refusing unsafe ip argument ${JSON.stringify(w)}`);
    }
  }
  const argv = ["ip", ...(opts.json ? ["-j", "-d"] : []), "-batch", "-"];
  return run(argv, { ...opts, input: lines.map((l) => l.join(" ")).join("\n") + "\n" });
}

/** One `ip -j ...` query, parsed. */
export function ipJson<T = unknown>(args: readonly string[], opts: Omit<RunOptions, "input"> = {}): T {
  const r = run(["ip", "-j", ...args], opts);
  return (r.stdout.trim() === "" ? [] : JSON.parse(r.stdout)) as T;
}

/**
 * Sysctls are per namespace: /proc/sys/net shows the namespace of the process reading it. In our own
 * namespace we write the files directly (no spawn); for a container, sysctl runs inside it.
 */
export function sysctlWrite(values: Record<string, string>, opts: Omit<RunOptions, "input"> = {}) {
  const entries = Object.entries(values);
  if (entries.length === 0) return;
  for (const [k] of entries) {
    if (!/^net\.[A-Za-z0-9_.\-]+$/.test(k) || k.includes("..")) throw new CniError(Code.InvalidConfig, `refusing sysctl ${JSON.stringify(k)}`);
  }
  if (opts.netns) {
    run(["sysctl", "-q", "-w", ...entries.map(([k, v]) => `${k}=${v}`)], opts);
    return;
  }
  for (const [k, v] of entries) {
    const path = "/proc/sys/" + k.replaceAll(".", "/");
    try {
      if (readFileSync(path, "utf8").trim() !== v) writeFileSync(path, v);
    } catch (e) {
      throw new CniError(Code.Internal, `failed to set sysctl ${k}=${v}: ${(e as Error).message}`);
    }
  }
}
