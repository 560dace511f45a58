import { mkdirSync, readdirSync, statSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { hexDigest, randomHex } from "../hash.ts";
import { lockExclusive, type HeldLock } from "../kernel/flock.ts";
import { readNoFollow, replaceFile } from "../safe-file.ts";
import type { Attachment } from "./attachment.ts";

/**
 * A DEL of a container, announced to an ADD of the same container racing it. A runtime runs a
 * network's plugins one process after another, so an ADD and a DEL started together interleave
 * step by step: DEL's portmap can run before ADD's portmap, and DEL's bridge after it, which left
 * the port mapping of a container whose veth and address were gone. The first step of our DEL
 * (portmap) leaves a notice; our bridge DEL, the last step, takes it away; ADD's portmap reads it
 * before it programs anything and, while a DEL is under way, waits to see how it ends.
 *
 * Notices and locks live in /run (gone at reboot, like everything they describe), named by a digest
 * of network, container ID and interface; a notice older than NOTICE_TTL_MS is ignored and swept.
 */
const DIR = "/run/tscni/attachments";
const NOTICE_TTL_MS = 60_000;

export interface DeleteNotice {
  /** When the DEL began (ms since the epoch). */
  at: number;
  /** Tells two notices apart. */
  nonce: string;
  /**
   * The DEL had the attachment's result (libcni's cache, written once a whole ADD succeeded). One
   * without it may be racing an ADD that has not finished.
   */
  knewResult: boolean;
}

const digest = (k: Attachment) => hexDigest("sha256", `${k.network}\0${k.containerId}\0${k.ifname}`).slice(0, 32);
const noticePath = (k: Attachment) => join(DIR, `${digest(k)}.del`);

/** Leaves the notice of a DEL that is starting (replacing an older one) and sweeps expired ones. */
export function announceDelete(key: Attachment, knewResult: boolean) {
  mkdirSync(DIR, { recursive: true, mode: 0o700 });
  const notice: DeleteNotice = { at: Date.now(), nonce: randomHex(8), knewResult };
  const path = noticePath(key);
  // A temporary of its own: DELs of one attachment may announce at once.
  replaceFile(path, JSON.stringify(notice), 0o600, `${path}.${notice.nonce}`);
  sweepExpired();
}

/** The notice of a DEL under way for this attachment, if any (an expired one is removed). */
export function readDeleteNotice(key: Attachment): DeleteNotice | undefined {
  const path = noticePath(key);
  let text: string | undefined;
  try {
    text = readNoFollow(path);
  } catch {
    return undefined;
  }
  if (text === undefined) return undefined;
  let notice: DeleteNotice;
  try {
    notice = JSON.parse(text) as DeleteNotice;
  } catch {
    return undefined; // not ours, or cut short by a crash: no DEL to wait for
  }
  if (typeof notice.at !== "number" || Date.now() - notice.at > NOTICE_TTL_MS) {
    removeQuietly(path);
    return undefined;
  }
  return notice;
}

/** The DEL is over (our bridge's DEL, the last step, has run): a racing ADD may go on. */
export function clearDeleteNotice(key: Attachment) {
  removeQuietly(noticePath(key));
}

/**
 * Serialises ADD and DEL of one attachment within a plugin, so a DEL never runs in the middle of
 * an ADD (and releases an address the ADD is about to configure). One lock file per attachment,
 * so unrelated pods never wait for each other; the DEL that ends the attachment deletes it
 * (`release(true)`).
 */
export async function lockAttachment(key: Attachment): Promise<HeldLock> {
  mkdirSync(DIR, { recursive: true, mode: 0o700 });
  return lockExclusive(join(DIR, `${digest(key)}.lock`), 0o600, { removable: true });
}

function sweepExpired() {
  let names: string[];
  try {
    names = readdirSync(DIR);
  } catch {
    return;
  }
  const now = Date.now();
  for (const name of names) {
    if (!/\.del(\.[0-9a-f]+)?$/.test(name)) continue;
    const path = join(DIR, name);
    try {
      if (now - statSync(path).mtimeMs > NOTICE_TTL_MS) removeQuietly(path);
    } catch {
      // gone meanwhile
    }
  }
}

function removeQuietly(path: string) {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

/**
 * One step of a chained plugin (portmap) under the attachment's lock, which the interface plugin's
 * ADD and DEL take too: the step cannot interleave with a DEL's notice and rule removal for the
 * same attachment, while steps of other attachments run beside it. `endsAttachment` (a DEL's
 * step) removes the lock file, which an interface plugin of another implementation would leave.
 */
export async function attachmentStep<T>(key: Attachment, step: () => T, endsAttachment = false): Promise<Awaited<T>> {
  const lock = await lockAttachment(key);
  try {
    return await step();
  } finally {
    lock.release(endsAttachment);
  }
}

/**
 * An interface plugin's ADD under its attachment's lock; a failed ADD rolled its attachment back,
 * so its lock file goes too, as after a DEL.
 */
export async function lockedAdd<T>(key: Attachment, add: () => Promise<T>): Promise<T> {
  const lock = await lockAttachment(key);
  let attached = false;
  try {
    const result = await add();
    attached = true;
    return result;
  } finally {
    lock.release(!attached);
  }
}

/**
 * An interface plugin's DEL, the last step of a chain's DEL, under the same lock: an ADD of this
 * container waiting in portmap may go on once it ends, and the lock file goes with the attachment.
 */
export const lockedDel = (key: Attachment, del: () => Promise<void>): Promise<void> =>
  attachmentStep(
    key,
    async () => {
      try {
        await del();
      } finally {
        clearDeleteNotice(key);
      }
    },
    true,
  );
