import { mkdirSync } from "node:fs";
import { lockExclusive } from "../kernel/flock.ts";

const LOCK_DIR = "/run/tscni";

/**
 * Runs one read-plan-apply of netfilter rules holding this suite's node-wide lock. Plans are made
 * from a dump and then applied, and iptables-nft does not fail a transaction that lost a race: it
 * replays it on the newer ruleset, skipping a `-N` whose chain now exists, so two first ADDs could
 * both add the same shared jump (seen: 1 run in 30 with four concurrent restores). Serialising our
 * own plugins' plans that create shared chains or jumps closes that; a plan that changes only one
 * container's rules does not need it.
 */
export async function netfilterLocked<T>(fn: () => T): Promise<Awaited<T>> {
  mkdirSync(LOCK_DIR, { recursive: true, mode: 0o700 });
  const lock = await lockExclusive(`${LOCK_DIR}/netfilter.lock`, 0o600);
  try {
    return await fn();
  } finally {
    lock.release();
  }
}
