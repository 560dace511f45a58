import { BaseConfig, parseWith } from "../../lib/cni/config.ts";
import type { CniEnv } from "../../lib/cni/env.ts";
import { CniError, Code } from "../../lib/cni/errors.ts";
import * as z from "../../lib/cni/zod.ts";
import { requestedMac } from "../../lib/net/mac.ts";
import { SublinkKeys, validateMaster } from "../../lib/net/sublink.ts";

/** The macvlan config with the reference's keys and defaults; MAC sources merged as the reference does. */

export const MODES = ["bridge", "private", "vepa", "passthru"] as const;
export type Mode = (typeof MODES)[number];

const MacvlanConfig = z.extend(BaseConfig, {
  ...SublinkKeys,
  mode: z._default(z.string(), ""),
  mac: z.optional(z.string()),
  bcqueuelen: z._default(z.number().check(z.int(), z.minimum(0), z.maximum(0xffffffff)), 0),
  runtimeConfig: z.optional(z.looseObject({ mac: z.optional(z.string()) })),
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
