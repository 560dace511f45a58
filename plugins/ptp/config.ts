import { BaseConfig, GcAttachmentKeys, parseWith } from "../../lib/cni/config.ts";
import type { CniEnv } from "../../lib/cni/env.ts";
import { CniError, Code } from "../../lib/cni/errors.ts";
import * as z from "../../lib/cni/zod.ts";
import { NETFILTER_BACKENDS } from "../../lib/netfilter/backend.ts";

/** The reference ptp plugin's keys, with its defaults. */
const PtpConfig = z.extend(BaseConfig, {
  ipMasq: z._default(z.boolean(), false),
  ipMasqBackend: z.optional(z.string()),
  mtu: z._default(z.number().check(z.int()), 0),
  ...GcAttachmentKeys,
});

export type Config = z.infer<typeof PtpConfig>;

export function parseConfig(raw: Record<string, unknown>, env: CniEnv): Config {
  const c = parseWith(PtpConfig, raw);
  if (env.command === "ADD") validateForAdd(c);
  return c;
}

/** Refused before anything exists (the reference finds these half-way through, or never). */
function validateForAdd(c: Config) {
  // ptp routes through the gateways IPAM hands out: without IPAM there is nothing to route.
  if (!c.ipam?.type) throw new CniError(Code.InvalidConfig, "ptp: an ipam section with a type is required");
  if (c.mtu !== 0 && (c.mtu < 68 || c.mtu > 65535))
    throw new CniError(Code.InvalidConfig, `invalid MTU ${c.mtu} (must be 0 or between 68 and 65535)`);
  if (c.ipMasqBackend !== undefined && !(NETFILTER_BACKENDS as readonly string[]).includes(c.ipMasqBackend))
    throw new CniError(Code.InvalidConfig, `unknown ipmasq backend "${c.ipMasqBackend}"`);
}
