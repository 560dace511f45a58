import { closeSync, constants, openSync, statSync, statfsSync } from "node:fs";
import { KernelError } from "./errors.ts";

const NSFS_MAGIC = 0x6e736673;

/**
 * "gone": the path does not exist; "stale": it exists but holds no namespace (a pin whose mount is
 * gone leaves an empty file; a directory, device or FIFO). ADD and CHECK refuse both; DEL cleans
 * the node side without entering the path.
 */
export type NetnsState = "ok" | "none" | "gone" | "stale";

/**
 * Checks CNI_NETNS before any work: it must be a network namespace file and not the namespace the
 * plugin itself runs in, so a plugin never reconfigures the node as if it were a container.
 */
export function inspectNetns(path: string): NetnsState {
  if (path === "") return "none";
  let magic: number;
  try {
    magic = Number(statfsSync(path).type);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return "gone";
    throw new KernelError("netns", `CNI_NETNS: cannot open ${path}: ${(e as Error).message}`);
  }
  if (magic !== NSFS_MAGIC) return "stale";
  const target = statSync(path);
  const own = statSync("/proc/self/ns/net");
  if (target.ino === own.ino && target.dev === own.dev) {
    throw new KernelError("same-netns", "plugin's netns and netns from CNI_NETNS should not be the same", {
      details: path,
    });
  }
  return "ok";
}

/**
 * Runs `fn` with a path that names the namespace this thread is in now, valid wherever the thread
 * goes meanwhile (an open descriptor under /proc/<pid>/fd): what an op run inside a container
 * names as the target of a move back to the node. The descriptor is closed afterwards.
 */
export function withOwnNetnsPath<T>(fn: (path: string) => T): T {
  const fd = openSync("/proc/thread-self/ns/net", constants.O_RDONLY);
  try {
    return fn(`/proc/${process.pid}/fd/${fd}`);
  } finally {
    closeSync(fd);
  }
}
