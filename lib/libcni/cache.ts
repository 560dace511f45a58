import { chmodSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { NetworkConfigList } from "./conf.ts";
import { goMarshalStruct, isObject } from "./gojson.ts";
import type { RuntimeConf } from "./runtime.ts";
import type { WireResult } from "./results.ts";

// libcni's result cache, byte for byte: a runtime built on libcni and this cnitool can read each
// other's entries (CHECK/DEL after an ADD made by the other, GC over both).

export const DEFAULT_CACHE_DIR = "/var/lib/cni";
export const CACHE_KIND = "cniCacheV1";

/** A cached ADD, as GC sees it. */
export interface Attachment {
  containerId: string;
  network: string;
  ifName: string;
  netns: string;
  cniArgs: [string, string][];
  capabilityArgs?: Record<string, unknown>;
}

const q = JSON.stringify;

/** `<cacheDir>/results/<network>-<containerID>-<ifname>` */
export function cacheFilePath(
  cacheDir: string,
  netName: string,
  rt: Pick<RuntimeConf, "containerId" | "ifName">,
): string {
  if (netName === "" || rt.containerId === "" || rt.ifName === "") {
    throw new Error(
      `cache file path requires network name (${q(netName)}), container ID (${q(rt.containerId)}), and interface name (${q(rt.ifName)})`,
    );
  }
  return join(cacheDir, "results", `${netName}-${rt.containerId}-${rt.ifName}`);
}

/**
 * The entry libcni writes after a successful ADD: its cachedInfo struct in field order, empty
 * netns/cniArgs/capabilityArgs omitted, the list's bytes in base64 and the result with sorted keys.
 */
export function encodeCacheEntry(
  list: Pick<NetworkConfigList, "name" | "bytes">,
  rt: RuntimeConf,
  result: WireResult,
): string {
  return goMarshalStruct([
    ["kind", CACHE_KIND],
    ["containerId", rt.containerId],
    ["config", list.bytes.toString("base64")],
    ["ifName", rt.ifName],
    ["networkName", list.name],
    ["netns", rt.netns || undefined],
    ["cniArgs", rt.args.length > 0 ? rt.args : undefined],
    ["capabilityArgs", rt.capabilityArgs && Object.keys(rt.capabilityArgs).length > 0 ? rt.capabilityArgs : undefined],
    ["result", result],
  ]);
}

/** Directory 0700, file 0600, as libcni creates them. */
export function writeCachedResult(
  cacheDir: string,
  list: Pick<NetworkConfigList, "name" | "bytes">,
  rt: RuntimeConf,
  result: WireResult,
) {
  const file = cacheFilePath(cacheDir, list.name, rt);
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  writeFileSync(file, encodeCacheEntry(list, rt, result), { mode: 0o600 });
  chmodSync(file, 0o600); // an entry left by an earlier ADD keeps its mode otherwise
}

/**
 * The cached result of an earlier ADD, in the version it was stored in; undefined when there is no
 * entry. An entry that is not cniCacheV1 is read as a bare result (libcni's pre-1.0 cache format).
 */
export function readCachedResult(
  cacheDir: string,
  netName: string,
  rt: Pick<RuntimeConf, "containerId" | "ifName">,
): unknown {
  const file = cacheFilePath(cacheDir, netName, rt);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return undefined; // no entry: the plugins get no prevResult
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new Error(`failed to read cached result for network ${q(netName)} from ${file}: ${(e as Error).message}`);
  }
  if (isObject(parsed) && parsed.kind === CACHE_KIND) return parsed.result ?? null;
  return parsed;
}

export function removeCachedResult(cacheDir: string, netName: string, rt: Pick<RuntimeConf, "containerId" | "ifName">) {
  rmSync(cacheFilePath(cacheDir, netName, rt), { force: true });
}

/**
 * Every cniCacheV1 entry of the cache, in filename order (libcni GetCachedAttachments); entries that
 * do not parse are skipped. A missing results directory is an empty cache (as in libcni); undefined
 * only when it exists but cannot be read.
 */
export function cachedAttachments(cacheDir: string): Attachment[] | undefined {
  const dir = join(cacheDir, "results");
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "ENOENT" ? [] : undefined;
  }
  const out: Attachment[] = [];
  for (const name of names) {
    let c: unknown;
    try {
      c = JSON.parse(readFileSync(join(dir, name), "utf8"));
    } catch {
      continue;
    }
    if (!isObject(c) || c.kind !== CACHE_KIND) continue;
    const str = (v: unknown) => (typeof v === "string" ? v : "");
    if (str(c.ifName) === "" || str(c.networkName) === "") continue;
    const cniArgs = Array.isArray(c.cniArgs)
      ? c.cniArgs.filter(
          (p): p is [string, string] => Array.isArray(p) && p.length === 2 && p.every((x) => typeof x === "string"),
        )
      : [];
    out.push({
      containerId: str(c.containerId),
      network: str(c.networkName),
      ifName: str(c.ifName),
      netns: str(c.netns),
      cniArgs,
      capabilityArgs: isObject(c.capabilityArgs) ? c.capabilityArgs : undefined,
    });
  }
  return out;
}
