import { spawn as spawnChild, spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { KernelError } from "./errors.ts";
import { withNetns } from "./setns.ts";

/**
 * The one place that spawns kernel tools. Every command is an argv array (never a shell string);
 * work inside a container namespace runs there through setns, so any netns path works, named or
 * /proc/PID/ns/net.
 */
export interface RunOptions {
  /** Network namespace path to run in; omitted means the plugin's own (node) namespace. */
  netns?: string;
  input?: string;
  /** Return the failure instead of throwing (for "delete if present" commands). */
  allowFailure?: boolean;
  timeoutMs?: number;
  /**
   * The SELinux context the program runs in (what it creates is labelled from it): written to this
   * thread's attr/exec around the spawn, as runtimes do. Fails where SELinux does not take it.
   */
  execLabel?: string;
}

export interface RunResult {
  status: number;
  stdout: string;
  stderr: string;
}

export function run(argv: readonly string[], opts: RunOptions = {}): RunResult {
  const spawn = (cmd: readonly string[]) =>
    spawnSync(cmd[0]!, cmd.slice(1), {
      input: opts.input ?? "",
      encoding: "utf8",
      timeout: opts.timeoutMs ?? 60_000,
      maxBuffer: 64 * 1024 * 1024,
      env: { ...process.env, LC_ALL: "C" },
    });
  // The child starts inside the container namespace directly: setns on this thread around the spawn.
  const inNetns = () => (opts.netns ? withNetns(opts.netns, () => spawn(argv)) : spawn(argv));
  const r = opts.execLabel === undefined ? inNetns() : withExecLabel(opts.execLabel, inNetns);
  if (r.error && !((r.error as NodeJS.ErrnoException).code === "EPIPE" && r.status !== null)) {
    throw new KernelError("failed", `failed to run ${argv[0]}: ${r.error.message}`, { argv });
  }
  const res = { status: r.status ?? 128, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
  if (res.status !== 0 && !opts.allowFailure) {
    const message = `${argv[0]} failed: ${res.stderr.trim() || `exit status ${res.status}`}`;
    throw new KernelError("failed", message, { argv, status: res.status, stderr: res.stderr });
  }
  return res;
}

/** The exec label of this thread, the one that spawns (attr/exec is per thread), set around `fn`. */
function withExecLabel<T>(label: string, fn: () => T): T {
  try {
    writeFileSync(EXEC_ATTR, label);
  } catch (e) {
    throw new KernelError("failed", `failed set socket label: ${(e as Error).message}`, { details: label });
  }
  try {
    return fn();
  } finally {
    try {
      writeFileSync(EXEC_ATTR, "");
    } catch {
      // Cleared by the next exec anyway: the kernel resets attr/exec on every execve.
    }
  }
}

const EXEC_ATTR = "/proc/thread-self/attr/exec";

/**
 * `run` for long-running callers (the node agent) that must not block their event loop. The child
 * is created inside `withNetns` (spawn forks before it returns), so the thread is back in its own
 * namespace before anything else runs; the rest is waited for asynchronously.
 */
export function runAsync(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const start = () =>
    spawnChild(argv[0]!, argv.slice(1), { env: { ...process.env, LC_ALL: "C" }, stdio: ["pipe", "pipe", "pipe"] });
  const child = opts.netns ? withNetns(opts.netns, start) : start();
  return new Promise((resolve, reject) => {
    let stdout = "";
    let stderr = "";
    // Our own timer, cleared on every ending: spawn's `timeout` keeps the event loop alive even
    // when the program could not be started.
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 60_000);
    child.stdout!.on("data", (d: Buffer) => {
      stdout += d;
    });
    child.stderr!.on("data", (d: Buffer) => {
      stderr += d;
    });
    child.stdin!.on("error", () => {}); // a tool that exits early closes its stdin: its status tells
    child.stdin!.end(opts.input ?? "");
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(new KernelError("failed", `failed to run ${argv[0]}: ${e.message}`, { argv }));
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const status = code ?? (signal ? 128 : 1);
      if (status !== 0 && !opts.allowFailure) {
        const message = `${argv[0]} failed: ${stderr.trim() || `exit status ${status}`}`;
        reject(new KernelError("failed", message, { argv, status, stderr }));
      } else resolve({ status, stdout, stderr });
    });
  });
}

/**
 * iproute2's batch parser (ip, bridge, tc) splits lines on whitespace, treats quotes, '#' and '\\' specially and
 * stops at NUL: a word with any of them could change or cut the command, so it is refused.
 */
export function checkBatchWord(w: string, tool: "ip" | "bridge" | "tc") {
  if (w === "" || /[\s"'#\\\0]/.test(w))
    throw new KernelError("refused", `refusing unsafe ${tool} argument ${JSON.stringify(w)}`);
}
