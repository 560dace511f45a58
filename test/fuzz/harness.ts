import { readFileSync } from "node:fs";
import { join } from "node:path";
import { clone, mutateConfig, mutateEnv, pick, type Json, type Rng } from "./mutate.ts";
import { seededRandom } from "../helpers/reliability.ts";
import { PLUGIN_NAMES } from "../../plugins/index.ts";

/**
 * Fuzz cases: a corpus seed of the plugin, mutated, with a mutated environment, made safe to run.
 * Safe means every path a plugin could write or read without bound is one the test chose: dataDir,
 * logFile, resolvConf and subnetFile wherever they appear are replaced by sandbox paths (a missing dataDir
 * would mean /var/lib/cni/networks or /run/cni/tuning on the machine), and CNI_NETNS is only ever
 * a namespace the test made, a path that is not one, or the plugin's own (which must be refused).
 * Each case has its own random source derived from (seed, plugin, index), so one case replays alone.
 */
// Every plugin of the registry: a new one fails here until test/fuzz/corpus/<name>.json seeds it.
export const FUZZ_PLUGINS = PLUGIN_NAMES;
export type FuzzPlugin = string;

export interface FuzzPaths {
  /** host-local dataDir (several configs may share it). */
  dataDir: string;
  /** tuning dataDir. */
  tuningDir: string;
  /** A resolv.conf to read. */
  resolv: string;
  /** A flannel subnet.env the flannel corpus points at. */
  subnetEnv: string;
  logFile: string;
  /** Container namespace path for the plugin's CNI_NETNS. */
  netns: string;
  /** Other CNI_NETNS values: gone, a regular file, empty, the plugin's own namespace. */
  badNetns: string[];
  /** Other resolvConf values (e.g. /dev/null, a directory, /dev/zero, a FIFO for binary runs). */
  oddResolv: string[];
  /** Other dataDir values (a regular file, a second directory). */
  oddDataDirs: string[];
  bin: string;
}

export interface FuzzCase {
  plugin: FuzzPlugin;
  index: number;
  env: Record<string, string>;
  config: Json;
  /** What was mutated, for the failure report. */
  steps: string[];
}

const CORPUS_DIR = join(import.meta.dirname, "corpus");

const corpora = new Map<string, Json[]>();

/** The plugin's seed configs with the sandbox's paths filled in (read once per paths). */
export function corpus(plugin: FuzzPlugin, p: FuzzPaths): Json[] {
  const key = `${plugin}\0${p.dataDir}\0${p.netns}`;
  const cached = corpora.get(key);
  if (cached) return cached;
  const text = readFileSync(join(CORPUS_DIR, `${plugin}.json`), "utf8")
    .replaceAll("@DATADIR@", p.dataDir)
    .replaceAll("@TUNINGDIR@", p.tuningDir)
    .replaceAll("@RESOLV@", p.resolv)
    .replaceAll("@SUBNETENV@", p.subnetEnv)
    .replaceAll("@NETNS@", p.netns);
  const seeds = JSON.parse(text) as Json[];
  corpora.set(key, seeds);
  return seeds;
}

/** A number per (seed, plugin, index), so cases are independent of how many ran before. */
function caseSeed(seed: number, plugin: FuzzPlugin, index: number): number {
  let h = seed ^ 0x9e3779b9;
  for (const c of `${plugin}#${index}`) h = Math.imul(h ^ c.charCodeAt(0), 0x01000193) >>> 0;
  return h >>> 0;
}

export function makeCase(seed: number, plugin: FuzzPlugin, index: number, p: FuzzPaths): FuzzCase {
  const rng = seededRandom(caseSeed(seed, plugin, index));
  const seeds = corpus(plugin, p);
  const { config, steps } = mutateConfig(pick(rng, seeds), rng);
  const env: Record<string, string> = {
    CNI_COMMAND: "ADD",
    CNI_CONTAINERID: `fz-${plugin}-${index}`,
    CNI_NETNS: p.netns,
    CNI_IFNAME: "eth0",
    CNI_PATH: p.bin,
  };
  const netnsChoices = [p.netns, p.netns, p.netns, ...p.badNetns];
  const pathChoices = [p.bin, p.bin, `/nonexistent:${p.bin}`, "/nonexistent", "relative/dir", ":::", ""];
  steps.push(...mutateEnv(env, rng, netnsChoices, pathChoices));
  return { plugin, index, env, config: pin(config, p, rng), steps };
}

const PATH_KEYS = new Set(["dataDir", "logFile", "resolvConf", "subnetFile"]);

/** Makes a mutated config safe to run (see the module comment); non-string values stay as mutated. */
export function pin(config: Json, p: FuzzPaths, rng: Rng): Json {
  // Iterative: mutated configs may be nested thousands deep.
  const stack: Json[] = [config];
  while (stack.length > 0) {
    const v = stack.pop()!;
    if (Array.isArray(v)) stack.push(...v);
    else if (v !== null && typeof v === "object") {
      for (const k of Object.keys(v)) {
        if (PATH_KEYS.has(k) && typeof v[k] === "string") v[k] = safePath(k, v[k] as string, p, rng);
        else stack.push(v[k]!);
      }
    }
  }
  if (config !== null && typeof config === "object" && !Array.isArray(config)) {
    // Absent (or null, or ""), the plugins fall back to directories on the machine.
    if (config.dataDir === undefined || config.dataDir === null || config.dataDir === "") config.dataDir = p.tuningDir;
    // flannel's delegate gets host-local IPAM even without an ipam key, defaulting to the machine's store.
    if (config.type === "flannel" && config.ipam === undefined) config.ipam = {};
    const ipam = config.ipam;
    if (
      ipam !== null &&
      typeof ipam === "object" &&
      !Array.isArray(ipam) &&
      (ipam.dataDir === undefined || ipam.dataDir === null || ipam.dataDir === "")
    )
      ipam.dataDir = p.dataDir;
  }
  return config;
}

function safePath(key: string, value: string, p: FuzzPaths, rng: Rng): string {
  if (key === "logFile") return p.logFile;
  if (key === "resolvConf") return value === p.resolv && rng() < 0.5 ? value : pick(rng, [p.resolv, ...p.oddResolv]);
  if (key === "subnetFile")
    return value === p.subnetEnv && rng() < 0.5 ? value : pick(rng, [p.subnetEnv, ...p.oddResolv]);
  return value === p.dataDir || value === p.tuningDir ? value : pick(rng, [p.dataDir, p.tuningDir, ...p.oddDataDirs]);
}

/** The case as a replayable description for a failure message. */
export function describe(c: FuzzCase, seed: number): string {
  const config = JSON.stringify(c.config);
  return [
    `plugin ${c.plugin}, case ${c.index} (replay: TSCNI_SEED=${seed}, then case ${c.plugin}#${c.index})`,
    `mutations: ${c.steps.join("; ")}`,
    `env: ${JSON.stringify(c.env).slice(0, 400)}`,
    `config: ${config.length > 600 ? `${config.slice(0, 600)}… (${config.length} chars)` : config}`,
  ].join("\n      ");
}

export { clone };
