import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";

/**
 * The one way the tests run a plugin, or a CNI client (which runs plugins), in a sandbox's node
 * namespace, waited for or not. The child gets the CNI variables it is given plus PATH and nothing
 * of the test process's environment, so a variable a plugin reads must be one the test chose.
 */

/**
 * How the node namespace is entered. "netns-exec" (`ip netns exec`, the default) also mounts a
 * /sys of the node's own, as a runtime's plugins see on a real node. "nsenter" switches only the
 * network namespace and leaves /sys showing the machine's links, as some runtimes leave it: a
 * plugin must work from netlink alone there.
 */
export type Entry = "netns-exec" | "nsenter";

export interface RunOptions {
  entry?: Entry;
  /** Runs before the plugin inside the namespace and execs it (strace). */
  wrapper?: string[];
  /** After the executable: plugins take none, clients a verb and its operands. */
  args?: string[];
  /** The sync form defaults to 60 s; the async one waits as long as it takes unless given one. */
  timeoutMs?: number;
  /**
   * Hands a timeout or a spawn error (EPIPE on an unread stdin) back in the result instead of
   * failing the test: for the callers that assert on exactly that.
   */
  returnErrors?: boolean;
  cwd?: string;
  maxBuffer?: number;
}

export interface AsyncOptions extends Omit<RunOptions, "maxBuffer"> {
  /** Its own process group, so kill(-pid) takes the run and every process it started. */
  detached?: boolean;
  /** stdin stays open for the caller to write and end (the config is then not sent). */
  openStdin?: boolean;
}

export interface PluginRun {
  /** The exit status, or 128 when the run ended by a signal (see `signal`). */
  code: number;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** stdout parsed, when it is JSON (a result or a CNI error object). */
  json: any;
  timedOut: boolean;
  error?: NodeJS.ErrnoException;
}

/** The node part of a Sandbox (kept structural so the sandbox can use this module). */
export interface Node {
  node: string;
}

export const DEFAULT_PATH = "/usr/sbin:/usr/bin:/sbin:/bin";

/** By absolute path: spawn looks a program up in the child's PATH, which may be a tripwire directory. */
function toolPath(name: string): string {
  for (const dir of [...(process.env.PATH ?? "").split(":"), ...DEFAULT_PATH.split(":")]) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return name;
}

function argvOf(sb: Node, binary: string, opts: RunOptions): string[] {
  // A `const program` line is where test/unit/debian-packages.test.ts finds programs chosen at run time.
  const program = opts.entry === "nsenter" ? "nsenter" : "ip";
  const enter =
    program === "nsenter"
      ? [toolPath(program), `--net=/var/run/netns/${sb.node}`]
      : [toolPath(program), "netns", "exec", sb.node];
  return [...enter, ...(opts.wrapper ?? []), binary, ...(opts.args ?? [])];
}

const envOf = (env: Record<string, string>) => ({ PATH: process.env.PATH ?? DEFAULT_PATH, ...env });

const stdinOf = (config: unknown): string | Buffer =>
  config === undefined ? "" : typeof config === "string" || Buffer.isBuffer(config) ? config : JSON.stringify(config);

const parseJson = (s: string): any => {
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
};

/** Runs `binary` in the node namespace with `env` and `config` (JSON unless a string or Buffer) on stdin. */
export function runPlugin(
  sb: Node,
  binary: string,
  env: Record<string, string>,
  config: unknown,
  opts: RunOptions = {},
): PluginRun {
  const argv = argvOf(sb, binary, opts);
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const r = spawnSync(argv[0]!, argv.slice(1), {
    input: stdinOf(config),
    encoding: "utf8",
    env: envOf(env),
    timeout: timeoutMs,
    killSignal: "SIGKILL",
    cwd: opts.cwd,
    maxBuffer: opts.maxBuffer,
  });
  const error = r.error as NodeJS.ErrnoException | undefined;
  if (error && !opts.returnErrors) throw new Error(`${argv.join(" ")}: ${error.message}`);
  const stdout = r.stdout ?? "";
  return {
    code: r.status ?? 128,
    signal: r.signal,
    stdout,
    stderr: r.stderr ?? "",
    json: parseJson(stdout),
    timedOut: error?.code === "ETIMEDOUT",
    ...(error ? { error } : {}),
  };
}

/** The same run without waiting; `child` is there for the tests that kill it or feed its stdin. */
export function startPlugin(
  sb: Node,
  binary: string,
  env: Record<string, string>,
  config: unknown,
  opts: AsyncOptions = {},
): { child: ChildProcess; done: Promise<PluginRun> } {
  const argv = argvOf(sb, binary, opts);
  const child = spawn(argv[0]!, argv.slice(1), {
    env: envOf(env),
    stdio: ["pipe", "pipe", "pipe"],
    cwd: opts.cwd,
    detached: opts.detached,
  });
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  // A plugin that stops reading at its bound, or is killed, closes the pipe: not the test's failure.
  child.stdin!.on("error", () => {});
  if (!opts.openStdin) child.stdin!.end(stdinOf(config));
  let timedOut = false;
  const timer =
    opts.timeoutMs === undefined
      ? undefined
      : setTimeout(() => {
          timedOut = true;
          child.kill("SIGKILL");
        }, opts.timeoutMs);
  const done = new Promise<PluginRun>((resolve, reject) => {
    child.on("error", (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (!opts.returnErrors) reject(new Error(`${argv.join(" ")}: ${error.message}`));
      else resolve({ code: 128, signal: null, stdout, stderr, json: undefined, timedOut, error });
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (timedOut && !opts.returnErrors)
        reject(new Error(`${argv.join(" ")}: no end within ${opts.timeoutMs} ms: ${stderr}${stdout}`));
      else resolve({ code: code ?? 128, signal, stdout, stderr, json: parseJson(stdout), timedOut });
    });
  });
  return { child, done };
}

export const runPluginAsync = (...args: Parameters<typeof startPlugin>): Promise<PluginRun> =>
  startPlugin(...args).done;
