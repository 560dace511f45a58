import { BaseConfig, parseWith } from "../../lib/cni/config.ts";
import type { CniEnv } from "../../lib/cni/env.ts";
import { CniError, Code } from "../../lib/cni/errors.ts";
import { z } from "../../lib/cni/zod.ts";
import { requestedMac } from "../../lib/net/mac.ts";
import { SublinkKeys, validateMaster } from "../../lib/net/sublink.ts";

/** The macvlan config with the reference's keys and defaults; MAC sources merged as the reference does. */

export const MODES = ["bridge", "private", "vepa", "passthru"] as const;
export type Mode = (typeof MODES)[number];

const MacvlanConfig = BaseConfig.extend({
  ...SublinkKeys,
  mode: z.string().default(""),
  mac: z.string().optional(),
  bcqueuelen: z.number().int().min(0).max(0xffffffff).default(0),
  runtimeConfig: z.looseObject({ mac: z.string().optional() }).optional(),
});

export type Config = z.infer<typeof MacvlanConfig> & { mode: Mode };

export function parseConfig(raw: Record<string, unknown>, env: CniEnv): Config {
  const c = parseWith(MacvlanConfig, raw);
  // DEL needs only the IPAM type and the interface: a config that cannot be applied is still removed.
  if (env.command !== "ADD" && env.command !== "CHECK") return { ...c, mode: (c.mode || "bridge") as Mode };
  const mode = c.mode === "" ? "bridge" : c.mode;
  if (!(MODES as readonly string[]).includes(mode))
    throw new CniError(Code.InvalidConfig, `unknown macvlan mode: ${JSON.stringify(c.mode)}`);
  validateMaster(c.master);
  return { ...c, mode: mode as Mode, mac: requestedMac(c, env.args) };
}
