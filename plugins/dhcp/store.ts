import { mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { hexDigest } from "../../lib/hash.ts";
import { readNoFollow, removeIfExists, replaceFile } from "../../lib/safe-file.ts";
import type { Attachment, Lease } from "./client.ts";

/**
 * The daemon's leases on disk, one file per attachment, so that a restarted daemon resumes
 * renewing the leases of running containers (the reference keeps them only in memory, and after a
 * restart they lapse at the server while the containers keep using the address).
 */

export interface Stored {
  key: string;
  attachment: Attachment;
  lease: Lease;
  priority?: number;
}

interface Wire {
  key: string;
  attachment: Omit<Attachment, "clientId" | "options"> & {
    clientId: number[];
    options: { request: number[]; provide: [number, number[]][] };
  };
  lease: Lease;
  priority?: number;
}

export class LeaseStore {
  constructor(private readonly dir: string) {}

  private file = (key: string) => join(this.dir, `${hexDigest("sha256", key).slice(0, 32)}.json`);

  save(s: Stored) {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const a = s.attachment;
    const wire: Wire = {
      ...s,
      attachment: {
        ...a,
        clientId: [...a.clientId],
        options: { request: a.options.request, provide: a.options.provide.map(([c, v]) => [c, [...v]]) },
      },
    };
    replaceFile(this.file(s.key), JSON.stringify(wire));
  }

  remove(key: string) {
    removeIfExists(this.file(key));
  }

  /** Every stored lease; a file that does not parse is skipped (and left for inspection). */
  load(): Stored[] {
    let names: string[];
    try {
      names = readdirSync(this.dir).filter((n) => n.endsWith(".json"));
    } catch {
      return [];
    }
    const out: Stored[] = [];
    for (const name of names) {
      try {
        const w = JSON.parse(readNoFollow(join(this.dir, name)) ?? "") as Wire;
        const a = w.attachment;
        out.push({
          ...w,
          attachment: {
            ...a,
            clientId: Uint8Array.from(a.clientId),
            options: {
              request: a.options.request,
              provide: a.options.provide.map(([c, v]) => [c, Uint8Array.from(v)]),
            },
          },
        });
      } catch {
        // not ours or damaged: nothing to resume
      }
    }
    return out;
  }
}
