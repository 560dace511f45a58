import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { delegate } from "../../lib/cni/delegate.ts";
import { CniError, Code } from "../../lib/cni/errors.ts";
import type { PluginImpl, Request } from "../../lib/cni/skel.ts";
import { readNoFollow, readRegularFile, removeIfExists, replaceFile } from "../../lib/safe-file.ts";
import { delegateConfig, parseConfig, type Config } from "./config.ts";
import { loadSubnetEnv } from "./subnet-env.ts";

/**
 * flannel: a meta plugin that turns what the node agent leased (subnet.env) into a bridge +
 * host-local configuration and delegates to it (in-process when the delegate is ours). The
 * delegate config is saved per container before the ADD, so DEL undoes exactly what ADD did even
 * when subnet.env has gone or changed meanwhile.
 */

// subnet.env is a few lines; anything larger is not one.
const readSubnetEnv = (path: string) => readRegularFile(path, 64 * 1024);

const savedPath = (c: Config, req: Request<Config>) => join(c.dataDir, req.containerId);

/** The delegate config as the request's stdin, so a delegate (ours or another binary) reads it. */
function asDelegate(req: Request<Config>, conf: Record<string, unknown>, prevResult?: unknown): Request<Config> {
  const body = prevResult === undefined ? conf : { ...conf, prevResult };
  return { ...req, stdin: Buffer.from(JSON.stringify(body)) };
}

function readSaved(req: Request<Config>): Record<string, unknown> | undefined {
  const text = readNoFollow(savedPath(req.config, req));
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new CniError(
      Code.DecodingFailure,
      `saved delegate config ${savedPath(req.config, req)}: ${(e as Error).message}`,
    );
  }
}

const typeOf = (conf: Record<string, unknown>) => String(conf.type);

const flannel: PluginImpl<Config> = {
  parseConfig: (raw) => parseConfig(raw),

  async add(req) {
    const env = loadSubnetEnv(req.config.subnetFile, readSubnetEnv);
    const conf = delegateConfig(req.config, env);
    mkdirSync(req.config.dataDir, { recursive: true, mode: 0o700 });
    replaceFile(savedPath(req.config, req), JSON.stringify(conf), 0o600);
    try {
      const result = await delegate("ADD", typeOf(conf), asDelegate(req, conf));
      if (!result) throw new CniError(Code.Internal, `delegate ${typeOf(conf)} returned no result`);
      return result;
    } catch (e) {
      // The delegate rolled its own work back; without a saved config a later DEL finds nothing to do.
      removeIfExists(savedPath(req.config, req));
      throw e;
    }
  },

  async del(req) {
    const conf = readSaved(req);
    if (!conf) return; // never added, or already deleted
    await delegate("DEL", typeOf(conf), asDelegate(req, conf, req.config.prevResult));
    removeIfExists(savedPath(req.config, req));
  },

  // Upstream's CHECK does nothing; ours asks the delegate that did the ADD.
  async check(req) {
    const conf = readSaved(req);
    if (!conf)
      throw new CniError(
        Code.InvalidConfig,
        `no saved delegate config for container ${req.containerId}: it was never added`,
      );
    await delegate("CHECK", typeOf(conf), asDelegate(req, conf, req.config.prevResult));
  },

  // Ready once the agent has written subnet.env: before that no ADD can succeed.
  status(req) {
    try {
      loadSubnetEnv(req.config.subnetFile, readSubnetEnv);
    } catch (e) {
      throw new CniError(Code.NotAvailable, (e as Error).message);
    }
  },
};
export default flannel;
