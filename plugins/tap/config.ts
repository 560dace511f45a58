import { BaseConfig, foldKeys, parseWith } from "../../lib/cni/config.ts";
import type { CniEnv } from "../../lib/cni/env.ts";
import { validateIfname } from "../../lib/cni/env.ts";
import { Code } from "../../lib/cni/errors.ts";
import { z } from "../../lib/cni/zod.ts";
import { requestedMac } from "../../lib/net/mac.ts";

/** The tap config with upstream's keys (containernetworking/plugins plugins/main/tap). */

const id = z.number().int().min(0).max(0xffffffff);

const TapConfig = BaseConfig.extend({
  mac: z.string().optional(),
  mtu: z.number().int().min(0).default(0),
  multiQueue: z.boolean().default(false),
  owner: id.optional(),
  group: id.optional(),
  selinuxContext: z.string().optional(),
  bridge: z.string().default(""),
  runtimeConfig: z.looseObject({ mac: z.string().optional() }).optional(),
});

export type Config = z.infer<typeof TapConfig>;

/** Upstream reads its keys as Go's encoding/json does, case-insensitively (`selinuxcontext` too). */
const OWN_KEYS = ["mac", "mtu", "multiQueue", "owner", "group", "selinuxContext", "bridge"];

export function parseConfig(raw: Record<string, unknown>, env: CniEnv): Config {
  const c = parseWith(TapConfig, foldKeys(raw, OWN_KEYS));
  // DEL needs only the IPAM type and the interface: a config that cannot be applied is still removed.
  if (env.command !== "ADD" && env.command !== "CHECK") return c;
  if (c.bridge !== "") validateIfname(c.bridge, "bridge", Code.InvalidConfig);
  return { ...c, mac: requestedMac(c, env.args) };
}
