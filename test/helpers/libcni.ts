import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BIN, sh, type Sandbox } from "./sandbox.ts";
import { runPlugin, type PluginRun } from "./plugin-run.ts";

/**
 * CNI clients for integration tests: the Go client built on Debian's libcni (what containerd and
 * Podman's CNI backend run) and our own cnitool. Both take upstream cnitool's command line, and
 * both run inside the sandbox's node namespace, like a runtime on the node.
 */

const SRC_DIR = join(import.meta.dirname, "..", "libcni-client");

/** Same path test/setup.sh builds to: keyed by the source's hash so an edit forces a rebuild. */
export function libcniClientPath(): string {
  if (process.env.TSCNI_LIBCNI_CLIENT) return process.env.TSCNI_LIBCNI_CLIENT;
  const hash = createHash("sha256")
    .update(readFileSync(join(SRC_DIR, "main.go")))
    .digest("hex")
    .slice(0, 16);
  return `/tmp/tscni-libcni-client/${hash}/libcni-client`;
}

let built: string | undefined;

/** The libcni client, built on first use (test/run.sh builds it beforehand). */
export function libcniClient(): string {
  if (built) return built;
  const path = libcniClientPath();
  if (!existsSync(path)) sh(["bash", join(SRC_DIR, "build.sh"), path], { timeoutMs: 600_000 });
  built = path;
  return path;
}

/** Our cnitool, from the build under test. */
export const ourCnitool = () => join(BIN, "cnitool");

export interface ClientEnv {
  /** Directory of .conflist/.conf files (NETCONFPATH). */
  netconfPath: string;
  /** libcni result cache (CNI_CACHE_DIR); keep it inside the sandbox's tmp dir. */
  cacheDir: string;
  cniPath?: string;
  ifname?: string;
  containerId?: string;
  cniArgs?: string;
  capArgs?: unknown;
}

export interface ClientRun extends PluginRun {
  /** The CNI error code a plugin answered with, from "(CNI error code N)" on stderr. */
  cniCode?: number;
}

/** The variables a client reads, from the test's description of the call. */
export function clientVars(env: ClientEnv): Record<string, string> {
  const vars: Record<string, string> = {
    CNI_PATH: env.cniPath ?? BIN,
    NETCONFPATH: env.netconfPath,
    CNI_CACHE_DIR: env.cacheDir,
  };
  if (env.ifname !== undefined) vars.CNI_IFNAME = env.ifname;
  if (env.containerId !== undefined) vars.CNI_CONTAINERID = env.containerId;
  if (env.cniArgs !== undefined) vars.CNI_ARGS = env.cniArgs;
  if (env.capArgs !== undefined) vars.CAP_ARGS = JSON.stringify(env.capArgs);
  return vars;
}

/** Runs a client (`libcniClient()` or `ourCnitool()`) in the node namespace. */
export function runClient(sandbox: Sandbox, client: string, argv: string[], env: ClientEnv): ClientRun {
  const res = runPlugin(sandbox, client, clientVars(env), undefined, { args: argv });
  const m = /CNI error code (\d+)/.exec(res.stderr);
  return { ...res, cniCode: m ? Number(m[1]) : undefined };
}

/** Writes network configuration files into a fresh directory under the sandbox; returns it. */
export function writeNetconf(sandbox: Sandbox, files: Record<string, unknown>, dir = "net.d"): string {
  const path = join(sandbox.tmp, dir);
  mkdirSync(path, { recursive: true });
  for (const [name, content] of Object.entries(files)) {
    writeFileSync(join(path, name), typeof content === "string" ? content : JSON.stringify(content, null, 2));
  }
  return path;
}
