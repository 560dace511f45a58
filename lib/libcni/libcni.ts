import { CniError } from "../cni/errors.ts";
import { validateContainerId, validateIfname, validateNetworkName } from "../cni/env.ts";
import { compareVersions } from "../cni/versions.ts";
import { cachedAttachments, readCachedResult, removeCachedResult, writeCachedResult } from "./cache.ts";
import { isValidVersion, type NetworkConfigList, type PluginConf } from "./conf.ts";
import { goMarshal } from "./gojson.ts";
import { execPlugin, findPlugin, pluginEnv } from "../cni/invoke.ts";
import { convertResult, decodePluginResult, type WireResult } from "./results.ts";
import type { RuntimeConf } from "./runtime.ts";

// The runtime side of the protocol, as libcni's api.go runs it: chains in order (DEL in reverse),
// prevResult threading, the result cache, capability injection, GC and STATUS.

export interface CniConfig {
  /** CNI_PATH directories. */
  path: string[];
  cacheDir: string;
}

/** An attachment a GC must keep (the spec's `cni.dev/valid-attachments` entries). */
export interface GCAttachment {
  containerID: string;
  ifname: string;
}

const q = JSON.stringify;

/**
 * The stdin of one plugin call (libcni buildOneConfig): the plugin's entry with the list's `name`
 * and `cniVersion`, `prevResult` when there is one, and `runtimeConfig` holding the capability
 * arguments the entry declares true in `capabilities` and the runtime supplied (none: key untouched).
 */
export function buildOneConfig(
  list: Pick<NetworkConfigList, "name" | "cniVersion">,
  plugin: PluginConf,
  prevResult: unknown,
  rt?: Pick<RuntimeConf, "capabilityArgs">,
): string {
  const conf: Record<string, unknown> = { ...plugin.raw, name: list.name, cniVersion: list.cniVersion };
  if (prevResult !== undefined) conf.prevResult = prevResult;
  const runtimeConfig: Record<string, unknown> = {};
  const offered = rt?.capabilityArgs ?? {};
  for (const [capability, declared] of Object.entries(plugin.capabilities)) {
    if (declared && Object.hasOwn(offered, capability)) runtimeConfig[capability] = offered[capability];
  }
  if (Object.keys(runtimeConfig).length > 0) conf.runtimeConfig = runtimeConfig;
  return goMarshal(conf);
}

/**
 * Container ID, network name and interface name become file names (the cache, plugins' state)
 * and kernel names: refused before anything runs, with the skel's rules and CNI error codes.
 */
export function validateAttachment(
  list: Pick<NetworkConfigList, "name">,
  rt: Pick<RuntimeConf, "containerId" | "ifName">,
) {
  validateContainerId(rt.containerId);
  validateNetworkName(list.name);
  validateIfname(rt.ifName, "CNI_IFNAME");
}

/** libcni's version comparison, which refuses what is not a version. */
function versionAtLeast(version: string, min: string): boolean {
  if (!isValidVersion(version)) throw new Error(`invalid version ${q(version)}`);
  return compareVersions(version, min) >= 0;
}

function describe(p: PluginConf): string {
  return `type=${q(p.type)}${p.name ? ` name=${q(p.name)}` : ""}`;
}

/** Prefixes an error's text, keeping the plugin's CNI error code when it has one. */
export function prefixError(prefix: string, e: unknown): Error {
  if (e instanceof CniError) return new CniError(e.code, prefix + e.message, e.details);
  return new Error(prefix + (e instanceof Error ? e.message : String(e)));
}

/** The error as libcni words it: "msg; details" for a plugin's error object. */
export function errorText(e: unknown): string {
  if (e instanceof CniError) return e.details ? `${e.message}; ${e.details}` : e.message;
  return e instanceof Error ? e.message : String(e);
}

function invoke(cfg: CniConfig, plugin: PluginConf, command: string, stdin: string, rt?: RuntimeConf): string {
  const file = findPlugin(plugin.type, cfg.path);
  const env = pluginEnv({
    command,
    containerId: rt?.containerId,
    netns: rt?.netns,
    ifName: rt?.ifName,
    args: rt?.args,
    path: cfg.path,
  });
  return execPlugin(file, stdin, env);
}

/** ADD: the chain in order, each plugin getting the previous one's result; the last result is cached and returned. */
export async function addNetworkList(cfg: CniConfig, list: NetworkConfigList, rt: RuntimeConf): Promise<WireResult> {
  validateAttachment(list, rt);
  let result: WireResult | undefined;
  for (const plugin of list.plugins) {
    try {
      const stdout = invoke(cfg, plugin, "ADD", buildOneConfig(list, plugin, result, rt), rt);
      result = await decodePluginResult(stdout, list.cniVersion);
    } catch (e) {
      throw prefixError(`plugin ${describe(plugin)} failed (add): `, e);
    }
  }
  if (!result) throw new Error(`network ${q(list.name)} has no plugins`);
  try {
    writeCachedResult(cfg.cacheDir, list, rt, result);
  } catch (e) {
    throw prefixError(`failed to set network ${q(list.name)} cached result: `, e);
  }
  return result;
}

/** The cached ADD result in the list's version, or undefined when there is none. */
async function cachedResult(cfg: CniConfig, list: NetworkConfigList, rt: RuntimeConf): Promise<WireResult | undefined> {
  const raw = readCachedResult(cfg.cacheDir, list.name, rt);
  return raw === undefined ? undefined : convertResult(raw, list.cniVersion);
}

/** CHECK (0.4.0 and later): the chain in order, each plugin getting the cached ADD result. */
export async function checkNetworkList(cfg: CniConfig, list: NetworkConfigList, rt: RuntimeConf): Promise<void> {
  if (!versionAtLeast(list.cniVersion, "0.4.0"))
    throw new Error(`configuration version ${q(list.cniVersion)} does not support the CHECK command`);
  if (list.disableCheck) return;
  validateAttachment(list, rt);
  let prev: WireResult | undefined;
  try {
    prev = await cachedResult(cfg, list, rt);
  } catch (e) {
    throw prefixError(`failed to get network ${q(list.name)} cached result: `, e);
  }
  for (const plugin of list.plugins) invoke(cfg, plugin, "CHECK", buildOneConfig(list, plugin, prev, rt), rt);
}

/**
 * DEL: the chain in reverse order; from 0.4.0 each plugin gets the cached ADD result (an unreadable
 * entry is dropped and DEL goes on without it). The entry is removed once every plugin succeeded.
 */
export async function delNetworkList(cfg: CniConfig, list: NetworkConfigList, rt: RuntimeConf): Promise<void> {
  validateAttachment(list, rt);
  let prev: WireResult | undefined;
  if (versionAtLeast(list.cniVersion, "0.4.0")) {
    try {
      prev = await cachedResult(cfg, list, rt);
    } catch {
      removeCachedResult(cfg.cacheDir, list.name, rt);
    }
  }
  for (const plugin of [...list.plugins].reverse()) {
    try {
      invoke(cfg, plugin, "DEL", buildOneConfig(list, plugin, prev, rt), rt);
    } catch (e) {
      throw prefixError(`plugin ${describe(plugin)} failed (delete): `, e);
    }
  }
  // libcni keeps the entry of a pre-0.4.0 list forever (it only removes what it read); the
  // attachment is gone either way, so its entry goes too.
  removeCachedResult(cfg.cacheDir, list.name, rt);
}

/**
 * GC: every cached attachment of this network that is not in `valid` gets a full DEL (with the
 * CNI_ARGS and capability arguments cached at ADD), then, from 1.1.0, every plugin gets GC with
 * `cni.dev/valid-attachments` (and `cni.dev/attachments`, the key of an earlier spec draft).
 * Errors are collected, not fatal. Nothing happens when the cache directory cannot be read.
 */
export async function gcNetworkList(cfg: CniConfig, list: NetworkConfigList, valid: GCAttachment[]): Promise<void> {
  if (list.disableGC) return;
  const attachments = cachedAttachments(cfg.cacheDir);
  if (!attachments) return;
  const keep = new Set(valid.map((a) => `${a.containerID}\0${a.ifname}`));
  const errors: unknown[] = [];
  for (const a of attachments) {
    if (a.network !== list.name || keep.has(`${a.containerId}\0${a.ifName}`)) continue;
    const rt: RuntimeConf = {
      containerId: a.containerId,
      netns: a.netns,
      ifName: a.ifName,
      args: a.cniArgs,
      capabilityArgs: a.capabilityArgs,
    };
    try {
      await delNetworkList(cfg, list, rt);
    } catch (e) {
      errors.push(prefixError(`failed to delete stale attachment ${a.containerId} ${a.ifName}: `, e));
    }
  }
  if (versionAtLeast(list.cniVersion, "1.1.0")) {
    const inject = {
      name: list.name,
      cniVersion: list.cniVersion,
      "cni.dev/valid-attachments": valid,
      "cni.dev/attachments": valid,
    };
    for (const plugin of list.plugins) {
      try {
        invoke(cfg, plugin, "GC", goMarshal({ ...plugin.raw, ...inject }));
      } catch (e) {
        errors.push(prefixError(`failed to GC plugin ${plugin.type}: `, e));
      }
    }
  }
  if (errors.length > 0) throw joinErrors(errors);
}

/** Go's errors.Join: one line per error; the first plugin error's code stays visible. */
function joinErrors(errors: unknown[]): Error {
  const text = errors.map(errorText).join("\n");
  const coded = errors.find((e): e is CniError => e instanceof CniError);
  return coded ? new CniError(coded.code, text) : new Error(text);
}

/**
 * STATUS (1.1.0 and later): asks each plugin in order whether it can take ADDs; the first failure
 * is the answer. An older list is refused as CHECK is (libcni itself answers "fine" without asking).
 */
export async function statusNetworkList(cfg: CniConfig, list: NetworkConfigList): Promise<void> {
  if (!versionAtLeast(list.cniVersion, "1.1.0"))
    throw new Error(`configuration version ${q(list.cniVersion)} does not support the STATUS command`);
  for (const plugin of list.plugins)
    invoke(cfg, plugin, "STATUS", goMarshal({ ...plugin.raw, name: list.name, cniVersion: list.cniVersion }));
}
