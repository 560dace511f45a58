import { BaseConfig, parseWith } from "../../lib/cni/config.ts";
import type { CniEnv } from "../../lib/cni/env.ts";
import { CniError, Code } from "../../lib/cni/errors.ts";
import * as z from "../../lib/cni/zod.ts";
import { SublinkKeys, validateMaster } from "../../lib/net/sublink.ts";

/** The vlan config with the reference's keys, defaults and messages. */

/** 802.1Q ids 0..4094 (4095 is reserved); the reference's message says "4095 inclusive". */
export const MAX_VLAN_ID = 4094;

const VlanConfig = z.extend(BaseConfig, {
  ...SublinkKeys,
  vlanId: z._default(z.number().check(z.int()), 0),
});

export type Config = z.infer<typeof VlanConfig>;

export function parseConfig(raw: Record<string, unknown>, env: CniEnv): Config {
  const c = parseWith(VlanConfig, raw);
  // DEL needs only the IPAM type and the interface: a config that cannot be applied is still removed
  // (the reference refuses a DEL whose master is gone, leaking the IPAM address).
  if (env.command !== "ADD" && env.command !== "CHECK") return c;
  if (c.master === "")
    throw new CniError(
      Code.InvalidConfig,
      '"master" field is required. It specifies the host interface name to create the VLAN for',
    );
  validateMaster(c.master);
  if (c.vlanId < 0 || c.vlanId > MAX_VLAN_ID)
    throw new CniError(Code.InvalidConfig, `invalid VLAN ID ${c.vlanId} (must be between 0 and 4095 inclusive)`);
  // The reference runs IPAM unconditionally: without one it fails after creating the link.
  if (env.command === "ADD" && !c.ipam?.type)
    throw new CniError(Code.InvalidConfig, "failed to execute IPAM delegate: vlan requires an IPAM configuration");
  return c;
}
