import { hexDigest } from "../../lib/hash.ts";
import { accessSync, constants as F, linkSync, lstatSync, mkdirSync, readdirSync, statSync, utimesSync } from "node:fs";
import { dirname, join } from "node:path";
import { CniError, Code } from "../../lib/cni/errors.ts";
import { lockExclusive } from "../../lib/kernel/flock.ts";
import {
  createExclusive as create,
  readNoFollow,
  removeIfExists as remove,
  writeNoFollow,
} from "../../lib/safe-file.ts";
import type { AllocationStore } from "./allocator.ts";
import { formatIP, parseIP, type IP } from "../../lib/ip/address.ts";

/**
 * The host-local store, byte-compatible with the reference so either implementation can run on a
 * node and release the other's reservations:
 *
 *   <dataDir>/<net>/<ip>                 "<containerID>\r\n<ifname>"; existence of the file IS the reservation
 *   <dataDir>/<net>/last_reserved_ip.N   last address reserved in range set N (no newline)
 *   <dataDir>/<net>/lock                 flock(2)ed exclusively around every read-modify-write
 *
 * Reservations are created whole: the content is written to a private temp file, then link(2)ed to
 * the address's name, which fails if the name exists (the O_EXCL of the reference, but a kill can no
 * longer leave an empty reservation behind). Temp files live outside <net>, because the reference
 * treats every file under <net> whose content matches an attachment as that attachment's address.
 *
 * To find an attachment's addresses without reading every reservation (the reference does), we keep
 * an index in <dataDir>/.tscni/<net>/ (a name no network can have): one file per owner listing its
 * addresses. The index is only a hint: listed addresses are verified against the reservation files,
 * and it is trusted to be complete only while <net>'s mtime still equals the value we stamped on it
 * after our last change. We stamp a time in the past (now - 1 s), which no later create or unlink
 * can produce, so any change by another writer (the reference, an admin) shows, and we then rebuild
 * the index with one full scan. Changes that do not add or remove names (editing a reservation in
 * place) are not detected; nothing that follows the locking protocol does that.
 */
const LAST_RESERVED = "last_reserved_ip.";
const PRIVATE_DIR = ".tscni";
const ENTRY_PREFIX = "k-";
const STATE = "state";
const STATE_MAGIC = "tscni-ipam-index 1";
const MAX_RESERVATION_BYTES = 64 * 1024;

/** The trimmed content of an attachment's reservation file; also what the reference compares. */
export const ownerOf = (containerId: string, ifname: string) => `${containerId.trim()}\r\n${ifname}`;
/** Reservation files written by very old plugin versions hold the container ID alone. */
export const legacyOwnerOf = (containerId: string) => containerId.trim();

export interface Attachment {
  containerID: string;
  ifname: string;
}

export class StoreError extends CniError {
  constructor(msg: string) {
    super(Code.IOFailure, msg);
  }
}

const errno = (e: unknown) => (e as NodeJS.ErrnoException).code;

export class DiskStore {
  readonly dir: string;
  private readonly privateDir: string;

  private constructor(
    readonly dataDir: string,
    readonly network: string,
  ) {
    if (network === "" || network === "." || network === ".." || network.includes("/") || network.includes("\0")) {
      throw new CniError(
        Code.InvalidConfig,
        `invalid network name ${JSON.stringify(network)}: it would escape dataDir ${dataDir}`,
      );
    }
    this.dir = join(dataDir, network);
    this.privateDir = join(dataDir, PRIVATE_DIR, network);
  }

  /**
   * Opens the store of `network`. With create (ADD), directories are made as the reference makes
   * them; without, a network that has no directory yet holds nothing and undefined is returned.
   */
  static open(dataDir: string, network: string, opts: { create: boolean }): DiskStore | undefined {
    const store = new DiskStore(dataDir, network);
    if (opts.create) {
      try {
        mkdirSync(dataDir, { recursive: true, mode: 0o755 });
      } catch (e) {
        throw new StoreError(`cannot create dataDir ${dataDir}: ${(e as Error).message}`);
      }
      // dataDir itself must not be a symlink (its parents may): a planted link would move the store.
      isRealDir(dataDir);
      makeRealDir(store.dir, 0o755);
    } else if (!isRealDir(dataDir) || !isRealDir(store.dir)) {
      return undefined;
    }
    makeRealDir(join(dataDir, PRIVATE_DIR), 0o700);
    makeRealDir(store.privateDir, 0o700);
    return store;
  }

  /**
   * STATUS: the store can be used if dataDir is (or can be created as) a writable directory and the
   * network's directory, if present, is a real writable directory. Otherwise CNI error 50.
   */
  static checkUsable(dataDir: string, network: string) {
    const unusable = (why: string) =>
      new CniError(Code.NotAvailable, `host-local data directory is not usable: ${why}`);
    let existing = dataDir;
    for (;;) {
      try {
        if (!statSync(existing).isDirectory()) throw unusable(`${existing} is not a directory`);
        break;
      } catch (e) {
        if (e instanceof CniError) throw e;
        if (errno(e) !== "ENOENT" || dirname(existing) === existing)
          throw unusable(`${existing}: ${(e as Error).message}`);
        existing = dirname(existing);
      }
    }
    const writable = (path: string) => {
      try {
        accessSync(path, F.W_OK | F.X_OK);
      } catch (e) {
        throw unusable(`${path}: ${(e as Error).message}`);
      }
    };
    writable(existing);
    if (existing !== dataDir) return;
    const store = new DiskStore(dataDir, network);
    try {
      if (!isRealDir(dataDir) || !isRealDir(store.dir)) return;
    } catch (e) {
      throw unusable((e as Error).message);
    }
    writable(store.dir);
  }

  /** Runs fn holding the store's flock, the same lock the reference takes. */
  async locked<T>(fn: (tx: StoreTransaction) => T): Promise<T> {
    const lock = await lockExclusive(join(this.dir, "lock"));
    const tx = new StoreTransaction(this.dir, this.privateDir);
    try {
      tx.begin();
      return fn(tx);
    } finally {
      tx.finish();
      lock.release();
    }
  }
}

/** What one holder of the lock may do. Every method assumes the lock is held. */
export class StoreTransaction {
  /** <net> changed since we last stamped it. */
  private dirty = false;
  /** A change to <net> whose index update did not complete: leave the stamp stale so the next holder rebuilds. */
  private broken = false;
  private readonly tmpReservation: string;
  /** Owner written in the temp file, while it exists. */
  private tempOwner: string | undefined;

  constructor(
    readonly dir: string,
    private readonly privateDir: string,
  ) {
    this.tmpReservation = join(privateDir, "tmp.reservation");
  }

  begin() {
    removeIfExists(this.tmpReservation);
    if (!this.indexIsCurrent()) this.rebuildIndex(this.scan());
  }

  /** Never throws: it runs on the way out of failures too. */
  finish() {
    try {
      removeIfExists(this.tmpReservation);
    } catch {
      // removed by the next holder's begin()
    }
    if (this.dirty && !this.broken) this.stamp();
  }

  /** The allocator's view of this store for one attachment. */
  forAttachment(containerId: string, ifname: string): AllocationStore {
    const owner = ownerOf(containerId, ifname);
    return {
      lastReserved: (set) => this.lastReserved(set),
      reserve: (ip, set) => this.reserve(ip, set, owner),
      held: () => this.heldBy(containerId, ifname).flatMap((name) => parseIP(name) ?? []),
      release: (ips) => this.release(ips.map(formatIP), owner),
      takenSnapshot: () => new Set(readdirSync(this.dir)),
    };
  }

  /** Names of the reservations of (containerId, ifname), or of legacy ones by container ID alone. */
  heldBy(containerId: string, ifname: string): string[] {
    return [...this.verified(ownerOf(containerId, ifname)), ...this.verified(legacyOwnerOf(containerId))];
  }

  /** The reference's ReleaseByID: the attachment's reservations, or if none, its legacy ones. */
  releaseAttachment(containerId: string, ifname: string) {
    const owner = ownerOf(containerId, ifname);
    const names = this.verified(owner);
    if (names.length > 0) return this.release(names, owner);
    const legacy = legacyOwnerOf(containerId);
    this.release(this.verified(legacy), legacy);
  }

  /**
   * Releases every reservation whose owner is not a valid attachment (CNI GC). Files that parse as
   * addresses but hold no owner (an older plugin killed mid-write) are released too. Returns the names.
   */
  collectGarbage(valid: readonly Attachment[]): string[] {
    const keep = new Set<string>();
    for (const a of valid) {
      keep.add(ownerOf(a.containerID, a.ifname));
      keep.add(legacyOwnerOf(a.containerID));
    }
    const all = this.scan();
    const released: string[] = [];
    for (const [name, owner] of all) {
      if (keep.has(owner)) continue;
      this.markChanging();
      removeIfExists(join(this.dir, name));
      all.delete(name);
      released.push(name);
    }
    this.rebuildIndex(all);
    this.broken = false;
    return released;
  }

  private lastReserved(setIndex: number): IP | undefined {
    const text = readSmall(join(this.dir, LAST_RESERVED + setIndex));
    // Parsed strictly, as the reference does: a stray newline makes it unusable.
    return text === undefined ? undefined : parseIP(text);
  }

  private reserve(ip: IP, setIndex: number, owner: string): boolean {
    const name = formatIP(ip);
    const target = join(this.dir, name);
    this.prepareTemp(owner);
    try {
      linkSync(this.tmpReservation, target);
    } catch (e) {
      const code = errno(e);
      if (code === "EEXIST") return false;
      if (code !== "EXDEV" && code !== "EPERM" && code !== "ENOTSUP" && code !== "EMLINK")
        throw new StoreError(`cannot reserve ${name}: ${(e as Error).message}`);
      // No hard links here: create in place as the reference does.
      if (!createExclusive(target, owner)) return false;
    }
    this.markChanging();
    this.tempOwner = undefined;
    try {
      removeIfExists(this.tmpReservation);
    } catch {
      // a second name of a complete reservation; the next holder's begin() removes it
    }
    try {
      this.writeEntry(owner, [...new Set([...this.readEntry(owner), name])]);
    } catch (e) {
      removeIfExists(target);
      throw e;
    }
    this.broken = false;
    try {
      writeSmall(join(this.dir, LAST_RESERVED + setIndex), name, 0o600);
    } catch {
      // Only round-robin continuity depends on it; the reservation itself is complete.
    }
    return true;
  }

  private release(names: readonly string[], owner: string) {
    if (names.length === 0) return;
    this.markChanging();
    for (const name of names) {
      if (readSmall(join(this.dir, name))?.trim() === owner) removeIfExists(join(this.dir, name));
    }
    this.writeEntry(
      owner,
      this.readEntry(owner).filter((n) => !names.includes(n)),
    );
    this.broken = false;
  }

  private markChanging() {
    this.dirty = true;
    this.broken = true;
  }

  /** The owner's listed reservations that really are its own right now. */
  private verified(owner: string): string[] {
    return this.readEntry(owner).filter((name) => readSmall(join(this.dir, name))?.trim() === owner);
  }

  /** The reservation to be, complete before it gets its name; reused across probes of taken addresses. */
  private prepareTemp(owner: string) {
    if (this.tempOwner === owner) return;
    removeIfExists(this.tmpReservation);
    if (!createExclusive(this.tmpReservation, owner)) throw new StoreError(`cannot create ${this.tmpReservation}`);
    this.tempOwner = owner;
  }

  // ---- index ----

  private entryPath(owner: string) {
    return join(this.privateDir, ENTRY_PREFIX + hexDigest("sha256", owner));
  }

  private readEntry(owner: string): string[] {
    const entry = parseEntry(readSmall(this.entryPath(owner)));
    return entry?.owner === owner ? entry.ips : [];
  }

  /**
   * Written in place: every entry write happens after <net> changed and before the new stamp, so a
   * write torn by a kill is always followed by a rebuild, which discards it.
   */
  private writeEntry(owner: string, names: readonly string[], path = this.entryPath(owner)) {
    if (names.length === 0) return removeIfExists(path);
    writeSmall(path, JSON.stringify({ owner, ips: names }), 0o600);
  }

  private indexIsCurrent(): boolean {
    const text = readSmall(join(this.privateDir, STATE));
    if (!text) return false;
    const [magic, ino, mtime] = text.trim().split(" | ");
    const st = statSync(this.dir, { bigint: true });
    return magic === STATE_MAGIC && ino === String(st.ino) && mtime === String(st.mtimeNs);
  }

  /** Every reservation in <net>: address name -> trimmed content. */
  private scan(): Map<string, string> {
    const out = new Map<string, string>();
    for (const d of readdirSync(this.dir, { withFileTypes: true })) {
      // Some file systems do not report types (DT_UNKNOWN): read those; readSmall refuses symlinks.
      if (
        d.isDirectory() ||
        d.isSymbolicLink() ||
        d.isFIFO() ||
        d.isSocket() ||
        d.isCharacterDevice() ||
        d.isBlockDevice() ||
        !parseIP(d.name)
      )
        continue;
      const content = readSmall(join(this.dir, d.name));
      if (content !== undefined) out.set(d.name, content.trim());
    }
    return out;
  }

  /** Makes the index list exactly the given reservations, then stamps <net>. */
  private rebuildIndex(reservations: ReadonlyMap<string, string>) {
    const want = new Map<string, string[]>();
    for (const [name, owner] of reservations) {
      if (owner === "") continue;
      want.set(owner, [...(want.get(owner) ?? []), name]);
    }
    for (const file of readdirSync(this.privateDir)) {
      if (!file.startsWith(ENTRY_PREFIX)) continue;
      const path = join(this.privateDir, file);
      const entry = parseEntry(readSmall(path));
      const names = entry && path === this.entryPath(entry.owner) ? want.get(entry.owner) : undefined;
      if (!names)
        removeIfExists(path); // torn, misplaced, or its owner holds nothing now
      else if (sameMembers(entry!.ips, names)) want.delete(entry!.owner); // already right; others are rewritten below
    }
    for (const [owner, names] of want) this.writeEntry(owner, names);
    this.stamp();
  }

  /**
   * Sets <net>'s mtime to a moment in the past and records it: from now on any create or unlink in
   * <net> by anyone moves the mtime to the present, so a stamp that still matches proves the index
   * saw every change.
   */
  private stamp() {
    try {
      const now = Date.now() / 1000;
      utimesSync(this.dir, now, now - 1 - Math.random() / 2);
      const st = statSync(this.dir, { bigint: true });
      writeSmall(join(this.privateDir, STATE), `${STATE_MAGIC} | ${st.ino} | ${st.mtimeNs}\n`, 0o600);
      this.dirty = false;
    } catch {
      // Without a stamp the index is simply rebuilt next time: slower, never wrong.
    }
  }
}

// ---- small file helpers: never follow a symlink planted in the store ----

function isRealDir(path: string): boolean {
  try {
    const st = lstatSync(path);
    if (st.isDirectory()) return true;
  } catch (e) {
    if (errno(e) === "ENOENT") return false;
    throw new StoreError(`cannot inspect ${path}: ${(e as Error).message}`);
  }
  throw new StoreError(`${path} is not a directory (a symlink or a file); refusing to use it as a store directory`);
}

function makeRealDir(path: string, mode: number) {
  try {
    mkdirSync(path, { mode });
  } catch (e) {
    if (errno(e) !== "EEXIST") throw new StoreError(`cannot create ${path}: ${(e as Error).message}`);
  }
  isRealDir(path);
}

/** An index entry: an owner and the address names it holds. A torn or foreign file parses as none. */
function parseEntry(text: string | undefined): { owner: string; ips: string[] } | undefined {
  if (text === undefined) return undefined;
  try {
    const e = JSON.parse(text) as { owner?: unknown; ips?: unknown };
    if (typeof e.owner === "string" && Array.isArray(e.ips))
      return { owner: e.owner, ips: e.ips.filter((x): x is string => typeof x === "string") };
  } catch {
    // torn by a kill: the stamp check makes sure a rebuild follows
  }
  return undefined;
}

// One buffer for every read: the code is synchronous, and a rebuild reads thousands of small files.
const readBuffer = Buffer.allocUnsafe(MAX_RESERVATION_BYTES);

/** A reservation-sized file's text; undefined for anything that is not a readable regular file. */
function readSmall(path: string): string | undefined {
  try {
    return readNoFollow(path, readBuffer);
  } catch {
    return undefined; // a directory, a fifo: not a reservation
  }
}

/** The safe-file primitives with their failures as store errors naming the path. */
function inStore<T>(what: string, path: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw new StoreError(`cannot ${what} ${path}: ${(e as Error).message}`);
  }
}

/** O_EXCL create with content; on a write failure the file is removed, as in the reference. */
const createExclusive = (path: string, content: string) => inStore("create", path, () => create(path, content));
const writeSmall = (path: string, content: string, mode: number) =>
  inStore("write", path, () => writeNoFollow(path, content, mode));
const removeIfExists = (path: string) => inStore("remove", path, () => remove(path));

function sameMembers(a: readonly string[], b: readonly string[]) {
  return a.length === b.length && a.every((x) => b.includes(x));
}
