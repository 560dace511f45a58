import { BaseConfig, parseWith } from "../../lib/cni/config.ts";
import type { CniEnv } from "../../lib/cni/env.ts";
import { CniError, Code } from "../../lib/cni/errors.ts";
import * as z from "../../lib/cni/zod.ts";
import { SublinkKeys, validateMaster } from "../../lib/net/sublink.ts";

/** The ipvlan config with the reference's keys and defaults. */

export const MODES = ["l2", "l3", "l3s"] as const;
export type Mode = (typeof MODES)[number];

const IpvlanConfig = z.extend(BaseConfig, {
  ...SublinkKeys,
  mode: z._default(z.string(), ""),
});

export type Config = z.infer<typeof IpvlanConfig> & { mode: Mode };

export function parseConfig(raw: Record<string, unknown>, env: CniEnv): Config {
  const c = parseWith(IpvlanConfig, raw);
  const mode = c.mode === "" ? "l2" : c.mode;
  // DEL needs only the IPAM type and the interface: a config that cannot be applied is still removed.
  if (env.command !== "ADD" && env.command !== "CHECK") return { ...c, mode: mode as Mode };
  if (!(MODES as readonly string[]).includes(mode))
    throw new CniError(Code.InvalidConfig, `unknown ipvlan mode: ${JSON.stringify(c.mode)}`);
  validateMaster(c.master);
  return { ...c, mode: mode as Mode };
}
