import { KernelError } from "./errors.ts";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { checkBatchWord, run } from "./exec.ts";
import { NO_SETNS, withNetns } from "./setns.ts";

/**
 * Sysctls and link settings of a container namespace, each phase in one process entered with
 * `nsenter --net`: /proc/sys/net shows the namespace of the process that opens it, so sysctls must
 * be read and written from inside. A phase is a constant `sh` script that handles the sysctls and
 * then execs `ip` for the link; every path, value and interface name reaches it as a positional
 * parameter (and ip commands as `ip -batch` input), never as shell text. procps `sysctl -w` is not
 * used because it exits 0 when the kernel refuses a value at close time (seen with a read-only
 * global key inside a netns).
 *
 * Sysctl paths are relative to /proc/sys, slash-separated, and must start with "net/" (callers
 * validate the user's key; this re-checks so nothing can reach outside /proc/sys/net).
 */
const FAILED = "tscni-sysctl-failed:";

// $1 is the link to show afterwards ("" for none); then one NUL-terminated record per path:
// "v<value>", or "x" when the file exists but cannot be opened for reading (write-only keys such
// as net/ipv4/route/flush). A missing file stops the script. The builtin `read` cannot replace
// cat: it reads byte by byte and integer sysctls answer EOF to any read at a non-zero offset.
const SNAPSHOT_SCRIPT = `dev=$1; shift
for f do
  [ -e "/proc/sys/$f" ] || { printf '${FAILED}%s\\n' "$f" >&2; exit 3; }
  if v=$(cat -- "/proc/sys/$f" 2>/dev/null); then printf 'v%s\\0' "$v"; else printf 'x\\0'; fi
done
[ -z "$dev" ] || exec ip -j -d link show dev "$dev"`;

// $1 is 1 when ip commands follow on stdin; then path/value pairs, written in order, stopping at
// the first refusal (naming the path) before any link change.
const APPLY_SCRIPT = `links=$1; shift
while [ $# -gt 1 ]; do
  printf '%s' "$2" > "/proc/sys/$1" || { printf '${FAILED}%s\\n' "$1" >&2; exit 3; }
  shift 2
done
[ "$links" = 1 ] || exit 0
exec ip -batch -`;

/** A sysctl the kernel refused or that does not exist; `path` is the slash form under /proc/sys. */
export class SysctlError extends KernelError {
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super("failed", `sysctl ${path}: ${reason}`, { details: path });
  }
}

/** An ip batch line the kernel refused; `line` is its 0-based index in the batch. */
export class IpLineError extends KernelError {
  constructor(
    readonly line: number,
    readonly reason: string,
  ) {
    super("failed", `ip: ${reason}`, { line, details: `batch line ${line + 1}` });
  }
}

export interface Snapshot {
  /** Current value per path; undefined for a write-only key. */
  sysctls: (string | undefined)[];
  /** `ip -j -d link show dev` output for the requested link; undefined when it does not exist. */
  link?: Record<string, unknown>;
}

/** Reads sysctls and, optionally, one link; throws a SysctlError for a key that does not exist. */
export function snapshotNetns(netns: string, paths: readonly string[], dev = ""): Snapshot {
  if (paths.length === 0 && dev === "") return { sysctls: [] };
  paths.forEach(checkPath);
  if (dev) checkBatchWord(dev, "ip");
  const inProcess = withNetns(netns, () => snapshotHere(paths, dev));
  if (inProcess !== NO_SETNS) return inProcess;
  const r = run(["sh", "-c", SNAPSHOT_SCRIPT, "sh", dev, ...paths], { netns, allowFailure: true });
  const records = r.stdout.split("\0");
  if (r.status !== 0 && (r.stderr.includes(FAILED) || records.length <= paths.length))
    throw sysctlFailure("read", r.stderr, r.status);
  const sysctls = records.slice(0, paths.length).map((rec) => (rec.startsWith("v") ? rec.slice(1) : undefined));
  if (!dev || r.status !== 0) return { sysctls };
  const json = records.slice(paths.length).join("").trim();
  return { sysctls, link: (JSON.parse(json || "[]") as Record<string, unknown>[])[0] };
}

/** Writes sysctls in order, then runs the ip batch; throws SysctlError or IpLineError. */
export function applyNetns(
  netns: string,
  sysctls: readonly (readonly [string, string])[],
  ipLines: readonly string[][] = [],
) {
  if (sysctls.length === 0 && ipLines.length === 0) return;
  for (const [path, value] of sysctls) {
    checkPath(path);
    if (value.includes("\0")) throw new KernelError("refused", `refusing sysctl value for ${path}`);
  }
  for (const l of ipLines) for (const w of l) checkBatchWord(w, "ip");
  const input = ipLines.map((l) => l.join(" ")).join("\n") + (ipLines.length ? "\n" : "");
  if (withNetns(netns, () => applyHere(sysctls, input)) !== NO_SETNS) return;
  const r = run(["sh", "-c", APPLY_SCRIPT, "sh", ipLines.length ? "1" : "0", ...sysctls.flat()], {
    netns,
    input,
    allowFailure: true,
  });
  if (r.status === 0) return;
  if (r.stderr.includes(FAILED)) throw sysctlFailure("set", r.stderr, r.status);
  const n = /Command failed -:(\d+)/.exec(r.stderr);
  const reason = r.stderr.replace(/Command failed -:\d+/, "").trim() || `exit status ${r.status}`;
  throw new IpLineError(n ? Number(n[1]) - 1 : 0, reason);
}

// The same two phases in-process, with this thread inside the container's namespace (setns): the
// sysctls are plain file reads and writes there, and only ip is spawned.

function snapshotHere(paths: readonly string[], dev: string): Snapshot {
  const sysctls = paths.map((path) => {
    const file = `/proc/sys/${path}`;
    if (!existsSync(file)) throw new SysctlError(path, "no such key in the container's network namespace");
    try {
      return readFileSync(file, "utf8").replace(/\n$/, "");
    } catch {
      return undefined; // write-only keys such as net/ipv4/route/flush
    }
  });
  if (!dev) return { sysctls };
  const r = run(["ip", "-j", "-d", "link", "show", "dev", dev], { allowFailure: true });
  return {
    sysctls,
    link: r.status === 0 ? (JSON.parse(r.stdout.trim() || "[]") as Record<string, unknown>[])[0] : undefined,
  };
}

// The kernel's refusals in the words a shell (and the sh path above) would report them.
const ERRNO_TEXT: Record<string, string> = {
  ENOENT: "no such key in the container's network namespace",
  EACCES: "Permission denied",
  EPERM: "Operation not permitted",
  EINVAL: "Invalid argument",
  ERANGE: "Numerical result out of range",
};

function applyHere(sysctls: readonly (readonly [string, string])[], input: string) {
  for (const [path, value] of sysctls) {
    try {
      writeFileSync(`/proc/sys/${path}`, value);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      throw new SysctlError(path, ERRNO_TEXT[err.code ?? ""] ?? err.message);
    }
  }
  if (input === "") return;
  const r = run(["ip", "-batch", "-"], { input, allowFailure: true });
  if (r.status === 0) return;
  const n = /Command failed -:(\d+)/.exec(r.stderr);
  const reason = r.stderr.replace(/Command failed -:\d+/, "").trim() || `exit status ${r.status}`;
  throw new IpLineError(n ? Number(n[1]) - 1 : 0, reason);
}

function checkPath(path: string) {
  const parts = path.split("/");
  if (
    parts[0] !== "net" ||
    parts.length < 2 ||
    parts.some((p) => p === "" || p === "." || p === "..") ||
    path.includes("\0")
  ) {
    throw new KernelError("refused", `refusing sysctl path ${JSON.stringify(path)}`);
  }
}

function sysctlFailure(verb: string, stderr: string, status: number): KernelError {
  const marker = stderr.split("\n").find((l) => l.startsWith(FAILED));
  const path = marker ? marker.slice(FAILED.length) : "";
  if (!path)
    return new KernelError(
      "failed",
      `failed to ${verb} sysctls in the container namespace: ${stderr.trim() || `exit status ${status}`}`,
    );
  // dash reports "sh: 1: cannot create /proc/sys/...: Permission denied"; keep only the reason.
  const reason = stderr
    .split("\n")
    .filter((l) => l && !l.startsWith(FAILED))
    .map((l) => l.replace(/^.*?:\s*(cannot create [^:]*:\s*)?/, "").replace(/^printf:\s*/, ""))
    .join("; ");
  return new SysctlError(
    path,
    verb === "read" ? "no such key in the container's network namespace" : reason || "refused by the kernel",
  );
}
