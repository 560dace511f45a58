import { closeSync, constants, openSync, writeSync } from "node:fs";
import { CniError, Code } from "../cni/errors.ts";
import { libcIfLoaded } from "./libc.ts";

const CLONE_NEWNET = 0x40000000;

/**
 * Runs `fn` with this thread switched into the network namespace at `path` (setns(2) through libc),
 * then switches back. Everything `fn` does happens there: processes it spawns start in that
 * namespace (no nsenter exec in between) and /proc/sys/net opened by it shows that namespace's
 * sysctls. `fn` must be synchronous: nothing else may run on this thread while it is switched.
 * Returns NO_SETNS when libc is not loaded (plain Node), so the caller uses nsenter instead.
 */
export const NO_SETNS: unique symbol = Symbol("no setns");

export function withNetns<T>(path: string, fn: () => T): T | typeof NO_SETNS {
  const libc = libcIfLoaded();
  if (!libc) return NO_SETNS;
  const home = openSync("/proc/thread-self/ns/net", constants.O_RDONLY);
  let target: number;
  try {
    target = openSync(path, constants.O_RDONLY);
  } catch (e) {
    closeSync(home);
    throw new CniError(Code.InvalidEnv, `CNI_NETNS: cannot open ${path}: ${(e as Error).message}`);
  }
  try {
    if (libc.setns(target, CLONE_NEWNET) !== 0) {
      throw new CniError(Code.InvalidEnv, `CNI_NETNS: cannot enter ${path}: not a network namespace`);
    }
    try {
      return fn();
    } finally {
      if (libc.setns(home, CLONE_NEWNET) !== 0) {
        // Carrying on in the container's namespace would program the node's rules there: stop now.
        writeSync(1, JSON.stringify({ cniVersion: "1.1.0", code: Code.Internal, msg: "cannot return to the plugin's own network namespace", details: path }) + "\n");
        process.exit(1);
      }
    }
  } finally {
    closeSync(target);
    closeSync(home);
  }
}
