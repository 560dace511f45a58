import { spawnSync } from "node:child_process";
import { KernelError } from "./errors.ts";
import { NO_SETNS, withNetns } from "./setns.ts";

/**
 * The one place that spawns kernel tools. Every command is an argv array (never a shell string);
 * work inside a container namespace runs there through setns (or nsenter), so any netns path works,
 * named or /proc/PID/ns/net.
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

export function run(argv: readonly string[], opts: RunOptions = {}): RunResult {
  const spawn = (cmd: readonly string[]) =>
    spawnSync(cmd[0]!, cmd.slice(1), {
      input: opts.input ?? "",
      encoding: "utf8",
      timeout: opts.timeoutMs ?? 60_000,
      maxBuffer: 64 * 1024 * 1024,
      env: { ...process.env, LC_ALL: "C" },
    });
  // In the compiled executable the child starts inside the container namespace directly (setns on
  // this thread around the spawn); elsewhere nsenter does it, one exec more.
  let r = opts.netns ? withNetns(opts.netns, () => spawn(argv)) : spawn(argv);
  const viaNsenter = r === NO_SETNS;
  const full = viaNsenter ? ["nsenter", `--net=${opts.netns}`, "--", ...argv] : argv;
  if (r === NO_SETNS) r = spawn(full);
  if (r.error && !((r.error as NodeJS.ErrnoException).code === "EPIPE" && r.status !== null)) {
    throw new KernelError("failed", `failed to run ${argv[0]}: ${r.error.message}`, { details: full.join(" ") });
  }
  const res = { status: r.status ?? 128, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
  // nsenter's own failure means CNI_NETNS cannot be entered: never mistake it for the command's answer.
  if (viaNsenter && res.status !== 0 && /^nsenter: /m.test(res.stderr)) {
    throw new KernelError(
      "netns",
      `CNI_NETNS: cannot enter ${opts.netns}: ${res.stderr.trim().replace(/^nsenter: /, "")}`,
    );
  }
  if (res.status !== 0 && !opts.allowFailure) {
    throw new KernelError("failed", `${argv[0]} failed: ${res.stderr.trim() || `exit status ${res.status}`}`, {
      details: full.join(" "),
    });
  }
  return res;
}

/** Runs several iproute2 commands in one process (`ip -batch -`), failing on the first error. */
export function ipBatch(
  lines: readonly string[][],
  opts: Omit<RunOptions, "input"> & { json?: boolean } = {},
): RunResult {
  if (lines.length === 0) return { status: 0, stdout: "", stderr: "" };
  for (const l of lines) for (const w of l) checkBatchWord(w, "ip");
  const argv = ["ip", ...(opts.json ? ["-j", "-d"] : []), "-batch", "-"];
  return run(argv, { ...opts, input: `${lines.map((l) => l.join(" ")).join("\n")}\n` });
}

/**
 * iproute2's batch parser splits lines on whitespace, treats quotes, '#' and '\\' specially and
 * stops at NUL: a word with any of them could change or cut the command, so it is refused.
 */
export function checkBatchWord(w: string, tool: "ip" | "bridge") {
  if (w === "" || /[\s"'#\\\0]/.test(w))
    throw new KernelError("refused", `refusing unsafe ${tool} argument ${JSON.stringify(w)}`);
}

/** One `ip -j ...` query, parsed. */
export function ipJson<T = unknown>(args: readonly string[], opts: Omit<RunOptions, "input"> = {}): T {
  const r = run(["ip", "-j", ...args], opts);
  return (r.stdout.trim() === "" ? [] : JSON.parse(r.stdout)) as T;
}
