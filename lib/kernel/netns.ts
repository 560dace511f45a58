import { statSync, statfsSync } from "node:fs";
import { CniError, Code } from "../cni/errors.ts";

const NSFS_MAGIC = 0x6e736673;

export type NetnsState = "ok" | "none" | "gone";

/**
 * Checks CNI_NETNS before any work: it must be a network namespace file and not the namespace the
 * plugin itself runs in, so a plugin never reconfigures the node as if it were a container.
 * A path that no longer exists is "gone" (DEL treats that as already cleaned up).
 */
export function inspectNetns(path: string): NetnsState {
  if (path === "") return "none";
  let magic: number;
  try {
    magic = Number(statfsSync(path).type);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return "gone";
    throw new CniError(Code.InvalidEnv, `CNI_NETNS: cannot open ${path}: ${(e as Error).message}`);
  }
  if (magic !== NSFS_MAGIC) {
    throw new CniError(Code.InvalidEnv, `CNI_NETNS: ${path} is not a network namespace`, `filesystem magic 0x${magic.toString(16)}`);
  }
  const target = statSync(path);
  const own = statSync("/proc/self/ns/net");
  if (target.ino === own.ino && target.dev === own.dev) {
    throw new CniError(Code.InvalidNetns, "plugin's netns and netns from CNI_NETNS should not be the same", path);
  }
  return "ok";
}
