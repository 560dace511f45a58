import { lockExclusive } from "../kernel/flock.ts";

/**
 * Runs `fn` holding an exclusive flock on the container's namespace file: the lock the reference's
 * meta plugins (sbr) take, so two of them working on one namespace (two attachments of one pod)
 * do not read and change its routing state at the same time.
 */
export async function inLockedNetns<T>(netns: string, fn: () => T): Promise<Awaited<T>> {
  const lock = await lockExclusive(netns, 0, { existing: true });
  try {
    return await fn();
  } finally {
    lock.release();
  }
}
