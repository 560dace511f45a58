import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { compareVersions, CURRENT_VERSION } from "../cni/versions.ts";
import { goMarshal, goTypeName, isObject } from "./gojson.ts";

// Network configuration loading, as libcni's conf.go does it (LoadNetworkConf, NetworkConfFromBytes,
// ConfListFromConf), with its error texts, so an operator sees what a libcni runtime would report.

/** One entry of a list's `plugins`. */
export interface PluginConf {
  /** The plugin object as configured; requests are built from copies of it. */
  raw: Record<string, unknown>;
  type: string;
  /** The entry's own `name`, if any: only used to describe the plugin in errors. */
  name: string;
  capabilities: Record<string, boolean>;
}

export interface NetworkConfigList {
  name: string;
  /** The selected version ("" when the file names none; plugins then read it as 0.1.0). */
  cniVersion: string;
  disableCheck: boolean;
  disableGC: boolean;
  loadOnlyInlinedPlugins: boolean;
  plugins: PluginConf[];
  /** The list's bytes as loaded: the result cache records them under "config". */
  bytes: Buffer;
}

export class NotFoundError extends Error {
  constructor(dir: string, name: string) {
    super(`no net configuration with name "${name}" in ${dir}`);
  }
}

export class NoConfigsFoundError extends Error {
  constructor(dir: string) {
    super(`no net configurations found in ${dir}`);
  }
}

/** Go's wording for a JSON value of the wrong kind ("cannot unmarshal array into ..."). */
function jsonKind(v: unknown): string {
  if (Array.isArray(v)) return "array";
  if (typeof v === "boolean") return "bool";
  return typeof v === "object" ? "object" : typeof v;
}

function parseJson(bytes: Buffer | string): unknown {
  return JSON.parse(typeof bytes === "string" ? bytes : bytes.toString("utf8"));
}

/** libcni's version syntax: "" is 0.1.0, otherwise one to three integer parts. */
export function isValidVersion(v: string): boolean {
  return v === "" || /^[+-]?\d+(\.[+-]?\d+){0,2}$/.test(v);
}

/** A plugin object (one `plugins` entry, or a single-plugin .conf file); it must name its `type`. */
export function pluginConf(value: unknown): PluginConf {
  const fail = (why: string) => new Error(`error parsing configuration: ${why}`);
  if (value !== null && !isObject(value))
    throw fail(`json: cannot unmarshal ${jsonKind(value)} into Go value of type types.PluginConf`);
  const raw = value ?? {};
  for (const key of ["cniVersion", "name", "type"]) {
    const v = raw[key];
    if (v !== undefined && v !== null && typeof v !== "string") {
      throw fail(`json: cannot unmarshal ${jsonKind(v)} into Go struct field PluginConf.${key} of type string`);
    }
  }
  const capabilities: Record<string, boolean> = {};
  const caps = raw.capabilities;
  if (caps !== undefined && caps !== null) {
    if (!isObject(caps))
      throw fail(
        `json: cannot unmarshal ${jsonKind(caps)} into Go struct field PluginConf.capabilities of type map[string]bool`,
      );
    for (const [k, v] of Object.entries(caps)) {
      if (typeof v !== "boolean")
        throw fail(`json: cannot unmarshal ${jsonKind(v)} into Go struct field PluginConf.capabilities of type bool`);
      capabilities[k] = v;
    }
  }
  const type = typeof raw.type === "string" ? raw.type : "";
  if (type === "") throw fail("missing 'type'");
  return { raw, type, name: typeof raw.name === "string" ? raw.name : "", capabilities };
}

function pluginConfFromBytes(bytes: Buffer): PluginConf {
  let value: unknown;
  try {
    value = parseJson(bytes);
  } catch (e) {
    throw new Error(`error parsing configuration: ${(e as Error).message}`);
  }
  return pluginConf(value);
}

/** Parses a network configuration list (libcni NetworkConfFromBytes); plugins from a subdirectory are not loaded here. */
export function networkConfFromBytes(bytes: Buffer): NetworkConfigList {
  const fail = (why: string) => new Error(`error parsing configuration list: ${why}`);
  let parsed: unknown;
  try {
    parsed = parseJson(bytes);
  } catch (e) {
    throw fail((e as Error).message);
  }
  if (parsed !== null && !isObject(parsed))
    throw fail(`json: cannot unmarshal ${jsonKind(parsed)} into Go value of type map[string]interface {}`);
  const raw = parsed ?? {};

  if (!("name" in raw)) throw fail("no name");
  if (typeof raw.name !== "string") throw fail(`invalid name type ${goTypeName(raw.name)}`);
  let cniVersion = "";
  if ("cniVersion" in raw) {
    if (typeof raw.cniVersion !== "string") throw fail(`invalid cniVersion type ${goTypeName(raw.cniVersion)}`);
    cniVersion = raw.cniVersion;
  }
  if ("cniVersions" in raw) cniVersion = selectVersion(raw.cniVersions, cniVersion);

  const readBool = (key: string): boolean => {
    const v = raw[key];
    if (v === undefined) return false;
    if (typeof v === "boolean") return v;
    if (typeof v !== "string") throw fail(`invalid type ${goTypeName(v)} for ${key}`);
    const s = v.toLowerCase();
    if (s === "true" || s === "false") return s === "true";
    throw fail(`invalid value ${JSON.stringify(s)} for ${key}`);
  };
  const list: NetworkConfigList = {
    name: raw.name,
    cniVersion,
    disableCheck: readBool("disableCheck"),
    disableGC: readBool("disableGC"),
    loadOnlyInlinedPlugins: readBool("loadOnlyInlinedPlugins"),
    plugins: [],
    bytes,
  };
  if (!("plugins" in raw)) {
    if (list.loadOnlyInlinedPlugins) throw fail("`loadOnlyInlinedPlugins` is true, and no 'plugins' key");
    return list;
  }
  const plugins = raw.plugins;
  if (!Array.isArray(plugins)) throw fail(`invalid 'plugins' type ${goTypeName(plugins)}`);
  if (plugins.length === 0) throw fail("no plugins in list");
  plugins.forEach((p, i) => {
    try {
      list.plugins.push(pluginConf(p));
    } catch (e) {
      throw new Error(`failed to parse plugin config ${i}: ${(e as Error).message}`);
    }
  });
  return list;
}

/**
 * `cniVersions`: versions newer than this implementation (1.1.0) are dropped, and the highest of the
 * rest, `cniVersion` included, is the one the network runs with.
 */
function selectVersion(versions: unknown, cniVersion: string): string {
  const fail = (why: string) => new Error(`error parsing configuration list: ${why}`);
  if (!Array.isArray(versions)) throw fail(`invalid type for cniVersions: ${goTypeName(versions)}`);
  const usable: string[] = [];
  versions.forEach((v, i) => {
    if (typeof v !== "string") throw fail(`invalid type for cniVersions index ${i}: ${goTypeName(v)}`);
    if (!isValidVersion(v)) throw fail(`invalid cniVersions entry ${v} at index ${i}: invalid version "${v}"`);
    if (compareVersions(v, CURRENT_VERSION) <= 0) usable.push(v);
  });
  if (cniVersion !== "") {
    if (!isValidVersion(cniVersion)) throw fail(`invalid cniVersion ${cniVersion}: invalid version "${cniVersion}"`);
    if (compareVersions(cniVersion, CURRENT_VERSION) <= 0) usable.push(cniVersion);
  }
  usable.sort(compareVersions);
  return usable.at(-1) ?? cniVersion;
}

/** Reads a .conflist file; unless `loadOnlyInlinedPlugins`, `<dir>/<name>/*.conf` plugins are appended. */
export function networkConfFromFile(filename: string): NetworkConfigList {
  const list = networkConfFromBytes(readConfFile(filename));
  if (!list.loadOnlyInlinedPlugins) list.plugins.push(...pluginConfsFromDir(join(dirname(filename), list.name)));
  // libcni reports this as an error and leaves it to the caller; a list that runs nothing is one.
  if (list.plugins.length === 0) throw new Error("no plugin configs found");
  return list;
}

function pluginConfsFromDir(dir: string): PluginConf[] {
  let files: string[];
  try {
    files = confFiles(dir, [".conf"]);
  } catch (e) {
    throw new Error(`failed to read plugin config files in ${dir}: ${(e as Error).message}`);
  }
  return files.map((f) => pluginConfFromBytes(readConfFile(f)));
}

function readConfFile(filename: string): Buffer {
  try {
    return readFileSync(filename);
  } catch (e) {
    throw new Error(`error reading ${filename}: ${(e as Error).message}`);
  }
}

/** Files of `dir` (not directories) whose extension is one of `extensions`, sorted; none if `dir` is missing. */
export function confFiles(dir: string, extensions: readonly string[]): string[] {
  let entries: import("node:fs").Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw e;
  }
  return entries
    .filter((e) => !e.isDirectory() && extensions.includes(extension(e.name)))
    .map((e) => join(dir, e.name))
    .sort();
}

// Go's filepath.Ext: from the last dot of the name, so ".conflist" alone has that extension too.
function extension(name: string): string {
  const i = name.lastIndexOf(".");
  return i < 0 ? "" : name.slice(i);
}

/** A single-plugin .conf/.json file. */
export function confFromFile(filename: string): PluginConf {
  return pluginConfFromBytes(readConfFile(filename));
}

/** Up-converts a single plugin configuration to a one-plugin list, as libcni does for .conf files. */
export function confListFromConf(plugin: PluginConf): NetworkConfigList {
  const cniVersion = typeof plugin.raw.cniVersion === "string" ? plugin.raw.cniVersion : "";
  return networkConfFromBytes(Buffer.from(goMarshal({ name: plugin.name, cniVersion, plugins: [plugin.raw] })));
}

function loadSingleConf(dir: string, name: string): PluginConf {
  const files = confFiles(dir, [".conf", ".json"]);
  if (files.length === 0) throw new NoConfigsFoundError(dir);
  for (const f of files) {
    const conf = confFromFile(f);
    if (conf.name === name) return conf;
  }
  throw new NotFoundError(dir, name);
}

/**
 * Finds network `name` in `dir`: *.conflist files first, in filename order, the first with that name
 * wins; then *.conf/*.json single-plugin files, up-converted to a list. A file that fails to parse
 * stops the search, as in libcni.
 */
export function loadNetworkConf(dir: string, name: string): NetworkConfigList {
  const lists = confFiles(dir, [".conflist"]);
  for (const f of lists) {
    const list = networkConfFromFile(f);
    if (list.name === name) return list;
  }
  let single: PluginConf;
  try {
    single = loadSingleConf(dir, name);
  } catch (e) {
    if (lists.length > 0 && e instanceof NoConfigsFoundError) throw new NotFoundError(dir, name);
    throw e;
  }
  return confListFromConf(single);
}

/** What `cnitool <verb> <net>` names: a path to a config file (when it contains '/' and exists), else a network in `confDir`. */
export function loadNetwork(nameOrPath: string, confDir: string): NetworkConfigList {
  if (nameOrPath.includes("/") && exists(nameOrPath)) return loadNetworkFile(nameOrPath);
  try {
    return loadNetworkConf(confDir, nameOrPath);
  } catch (e) {
    throw new Error(`loading network ${JSON.stringify(nameOrPath)} from ${confDir}: ${(e as Error).message}`);
  }
}

function loadNetworkFile(path: string): NetworkConfigList {
  if (path.endsWith(".conflist")) {
    try {
      return networkConfFromFile(path);
    } catch (e) {
      throw new Error(`loading ${path}: ${(e as Error).message}`);
    }
  }
  let conf: PluginConf;
  try {
    conf = confFromFile(path);
  } catch (e) {
    throw new Error(`loading ${path}: ${(e as Error).message}`);
  }
  try {
    return confListFromConf(conf);
  } catch (e) {
    throw new Error(`converting ${path} to a list: ${(e as Error).message}`);
  }
}

function exists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}
