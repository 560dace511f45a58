import { statSync } from "node:fs";
import { CniError, Code } from "./errors.ts";
import { execPlugin, findPlugin } from "./invoke.ts";
import type { Result } from "./result.ts";
import { parseResult } from "./result-schema.ts";
import type { Command } from "./env.ts";
import type { Request } from "./skel.ts";

/** Finds a plugin binary by type in CNI_PATH, as libcni does; a miss is a config error. */
export function findInPath(type: string, path: readonly string[]): string {
  try {
    return findPlugin(type, path);
  } catch (e) {
    throw new CniError(path.length === 0 ? Code.InvalidEnv : Code.InvalidConfig, (e as Error).message);
  }
}

/**
 * Runs a delegated (IPAM) plugin for `command` with the caller's stdin and environment, as the spec
 * says. When the binary found is this very executable, the plugin runs in-process instead: same
 * code, without paying a second process start-up.
 */
export async function delegate(
  command: Exclude<Command, "VERSION">,
  type: string,
  req: Request<unknown>,
): Promise<Result | undefined> {
  // The delegate gets the caller's stdin, so a plugin named as its own IPAM would run itself again
  // with the same config, forever (in-process, the second run waits on the first's attachment
  // lock). Nothing can have been allocated that way: DEL has nothing to release.
  if (type === (req.config as { type?: unknown } | undefined)?.type) {
    if (command === "DEL") return undefined;
    throw new CniError(Code.InvalidConfig, `ipam type "${type}" is the plugin itself`);
  }
  const file = findInPath(type, req.path);
  const spec = req.resolvePlugin(type);
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
  // The caller's whole environment with only CNI_COMMAND replaced, as the spec's delegation says.
  const env: NodeJS.ProcessEnv = { ...process.env, CNI_COMMAND: command };
  delete env.TSCNI_PLUGIN;
  const stdout = execPlugin(file, req.stdin.toString("utf8"), env);
  if (command !== "ADD") return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(stdout);
  } catch (err) {
    throw new CniError(Code.DecodingFailure, `failed to parse ${file} result: ${(err as Error).message}`);
  }
  return parseResult(raw, req.version);
}
