import {
  closeSync,
  constants as F,
  fstatSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  unlinkSync,
  writeSync,
} from "node:fs";

/**
 * Files a root plugin reads and writes in directories others may write to (state under /run and
 * /var/lib, log files named by a config): no symlink is ever followed (O_NOFOLLOW), no FIFO can
 * stall a read (O_NONBLOCK), new files are created exclusively (O_EXCL) so nothing planted is
 * written through, and a replaced file appears whole or not at all (write a temporary, rename).
 * Errors are Node's own (with `code`): callers decide what each one means in their terms.
 */

const errno = (e: unknown) => (e as NodeJS.ErrnoException).code;

/** A small file's text; undefined when it does not exist or is a symlink. `buffer` bounds the read. */
export function readNoFollow(path: string, buffer?: Buffer): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, F.O_RDONLY | F.O_NOFOLLOW | F.O_NONBLOCK);
  } catch (e) {
    if (errno(e) === "ENOENT" || errno(e) === "ELOOP") return undefined;
    throw e;
  }
  try {
    const buf = buffer ?? Buffer.allocUnsafe(Math.max(fstatSync(fd).size, 0) + 1);
    let len = 0;
    for (;;) {
      const n = readSync(fd, buf, len, buf.length - len, null);
      len += n;
      if (n === 0 || len === buf.length) break;
    }
    return buf.toString("utf8", 0, len);
  } finally {
    closeSync(fd);
  }
}

function writeAll(fd: number, text: string) {
  const buf = Buffer.from(text);
  for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off);
}

/** Creates `path` with `text`; false when it already exists. A failed write removes the file. */
export function createExclusive(path: string, text: string, mode = 0o600): boolean {
  let fd: number;
  try {
    fd = openSync(path, F.O_WRONLY | F.O_CREAT | F.O_EXCL | F.O_NOFOLLOW, mode);
  } catch (e) {
    if (errno(e) === "EEXIST") return false;
    throw e;
  }
  try {
    writeAll(fd, text);
  } catch (e) {
    closeSync(fd);
    removeIfExists(path);
    throw e;
  }
  closeSync(fd);
  return true;
}

/** Writes `path` in place (created or truncated), never through a symlink. */
export function writeNoFollow(path: string, text: string, mode = 0o600) {
  const fd = openSync(path, F.O_WRONLY | F.O_CREAT | F.O_TRUNC | F.O_NOFOLLOW, mode);
  try {
    writeAll(fd, text);
  } finally {
    closeSync(fd);
  }
}

/**
 * Replaces `path` whole: readers see the old file or the new one, never part of either. `tmp` is
 * the temporary's name; a fixed one is cleared first (a leftover of a killed writer), a unique one
 * lets concurrent writers race without sharing it. A failure leaves no temporary behind.
 */
export function replaceFile(path: string, text: string, mode = 0o600, tmp = `${path}.tmp`) {
  removeIfExists(tmp);
  if (!createExclusive(tmp, text, mode))
    throw Object.assign(new Error(`${tmp} appeared while writing`), { code: "EEXIST" });
  try {
    renameSync(tmp, path);
  } catch (e) {
    removeIfExists(tmp);
    throw e;
  }
}

/** Appends a line to a regular file (created if missing); a FIFO, device or symlink is never written. */
export function appendToRegularFile(path: string, text: string, mode = 0o600) {
  const fd = openSync(path, F.O_WRONLY | F.O_APPEND | F.O_CREAT | F.O_NONBLOCK | F.O_NOFOLLOW, mode);
  try {
    if (fstatSync(fd).isFile()) writeAll(fd, text);
  } finally {
    closeSync(fd);
  }
}

/** Removes a file; one that is already gone is fine. */
export function removeIfExists(path: string) {
  try {
    unlinkSync(path);
  } catch (e) {
    if (errno(e) !== "ENOENT") throw e;
  }
}

/**
 * A configuration file a config names (it may follow symlinks, as the reference reads it): only a
 * regular file of at most `maxBytes`, so a FIFO, device or directory named there fails at once
 * instead of blocking or exhausting memory.
 */
export function readRegularFile(path: string, maxBytes: number): string {
  const fd = openSync(path, F.O_RDONLY | F.O_NONBLOCK);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error("not a regular file");
    if (st.size > maxBytes) throw new Error(`larger than ${maxBytes} bytes`);
    return readFileSync(fd, "utf8");
  } finally {
    closeSync(fd);
  }
}
