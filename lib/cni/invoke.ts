import { spawnSync } from "node:child_process";
import { statSync } from "node:fs";
import { join } from "node:path";
import { CniError } from "./errors.ts";
import { CURRENT_VERSION } from "./versions.ts";
import { sleepMs } from "../sleep.ts";

// Running plugin executables the way libcni's invoke package does: argv is just the path, the
// parameters are CNI_* variables added to our own environment, the config goes to stdin.

/** The CNI_* parameters of one call; GC and STATUS pass them empty, as libcni does. */
export interface InvokeArgs {
  command: string;
  containerId?: string;
  netns?: string;
  ifName?: string;
  args?: readonly (readonly [string, string])[];
  path: readonly string[];
}

/**
 * Finds the executable for `type` in the CNI_PATH directories; the first regular file wins.
 * Errors are plain ones, as libcni's: no plugin answered, so there is no CNI error code to show.
 */
export function findPlugin(type: string, path: readonly string[]): string {
  if (type === "") throw new Error("no plugin name provided");
  if (type.includes("/")) throw new Error(`invalid plugin name: ${type}`);
  if (path.length === 0) throw new Error("no paths provided");
  for (const dir of path) {
    const candidate = join(dir, type);
    try {
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not in this directory
    }
  }
  throw new Error(`failed to find plugin ${JSON.stringify(type)} in path [${path.join(" ")}]`);
}

/** Our environment plus the call's CNI_* variables (these win over inherited ones). */
export function pluginEnv(a: InvokeArgs, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...base };
  // The multicall executable picks its personality from TSCNI_PLUGIN before its own name: a
  // `TSCNI_PLUGIN=cnitool` we were started with must not turn every plugin into cnitool too.
  delete env.TSCNI_PLUGIN;
  env.CNI_COMMAND = a.command;
  env.CNI_CONTAINERID = a.containerId ?? "";
  env.CNI_NETNS = a.netns ?? "";
  env.CNI_ARGS = (a.args ?? []).map(([k, v]) => `${k}=${v}`).join(";");
  env.CNI_IFNAME = a.ifName ?? "";
  env.CNI_PATH = a.path.join(":");
  return env;
}

const BUSY_RETRIES = 5;
const ERRNO_TEXT: Record<string, string> = {
  EACCES: "permission denied",
  ENOENT: "no such file or directory",
  ENOEXEC: "exec format error",
  ETXTBSY: "text file busy",
};

/**
 * Runs the plugin and returns its stdout. A failure becomes the plugin's own error object (a
 * CniError with its code, msg and details) or, when it printed none, libcni's "netplugin failed"
 * texts. An executable still being written ("text file busy") is retried for a few seconds, as
 * libcni does during plugin upgrades. stderr is passed through after a successful run.
 */
export function execPlugin(pluginPath: string, stdin: string, env: NodeJS.ProcessEnv): string {
  for (let attempt = 0; ; attempt++) {
    const r = spawnSync(pluginPath, [], { input: stdin, env, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
    // A plugin that exits without reading stdin makes the write fail with EPIPE; its answer still counts.
    if (r.error && !((r.error as NodeJS.ErrnoException).code === "EPIPE" && r.status !== null)) {
      const code = (r.error as NodeJS.ErrnoException).code ?? "";
      if (code === "ETXTBSY" && attempt < BUSY_RETRIES) {
        sleepMs(1000);
        continue;
      }
      const why = ERRNO_TEXT[code] ?? r.error.message;
      throw new CniError(0, `netplugin failed with no error message: fork/exec ${pluginPath}: ${why}`);
    }
    if (r.status === 0) {
      if (r.stderr) process.stderr.write(r.stderr);
      return r.stdout;
    }
    throw pluginFailure(r.stdout, r.stderr, r.status === null ? `signal: ${r.signal}` : `exit status ${r.status}`);
  }
}

function pluginFailure(stdout: string, stderr: string, exit: string): CniError {
  if (stdout.length === 0) {
    if (stderr.length === 0) return new CniError(0, `netplugin failed with no error message: ${exit}`);
    return new CniError(0, `netplugin failed: ${JSON.stringify(stderr)}: ${exit}`);
  }
  let e: unknown;
  try {
    e = JSON.parse(stdout);
    if (typeof e !== "object" || e === null || Array.isArray(e)) throw new Error("not a JSON object");
  } catch (err) {
    return new CniError(
      0,
      `netplugin failed but error parsing its diagnostic message ${JSON.stringify(stdout)}: ${(err as Error).message}`,
    );
  }
  const { code, msg, details } = e as { code?: unknown; msg?: unknown; details?: unknown };
  return new CniError(
    typeof code === "number" ? code : 0,
    typeof msg === "string" ? msg : "",
    typeof details === "string" ? details : "",
  );
}

/** What `version <plugin>` reports: libcni's VERSION probe and its decoding of the answer. */
export interface VersionInfo {
  cniVersion: string;
  supportedVersions: string[];
}

export function getVersionInfo(pluginPath: string, base: NodeJS.ProcessEnv = process.env): VersionInfo {
  // Fake values for plugins built against an old skel that insisted on them even for VERSION.
  const env = pluginEnv({ command: "VERSION", netns: "dummy", ifName: "dummy", path: ["dummy"] }, base);
  let stdout: string;
  try {
    stdout = execPlugin(pluginPath, JSON.stringify({ cniVersion: CURRENT_VERSION }), env);
  } catch (e) {
    // A 0.1.0 plugin does not know the verb at all.
    if (e instanceof CniError && e.message === "unknown CNI_COMMAND: VERSION" && e.details === "") {
      return { cniVersion: CURRENT_VERSION, supportedVersions: ["0.1.0"] };
    }
    throw e;
  }
  let info: { cniVersion?: unknown; supportedVersions?: unknown };
  try {
    info = JSON.parse(stdout);
    if (typeof info !== "object" || info === null || Array.isArray(info)) throw new Error("not a JSON object");
  } catch (e) {
    throw new Error(`decoding version info: ${(e as Error).message}`);
  }
  if (typeof info.cniVersion !== "string" || info.cniVersion === "")
    throw new Error("decoding version info: missing field cniVersion");
  const supported = Array.isArray(info.supportedVersions)
    ? info.supportedVersions.filter((v): v is string => typeof v === "string")
    : [];
  if (supported.length === 0) {
    if (info.cniVersion === "0.2.0") return { cniVersion: CURRENT_VERSION, supportedVersions: ["0.1.0", "0.2.0"] };
    throw new Error("decoding version info: missing field supportedVersions");
  }
  return { cniVersion: info.cniVersion, supportedVersions: supported };
}
