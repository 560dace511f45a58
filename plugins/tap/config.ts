import { BaseConfig, foldKeys, parseWith } from "../../lib/cni/config.ts";
import type { CniEnv } from "../../lib/cni/env.ts";
import { validateIfname } from "../../lib/cni/env.ts";
import { Code } from "../../lib/cni/errors.ts";
import * as z from "../../lib/cni/zod.ts";
import { requestedMac } from "../../lib/net/mac.ts";

/** The tap config with upstream's keys (containernetworking/plugins plugins/main/tap). */

const id = z.number().check(z.int(), z.minimum(0), z.maximum(0xffffffff));

const TapConfig = z.extend(BaseConfig, {
  mac: z.optional(z.string()),
  mtu: z._default(z.number().check(z.int(), z.minimum(0)), 0),
  multiQueue: z._default(z.boolean(), false),
  owner: z.optional(id),
  group: z.optional(id),
  selinuxContext: z.optional(z.string()),
  bridge: z._default(z.string(), ""),
  runtimeConfig: z.optional(z.looseObject({ mac: z.optional(z.string()) })),
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
