import { KernelError } from "./errors.ts";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { checkBatchWord } from "./exec.ts";
import { applyLinkOps, lineOf, type IpLink, type LinkOp } from "./link.ts";
import { withNetns } from "./setns.ts";

/**
 * Sysctls and link settings of a container namespace, each phase run with this thread inside the
 * namespace (setns): /proc/sys/net shows the namespace of the thread that opens it, so sysctls are
 * plain file reads and writes there, and only the link operations spawn a tool. procps `sysctl -w` is
 * not used because it exits 0 when the kernel refuses a value at close time (seen with a read-only
 * global key inside a netns).
 *
 * Sysctl paths are relative to /proc/sys, slash-separated, and must start with "net/" (callers
 * validate the user's key; this re-checks so nothing can reach outside /proc/sys/net).
 */

/** A sysctl the kernel refused or that does not exist; `path` is the slash form under /proc/sys. */
export class SysctlError extends KernelError {
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super("failed", `sysctl ${path}: ${reason}`, { details: path });
  }
}

/** A link operation the kernel refused; `line` is its 0-based index among the ops. */
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
  /** The requested link; undefined when it does not exist. */
  link?: IpLink;
}

/** Reads sysctls and, optionally, one link; throws a SysctlError for a key that does not exist. */
export function snapshotNetns(netns: string, paths: readonly string[], dev = ""): Snapshot {
  if (paths.length === 0 && dev === "") return { sysctls: [] };
  paths.forEach(checkPath);
  if (dev) checkBatchWord(dev, "ip");
  return withNetns(netns, () => snapshotHere(paths, dev));
}

/** Writes sysctls in order, then applies the link ops; throws SysctlError or IpLineError. */
export function applyNetns(
  netns: string,
  sysctls: readonly (readonly [string, string])[],
  ops: readonly LinkOp[] = [],
) {
  if (sysctls.length === 0 && ops.length === 0) return;
  for (const [path, value] of sysctls) {
    checkPath(path);
    if (value.includes("\0")) throw new KernelError("refused", `refusing sysctl value for ${path}`);
  }
  for (const o of ops) for (const w of lineOf(o)) checkBatchWord(w, "ip");
  withNetns(netns, () => applyHere(sysctls, ops));
}

// The two phases, run with this thread inside the container's namespace.

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
  return { sysctls, link: applyLinkOps([{ op: "show", dev }]).shown.find((l) => l.ifname === dev) };
}

// The kernel's refusals in the words a shell would report them (the messages users match on).
const ERRNO_TEXT: Record<string, string> = {
  ENOENT: "no such key in the container's network namespace",
  EACCES: "Permission denied",
  EPERM: "Operation not permitted",
  EINVAL: "Invalid argument",
  ERANGE: "Numerical result out of range",
};

function applyHere(sysctls: readonly (readonly [string, string])[], ops: readonly LinkOp[]) {
  for (const [path, value] of sysctls) {
    try {
      writeFileSync(`/proc/sys/${path}`, value);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      throw new SysctlError(path, ERRNO_TEXT[err.code ?? ""] ?? err.message);
    }
  }
  if (ops.length === 0) return;
  const r = applyLinkOps(ops);
  if (!r.ok) throw new IpLineError(r.failedOp ?? 0, r.stderr);
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
