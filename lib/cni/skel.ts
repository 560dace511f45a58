import { readSync, writeSync } from "node:fs";
import { appendToRegularFile } from "../safe-file.ts";
import { asCniError, CniError, Code } from "./errors.ts";
import { readEnv, validateNetworkName, type CniEnv, type Command } from "./env.ts";
import { atLeast, compareVersions, CURRENT_VERSION, SUPPORTED_VERSIONS } from "./versions.ts";
import type { Result } from "./result.ts";
import type { NetnsState } from "../kernel/netns.ts";
import { sleepMs } from "../sleep.ts";

/** What a plugin handler gets: the validated environment, its parsed config and the raw stdin. */
export interface Request<C> extends CniEnv {
  config: C;
  /** The exact stdin bytes, handed unchanged to delegated (IPAM) plugins. */
  stdin: Buffer;
  version: string;
  netnsState: NetnsState;
  /** This executable's plugins by type, for delegation without a second process. */
  resolvePlugin: PluginResolver;
}

export interface PluginImpl<C> {
  /** Validates the raw configuration; throws a CniError naming the field. */
  parseConfig(raw: Record<string, unknown>, env: CniEnv): C;
  add(req: Request<C>): Result | Promise<Result>;
  del(req: Request<C>): void | Promise<void>;
  check(req: Request<C>): void | Promise<void>;
  /** Absent handlers answer success, as the reference skel does. */
  status?(req: Request<C>): void | Promise<void>;
  gc?(req: Request<C>): void | Promise<void>;
}

export interface PluginSpec {
  name: string;
  /** Loaded only after VERSION and the cheap checks, so the VERSION path stays tiny. */
  // biome-ignore lint/suspicious/noExplicitAny: each plugin has its own config type; the registry holds them all
  load: () => Promise<PluginImpl<any>>;
  versions?: readonly string[];
}

/** Finds one of this executable's plugins by type; handed down by the entry point (main.ts). */
export type PluginResolver = (type: string) => PluginSpec | undefined;

const noPlugins: PluginResolver = () => undefined;

const MAX_STDIN = 4 * 1024 * 1024;

/** Runs one CNI invocation of `plugin` end to end and returns the process exit code. */
export async function runPlugin(
  plugin: PluginSpec,
  env: NodeJS.ProcessEnv = process.env,
  resolvePlugin: PluginResolver = noPlugins,
): Promise<number> {
  const versions = plugin.versions ?? SUPPORTED_VERSIONS;
  const command = env.CNI_COMMAND ?? "";
  if (command === "") {
    process.stderr.write(
      `CNI ${plugin.name} plugin ${PKG_VERSION}\nCNI protocol versions supported: ${versions.join(", ")}\n`,
    );
    return 0;
  }
  if (command === "VERSION") {
    writeStdout(`${JSON.stringify({ cniVersion: CURRENT_VERSION, supportedVersions: versions })}\n`);
    return 0;
  }
  const seen: Seen = { version: CURRENT_VERSION };
  try {
    const { impl, req } = await prepare(plugin, env, readStdin, seen, resolvePlugin);
    const { version } = req;
    switch (req.command) {
      case "ADD": {
        const result = await impl.add(req);
        const { toWire } = await import("./result.ts");
        let wire: unknown;
        try {
          wire = toWire(result, version);
        } catch (e) {
          // A result the config's version cannot express fails the ADD: undo it like any failure.
          await (async () => impl.del({ ...req, command: "DEL" }))().catch(() => undefined);
          throw e;
        }
        writeStdout(`${JSON.stringify(wire)}\n`);
        break;
      }
      case "DEL":
        await impl.del(req);
        break;
      case "CHECK":
        await impl.check(req);
        break;
      case "STATUS":
        await impl.status?.(req);
        break;
      case "GC":
        await impl.gc?.(req);
        break;
    }
    return 0;
  } catch (e) {
    const err = asCniError(e);
    const out = JSON.stringify(err.toJSON(seen.version));
    writeStdout(`${out}\n`);
    logLine(seen.logFile, `${plugin.name} ${command}: ${out}`);
    if (err.code === Code.Internal && e instanceof Error && !(e instanceof CniError) && env.CNI_DEBUG) {
      process.stderr.write(`${e.stack}\n`);
    }
    return 1;
  }
}

/** What the error path needs from a config that may fail to validate half-way. */
export interface Seen {
  /** The config's cniVersion once it is known to be supported (errors are printed in it). */
  version: string;
  logFile?: string;
}

/**
 * Everything before the plugin acts: the CNI_* variables, stdin, the JSON, the network name, the
 * version and verb, CNI_NETNS, and the plugin's own parseConfig. Nothing here changes the node, so
 * tests can run it in-process on arbitrary input.
 */
export async function prepare(
  plugin: PluginSpec,
  env: NodeJS.ProcessEnv,
  readInput: () => Buffer,
  seen: Seen,
  resolvePlugin: PluginResolver = noPlugins,
): Promise<{ impl: PluginImpl<unknown>; req: Request<unknown> }> {
  const versions = plugin.versions ?? SUPPORTED_VERSIONS;
  const cniEnv = readEnv(env);
  const stdin = readInput();
  let raw: unknown;
  try {
    raw = JSON.parse(stdin.toString("utf8"));
  } catch (e) {
    throw new CniError(Code.DecodingFailure, `error unmarshall network config: ${(e as Error).message}`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new CniError(Code.DecodingFailure, "error unmarshall network config: not a JSON object");
  }
  const conf = raw as Record<string, unknown>;
  if (typeof conf.logFile === "string") seen.logFile = conf.logFile;
  validateNetworkName(conf.name);
  // Missing or empty (libcni passes a conflist's absent version as "") means 0.1.0, as in the reference.
  const v = conf.cniVersion === undefined || conf.cniVersion === "" ? "0.1.0" : conf.cniVersion;
  if (typeof v !== "string") throw new CniError(Code.DecodingFailure, "cniVersion: expected a string");
  if (!versions.includes(v)) {
    throw new CniError(
      Code.IncompatibleVersion,
      "incompatible CNI versions",
      `config is "${v}", plugin supports [${versions.map((x) => `"${x}"`).join(" ")}]`,
    );
  }
  seen.version = v;
  checkVerbAllowed(cniEnv.command, v);

  await installNetlinkCarrier();
  const netnsState = cniEnv.command === "GC" || cniEnv.command === "STATUS" ? "none" : await checkNetns(cniEnv);
  const impl = await plugin.load();
  return {
    impl,
    req: { ...cniEnv, stdin, version: v, netnsState, resolvePlugin, config: impl.parseConfig(conf, cniEnv) },
  };
}

/**
 * Under Bun, links, addresses and routes go over rtnetlink from inside the process (no `ip` spawned
 * for the ops it takes); under plain Node, or without libc, everything stays with iproute2.
 */
async function installNetlinkCarrier() {
  if (!process.versions.bun) return;
  const libc = await (await import("../kernel/libc.ts")).loadLibc();
  if (!libc) return;
  const [{ setLinkCarrier }, { netlinkCarrier }] = await Promise.all([
    import("../kernel/link.ts"),
    import("../kernel/netlink/carrier.ts"),
  ]);
  setLinkCarrier(netlinkCarrier(libc));
}

/**
 * What CNI_NETNS holds. A path that is gone or stale (no namespace behind it) fails ADD and CHECK;
 * DEL treats both as "gone": it releases what the node holds and never enters the path.
 */
async function checkNetns(env: CniEnv): Promise<NetnsState> {
  try {
    return await netnsStateFor(env);
  } catch (e) {
    // The kernel layer's refusal, in CNI terms: this is the plugin edge.
    throw asCniError(e);
  }
}

async function netnsStateFor(env: CniEnv): Promise<NetnsState> {
  const { inspectNetns } = await import("../kernel/netns.ts");
  let state = inspectNetns(env.netns);
  // Container-side work enters the namespace with setns(2) in-process when libc is reachable.
  if (state === "ok" && process.versions.bun) {
    await (await import("../kernel/libc.ts")).loadLibc();
    const setns = await import("../kernel/setns.ts");
    setns.onStuckInNamespace((e) => {
      writeStdout(`${JSON.stringify(asCniError(e).toJSON(CURRENT_VERSION))}\n`);
      process.exit(1);
    });
    try {
      // statfs only says "some namespace": entering it once (and back) proves it is a network one.
      setns.withNetns(env.netns, () => undefined);
    } catch (e) {
      if (env.command !== "DEL") throw e;
      state = "stale";
    }
  }
  if (env.command === "DEL") return state === "stale" ? "gone" : state;
  if (state === "gone") throw new CniError(Code.InvalidEnv, `CNI_NETNS: ${env.netns} does not exist`);
  if (state === "stale") throw new CniError(Code.InvalidEnv, `CNI_NETNS: ${env.netns} is not a network namespace`);
  return state;
}

function checkVerbAllowed(command: Command, version: string) {
  if (command === "CHECK" && !atLeast(version, "0.4.0")) {
    throw new CniError(Code.IncompatibleVersion, "config version does not allow CHECK", `config is "${version}"`);
  }
  if ((command === "GC" || command === "STATUS") && compareVersions(version, "1.1.0") < 0) {
    throw new CniError(Code.IncompatibleVersion, `config version does not allow ${command}`, `config is "${version}"`);
  }
}

/** Reads stdin synchronously with a bound, so a runaway writer cannot exhaust memory. */
function readStdin(): Buffer {
  const chunks: Buffer[] = [];
  let total = 0;
  const buf = Buffer.allocUnsafe(64 * 1024);
  for (;;) {
    let n: number;
    try {
      n = readSync(0, buf, 0, buf.length, null);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "EAGAIN") continue;
      if (code === "EOF") break;
      throw new CniError(Code.IOFailure, `error reading from stdin: ${(e as Error).message}`);
    }
    if (n === 0) break;
    total += n;
    if (total > MAX_STDIN)
      throw new CniError(Code.IOFailure, `network configuration on stdin exceeds ${MAX_STDIN} bytes`);
    chunks.push(Buffer.from(buf.subarray(0, n)));
  }
  return Buffer.concat(chunks);
}

/**
 * Writes all of `text` to stdout before returning. The process exits right after the answer, and
 * an asynchronous write of more than a pipe buffer (64 KiB) would be cut off there.
 */
export function writeStdout(text: string) {
  const buf = Buffer.from(text);
  for (let off = 0; off < buf.length; ) {
    try {
      off += writeSync(1, buf, off);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== "EAGAIN") return; // the reader is gone (EPIPE): nobody is left to tell
      sleepMs(1);
    }
  }
}

/** Diagnostics go to stderr, and also to the config's logFile when it names one. */
export function logLine(logFile: string | undefined, line: string) {
  process.stderr.write(`${line}\n`);
  if (!logFile?.startsWith("/")) return;
  try {
    // A FIFO nobody reads fails at once instead of holding the answer back, and only a regular file
    // is written, never through a symlink: a config cannot aim root's append at a device.
    appendToRegularFile(logFile, `${new Date().toISOString()} ${line}\n`);
  } catch {
    // A broken log file must never turn a result into a failure.
  }
}

declare const __PKG_VERSION__: string | undefined;
const PKG_VERSION = typeof __PKG_VERSION__ === "string" ? __PKG_VERSION__ : "version unknown";
