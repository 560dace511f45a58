import { BaseConfig, parseWith } from "../../lib/cni/config.ts";
import type { CniEnv } from "../../lib/cni/env.ts";
import { CniError, Code } from "../../lib/cni/errors.ts";
import type { z } from "../../lib/cni/zod.ts";

/** The reference dummy plugin has only the common keys; its `ipam` is required. */
const DummyConfig = BaseConfig;

export type Config = z.infer<typeof DummyConfig>;

export function parseConfig(raw: Record<string, unknown>, env: CniEnv): Config {
  const c = parseWith(DummyConfig, raw);
  // A dummy link carries nothing but its addresses: without IPAM it would be pointless. DEL still
  // goes ahead, so a link made by a config later broken is removed.
  if ((env.command === "ADD" || env.command === "CHECK") && !c.ipam?.type)
    throw new CniError(Code.InvalidConfig, "dummy interface requires an IPAM configuration");
  return c;
}
