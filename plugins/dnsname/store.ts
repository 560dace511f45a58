import { mkdirSync, rmdirSync } from "node:fs";
import { join } from "node:path";
import { KernelError } from "../../lib/kernel/errors.ts";
import { lockExclusive, type HeldLock } from "../../lib/kernel/flock.ts";
import { removeIfExists } from "../../lib/safe-file.ts";

/**
 * Where a network's files live, as containers/dnsname lays them out: `<base>/<network>/` with
 * `dnsmasq.conf`, `addnhosts`, `pidfile` and `lock`, the base being
 * `$XDG_RUNTIME_DIR/containers/cni/dnsname` when that is set, else `/run/containers/cni/dnsname`.
 */
export interface NetworkFiles {
  dir: string;
  conf: string;
  hosts: string;
  pidfile: string;
  lock: string;
}

export function networkFiles(network: string, env: NodeJS.ProcessEnv = process.env): NetworkFiles {
  const base = env.XDG_RUNTIME_DIR
    ? join(env.XDG_RUNTIME_DIR, "containers/cni/dnsname")
    : "/run/containers/cni/dnsname";
  const dir = join(base, network);
  return {
    dir,
    conf: join(dir, "dnsmasq.conf"),
    hosts: join(dir, "addnhosts"),
    pidfile: join(dir, "pidfile"),
    lock: join(dir, "lock"),
  };
}

/**
 * Takes the network's lock, the reference's `<dir>/lock`, so the two implementations exclude each
 * other. The last DEL (either one's) removes the directory, lock file included, while a waiter may
 * be blocked on it; a waiter whose lock file has gone therefore makes the directory again and
 * locks the new file, so the lock stays valid across the removal.
 */
export async function lockNetwork(files: NetworkFiles): Promise<HeldLock> {
  for (let attempt = 0; ; attempt++) {
    mkdirSync(files.dir, { recursive: true, mode: 0o700 });
    try {
      return await lockExclusive(files.lock, 0o600, { removable: true });
    } catch (e) {
      // The directory went between our mkdir and the open (a removal raced us, and another waiter
      // may have made it again since): make it and try again. A lasting fault fails after a few.
      if (!(e instanceof KernelError && e.fault === "io") || attempt >= 20) throw e;
    }
  }
}

/**
 * Removes the network's files and directory, under its lock (which it releases): the lock file is
 * unlinked before the lock is let go, so a waiter sees it gone and starts over.
 */
export function removeNetwork(files: NetworkFiles, lock: HeldLock) {
  for (const f of [files.hosts, `${files.hosts}.old`, `${files.hosts}.tmp`, files.conf, files.pidfile])
    removeIfExists(f);
  lock.release(true);
  try {
    rmdirSync(files.dir);
  } catch {
    // A waiter already locked a new file in it (it keeps the directory), or it is gone.
  }
}
