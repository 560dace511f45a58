import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { hexDigest } from "../../lib/hash.ts";
import type { Attachment } from "../../lib/net/attachment.ts";
import { readNoFollow, removeIfExists, replaceFile } from "../../lib/safe-file.ts";

/**
 * What ADD moved where, kept for a DEL that is not told (an empty CNI_NETNS) or whose namespace is
 * gone: the device's own name and MAC, whether it was up, and the namespace it went to. In /run:
 * gone at reboot, like the namespaces it describes.
 */
const DIR = "/run/tscni/host-device";

export interface Moved {
  name: string;
  mac?: string;
  up: boolean;
  netns: string;
}

const pathOf = (k: Attachment) =>
  join(DIR, `${hexDigest("sha256", `${k.network}\0${k.containerId}\0${k.ifname}`).slice(0, 32)}.json`);

export function saveMoved(k: Attachment, m: Moved) {
  mkdirSync(DIR, { recursive: true, mode: 0o700 });
  replaceFile(pathOf(k), JSON.stringify(m));
}

/** The record of an attachment; one that cannot be read is none (DEL must not fail on it). */
export function readMoved(k: Attachment): Moved | undefined {
  try {
    const text = readNoFollow(pathOf(k));
    const m = text === undefined ? undefined : (JSON.parse(text) as Moved);
    return typeof m?.name === "string" && typeof m.netns === "string" ? m : undefined;
  } catch {
    return undefined;
  }
}

export const forgetMoved = (k: Attachment) => removeIfExists(pathOf(k));
