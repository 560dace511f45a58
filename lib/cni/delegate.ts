import { spawnSync } from "node:child_process";
import { statSync } from "node:fs";
import { join } from "node:path";
import { CniError, Code } from "./errors.ts";
import type { Result } from "./result.ts";
import { parseResult } from "./result-schema.ts";
import type { Command } from "./env.ts";
import type { Request } from "./skel.ts";

/** Finds a plugin binary by type in CNI_PATH: the first regular file wins, as in libcni. */
export function findInPath(type: string, path: readonly string[]): string {
  if (!type) throw new CniError(Code.InvalidConfig, "no plugin name provided");
  if (type.includes("/") || type === "." || type === "..") throw new CniError(Code.InvalidConfig, `invalid plugin name: ${type}`);
  if (path.length === 0) throw new CniError(Code.InvalidEnv, "no paths provided");
  for (const dir of path) {
    const p = join(dir, type);
    try {
      if (statSync(p).isFile()) return p;
    } catch {
      // not in this directory
    }
  }
  throw new CniError(Code.InvalidConfig, `failed to find plugin "${type}" in path [${path.join(" ")}]`);
}

/**
 * Runs a delegated (IPAM) plugin for `command` with the caller's stdin and environment, as the spec
 * says. When the binary found is this very executable, the plugin runs in-process instead: same
 * code, without paying a second process start-up.
 */
export async function delegate(command: Exclude<Command, "VERSION">, type: string, req: Request<unknown>): Promise<Result | undefined> {
  const file = findInPath(type, req.path);
  const { PLUGINS } = await import("../../plugins/index.ts");
  const spec = PLUGINS[type];
  if (spec && isSelf(file)) {
    const impl = await spec.load();
    const raw = JSON.parse(req.stdin.toString("utf8")) as Record<string, unknown>;
    const sub: Request<unknown> = { ...req, command, config: impl.parseConfig(raw, req) };
    switch (command) {
      case "ADD":
        return impl.add(sub);
      case "DEL":
        return void (await impl.del(sub));
      case "CHECK":
        return void (await impl.check(sub));
      case "STATUS":
        return void (await impl.status?.(sub));
      case "GC":
        return void (await impl.gc?.(sub));
    }
  }
  return execDelegate(file, command, req);
}

function isSelf(file: string): boolean {
  try {
    const a = statSync(file);
    const b = statSync(process.execPath);
    return a.ino === b.ino && a.dev === b.dev;
  } catch {
    return false;
  }
}

function execDelegate(file: string, command: string, req: Request<unknown>): Result | undefined {
  const r = spawnSync(file, [], { input: req.stdin, env: { ...process.env, CNI_COMMAND: command }, encoding: "utf8", maxBuffer: 16 * 1024 * 1024 });
  // EPIPE only means the delegate exited without reading its stdin: its own answer still counts.
  if (r.error && !((r.error as NodeJS.ErrnoException).code === "EPIPE" && r.status !== null)) {
    throw new CniError(Code.Internal, `failed to run ${file}: ${r.error.message}`);
  }
  const stdout = r.stdout.trim();
  if (r.status !== 0) {
    if (stdout === "") {
      const stderr = r.stderr.trim();
      throw new CniError(Code.Internal, stderr ? `netplugin failed: "${stderr}": exit status ${r.status}` : `netplugin failed with no error message: exit status ${r.status}`);
    }
    let e: { code?: number; msg?: string; details?: string };
    try {
      e = JSON.parse(stdout);
    } catch (err) {
      throw new CniError(Code.Internal, `netplugin failed but error parsing its diagnostic message "${stdout}": ${(err as Error).message}`);
    }
    throw new CniError(typeof e.code === "number" ? e.code : Code.Internal, e.msg ?? "", e.details ?? "");
  }
  if (command !== "ADD") return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(stdout);
  } catch (err) {
    throw new CniError(Code.DecodingFailure, `failed to parse ${file} result: ${(err as Error).message}`);
  }
  return parseResult(raw, req.version);
}
