import { CniError, Code } from "../cni/errors.ts";
import { run } from "./exec.ts";

/**
 * Sysctls of a container namespace, read and written from inside it: /proc/sys/net shows the
 * namespace of the process that opens it, so the work runs under `nsenter --net`. One `sh` per batch.
 * The scripts are constants; every path and value reaches them as a positional parameter, never as
 * shell text. procps `sysctl -w` is not used because it exits 0 when the kernel rejects a value at
 * close time (seen with a read-only global key inside a netns).
 *
 * Paths are relative to /proc/sys, slash-separated, and must start with "net/" (callers validate the
 * user's key; this re-checks so no caller can reach outside /proc/sys/net).
 */
const FAILED = "tscni-sysctl-failed:";

// Prints one NUL-terminated record per path: "v<value>" or "x" when the file exists but cannot be read
// (write-only keys such as net/ipv4/route/flush). A missing file stops the batch.
const READ_SCRIPT = `for f do
  [ -e "/proc/sys/$f" ] || { printf '${FAILED}%s\\n' "$f" >&2; exit 3; }
  if v=$(cat -- "/proc/sys/$f" 2>/dev/null); then printf 'v%s\\0' "$v"; else printf 'x\\0'; fi
done`;

// Writes path/value pairs in order and stops at the first refusal, naming the path.
const WRITE_SCRIPT = `while [ $# -gt 1 ]; do
  printf '%s' "$2" > "/proc/sys/$1" || { printf '${FAILED}%s\\n' "$1" >&2; exit 3; }
  shift 2
done`;

function checkPath(path: string) {
  const parts = path.split("/");
  if (parts[0] !== "net" || parts.length < 2 || parts.some((p) => p === "" || p === "." || p === "..") || path.includes("\0")) {
    throw new CniError(Code.InvalidConfig, `refusing sysctl path ${JSON.stringify(path)}`);
  }
}

/** Current values (undefined for write-only keys); throws naming the first key that does not exist. */
export function readNetnsSysctls(paths: readonly string[], netns: string): (string | undefined)[] {
  if (paths.length === 0) return [];
  paths.forEach(checkPath);
  const r = run(["sh", "-c", READ_SCRIPT, "sh", ...paths], { netns, allowFailure: true });
  if (r.status !== 0) throw failure("read", r.stderr, r.status);
  const records = r.stdout.split("\0").slice(0, paths.length);
  return records.map((rec) => (rec.startsWith("v") ? rec.slice(1) : undefined));
}

/** Writes the values in order; throws naming the key the kernel refused. */
export function writeNetnsSysctls(entries: readonly (readonly [string, string])[], netns: string) {
  if (entries.length === 0) return;
  for (const [path, value] of entries) {
    checkPath(path);
    if (value.includes("\0")) throw new CniError(Code.InvalidConfig, `refusing sysctl value for ${path}`);
  }
  const r = run(["sh", "-c", WRITE_SCRIPT, "sh", ...entries.flat()], { netns, allowFailure: true });
  if (r.status !== 0) throw failure("set", r.stderr, r.status);
}

/** A sysctl the kernel refused or that does not exist; `path` is the slash form under /proc/sys. */
export class SysctlError extends CniError {
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super(Code.Internal, `sysctl ${path}: ${reason}`, path);
  }
}

function failure(verb: string, stderr: string, status: number): CniError {
  const marker = stderr.split("\n").find((l) => l.startsWith(FAILED));
  const path = marker ? marker.slice(FAILED.length) : "";
  // dash reports "sh: 1: cannot create /proc/sys/...: Permission denied"; keep only the reason.
  const reason = stderr
    .split("\n")
    .filter((l) => l && !l.startsWith(FAILED))
    .map((l) => l.replace(/^.*?:\s*(cannot create [^:]*:\s*)?/, "").replace(/^printf:\s*/, ""))
    .join("; ");
  if (!path) return new CniError(Code.Internal, `failed to ${verb} sysctls in the container namespace: ${stderr.trim() || `exit status ${status}`}`);
  return new SysctlError(path, verb === "read" ? "no such key in the container's network namespace" : reason || "refused by the kernel");
}
