import { closeSync, constants, openSync, writeSync } from "node:fs";
import { KernelError } from "./errors.ts";
import { libcIfLoaded } from "./libc.ts";

const CLONE_NEWNET = 0x40000000;

/**
 * Runs `fn` with this thread switched into the network namespace at `path` (setns(2) through libc),
 * then switches back. Everything `fn` does happens there: processes it spawns start in that
 * namespace (no nsenter exec in between) and /proc/sys/net opened by it shows that namespace's
 * sysctls. `fn` must be synchronous: nothing else may run on this thread while it is switched.
 * This is the one way the suite enters a namespace: it needs libc through bun:ffi (the compiled
 * executable, with loadLibc() done); plain Node cannot, and gets an error rather than a fallback.
 */

/**
 * What to do when the thread cannot switch back: must not return. The plugin edge installs one that
 * reports the error in its own terms; the default stops the process at once.
 */
let stuckHandler: (e: KernelError) => never = (e) => {
  writeSync(2, `${e.message}: ${e.detail.details ?? ""}\n`);
  process.exit(1);
};

export function onStuckInNamespace(handler: (e: KernelError) => never) {
  stuckHandler = handler;
}

export function withNetns<T>(path: string, fn: () => T): T {
  const libc = libcIfLoaded();
  if (!libc) {
    throw new KernelError("netns", `CNI_NETNS: cannot enter ${path}: entering a namespace needs setns through bun:ffi`);
  }
  const home = openSync("/proc/thread-self/ns/net", constants.O_RDONLY);
  let target: number;
  try {
    target = openSync(path, constants.O_RDONLY);
  } catch (e) {
    closeSync(home);
    throw new KernelError("netns", `CNI_NETNS: cannot open ${path}: ${(e as Error).message}`);
  }
  try {
    if (libc.setns(target, CLONE_NEWNET) !== 0) {
      throw new KernelError("netns", `CNI_NETNS: cannot enter ${path}: not a network namespace`);
    }
    try {
      return fn();
    } finally {
      if (libc.setns(home, CLONE_NEWNET) !== 0) {
        // Carrying on in the container's namespace would program the node's rules there: no
        // unwinding (a rollback would run here too), the process stops in the handler.
        stuckHandler(
          new KernelError("failed", "cannot return to the plugin's own network namespace", { details: path }),
        );
      }
    }
  } finally {
    closeSync(target);
    closeSync(home);
  }
}
