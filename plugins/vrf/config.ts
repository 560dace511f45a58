import { BaseConfig, parseWith } from "../../lib/cni/config.ts";
import { validateIfname } from "../../lib/cni/env.ts";
import { CniError, Code } from "../../lib/cni/errors.ts";
import * as z from "../../lib/cni/zod.ts";

/**
 * The vrf config: the reference's two keys. `table` 0 is Go's zero value, "not set", as in the
 * reference (the kernel has no table 0 for a VRF either).
 */
const VrfConfig = z.extend(BaseConfig, {
  /** Missing reads as empty, which parseConfig refuses in the reference's words. */
  vrfname: z._default(z.string(), ""),
  table: z.optional(z.number().check(z.int(), z.minimum(0), z.maximum(2 ** 32 - 1))),
});

export type Config = z.infer<typeof VrfConfig>;

export function parseConfig(raw: Record<string, unknown>): Config {
  const c = parseWith(VrfConfig, raw);
  if (!c.vrfname) throw new CniError(Code.InvalidConfig, "configuration is expected to have a valid vrf name");
  // The VRF is a link in the container: a name the kernel (and every tool) takes as one.
  validateIfname(c.vrfname, "vrfname", Code.InvalidConfig);
  return { ...c, table: c.table || undefined };
}
