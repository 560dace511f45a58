import { spawnSync } from "node:child_process";
import { closeSync, constants, fstatSync, openSync, statSync, unlinkSync } from "node:fs";
import { KernelError } from "./errors.ts";
import { loadLibc } from "./libc.ts";

/**
 * Exclusive flock(2) locks, the kind the reference Go plugins take (POSIX fcntl locks would not
 * exclude them). Node has no flock, so:
 * - compiled with bun (the shipped executable): libc's flock through bun:ffi, about 0.5 ms to set up;
 * - plain Node (unit tests, the esbuild bundle): util-linux `flock -x 3` run on an inherited copy of
 *   our descriptor. A flock belongs to the open file description, which the child shares with us, so
 *   the lock outlives the child and is held by our descriptor until we close it; exactly like the
 *   shell idiom `exec 9>lock; flock 9`. It costs one process per lock, which is why it is the fallback.
 * Either way the kernel drops the lock if we die, so a killed plugin never wedges the store.
 */
export interface HeldLock {
  /** Unlocks; `remove` also deletes the lock file first (see lockExclusive's `removable`). */
  release(remove?: boolean): void;
}

const LOCK_EX = 2;

type LockFn = (fd: number, path: string) => void;
let backend: LockFn | undefined;

/**
 * Opens (creating it if needed) and exclusively locks `path`; blocks until the lock is ours.
 * `removable`: the file may be deleted by a holder when it releases (a lock per attachment must not
 * outlive it), so a waiter that then gets the lock on the deleted file opens the path again.
 * `existing`: lock a file that is there already, following a symlink, whatever it is (a network
 * namespace file, which the reference plugins lock to serialise their work inside it).
 */
export async function lockExclusive(
  path: string,
  mode = 0o750,
  opts: { removable?: boolean; existing?: boolean } = {},
): Promise<HeldLock> {
  backend ??= await chooseBackend();
  const lock = backend;
  for (;;) {
    let fd: number;
    try {
      // O_NONBLOCK only for the open (flock blocks on its own): a FIFO planted there must not hang us.
      const flags = opts.existing
        ? constants.O_RDONLY | constants.O_NONBLOCK
        : constants.O_RDONLY | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK;
      fd = openSync(path, flags, mode);
    } catch (e) {
      throw new KernelError("io", `cannot open lock file ${path}: ${(e as Error).message}`);
    }
    try {
      if (!opts.existing && !fstatSync(fd).isFile())
        throw new KernelError("io", `cannot use lock file ${path}: not a regular file`);
      lock(fd, path);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    if (opts.removable && !stillAt(path, fd)) {
      closeSync(fd);
      continue;
    }
    let held = true;
    return {
      release(remove = false) {
        if (!held) return;
        if (remove) {
          try {
            unlinkSync(path);
          } catch {
            // already gone
          }
        }
        closeSync(fd);
        held = false;
      },
    };
  }
}

/** Whether `path` still names the file open as `fd` (a holder may have deleted it meanwhile). */
function stillAt(path: string, fd: number): boolean {
  try {
    const a = statSync(path);
    const b = fstatSync(fd);
    return a.ino === b.ino && a.dev === b.dev;
  } catch {
    return false;
  }
}

async function chooseBackend(): Promise<LockFn> {
  if (process.versions.bun) {
    const ffi = await ffiBackend();
    if (ffi) return ffi;
  }
  return inheritedFdBackend;
}

async function ffiBackend(): Promise<LockFn | undefined> {
  const libc = await loadLibc();
  if (!libc) return undefined;
  return (fd, path) => {
    // bun:ffi does not expose errno; a failure is retried a few times to ride out EINTR.
    for (let attempt = 0; attempt < 5; attempt++) if (libc.flock(fd, LOCK_EX) === 0) return;
    throw new KernelError("io", `flock(${path}) failed`);
  };
}

const inheritedFdBackend: LockFn = (fd, path) => {
  const r = spawnSync("flock", ["-x", "3"], { stdio: ["ignore", "ignore", "pipe", fd], encoding: "utf8" });
  if (r.error || r.status !== 0) {
    throw new KernelError(
      "io",
      `flock(${path}) failed: ${r.error?.message ?? (r.stderr.trim() || `exit status ${r.status}`)}`,
    );
  }
};
