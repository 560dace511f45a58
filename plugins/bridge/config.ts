import { parseCniArgs } from "../../lib/cni/args.ts";
import { BaseConfig, GcAttachmentKeys, parseWith } from "../../lib/cni/config.ts";
import { validateIfname, type CniEnv } from "../../lib/cni/env.ts";
import { CniError, Code } from "../../lib/cni/errors.ts";
import * as z from "../../lib/cni/zod.ts";
import { parseUnicastMac } from "../../lib/net/mac.ts";
import { NETFILTER_BACKENDS } from "../../lib/netfilter/backend.ts";

/** Config values the bridge plugin normalises, with the reference's error messages. */

export interface TrunkEntry {
  minID?: number;
  maxID?: number;
  id?: number;
}

const bad = (msg: string) => new CniError(Code.InvalidConfig, msg);
const inRange = (v: number) => v > 0 && v <= 4094;

/** vlanTrunk entries (ranges and/or single ids) as one sorted list without duplicates. */
export function collectVlanTrunk(entries: readonly TrunkEntry[] | undefined): number[] {
  const vlans = new Set<number>();
  for (const e of entries ?? []) {
    if (e.minID !== undefined && e.maxID !== undefined) {
      if (!inRange(e.minID)) throw bad("incorrect trunk minID parameter");
      if (!inRange(e.maxID)) throw bad("incorrect trunk maxID parameter");
      if (e.maxID < e.minID) throw bad("minID is greater than maxID in trunk parameter");
      for (let v = e.minID; v <= e.maxID; v++) vlans.add(v);
    } else if (e.maxID !== undefined) {
      throw bad("minID and maxID should be configured simultaneously, minID is missing");
    } else if (e.minID !== undefined) {
      throw bad("minID and maxID should be configured simultaneously, maxID is missing");
    }
    if (e.id !== undefined) {
      if (!inRange(e.id)) throw bad("incorrect trunk id parameter");
      vlans.add(e.id);
    }
  }
  return [...vlans].sort((a, b) => a - b);
}

/**
 * A 48-bit MAC in any of Go's notations (aa:bb:.., aa-bb-.., aabb.ccdd.eeff), as lowercase
 * colon-separated text. A multicast address cannot be an interface's and is refused here rather
 * than half-way through creating the pair.
 */
/** The container MAC (config, args or CNI_ARGS). */
export const parseMac = (text: string): string => parseUnicastMac(text, "mac");

const BridgeConfig = z.extend(BaseConfig, {
  bridge: z._default(z.string(), "cni0"),
  isGateway: z._default(z.boolean(), false),
  isDefaultGateway: z._default(z.boolean(), false),
  forceAddress: z._default(z.boolean(), false),
  ipMasq: z._default(z.boolean(), false),
  ipMasqBackend: z.optional(z.string()),
  mtu: z._default(z.number().check(z.int()), 0),
  hairpinMode: z._default(z.boolean(), false),
  promiscMode: z._default(z.boolean(), false),
  vlan: z._default(z.number().check(z.int()), 0),
  vlanTrunk: z.optional(
    z.array(
      z.object({
        minID: z.optional(z.number().check(z.int())),
        maxID: z.optional(z.number().check(z.int())),
        id: z.optional(z.number().check(z.int())),
      }),
    ),
  ),
  preserveDefaultVlan: z._default(z.boolean(), false),
  macspoofchk: z._default(z.boolean(), false),
  enabledad: z._default(z.boolean(), false),
  disableContainerInterface: z._default(z.boolean(), false),
  portIsolation: z._default(z.boolean(), false),
  args: z.optional(z.looseObject({ cni: z.optional(z.looseObject({ mac: z.optional(z.string()) })) })),
  runtimeConfig: z.optional(z.looseObject({ mac: z.optional(z.string()) })),
  ...GcAttachmentKeys,
});

export type Config = z.infer<typeof BridgeConfig> & {
  /** Container MAC: CNI_ARGS MAC, then args.cni.mac, then runtimeConfig.mac (last wins). */
  mac?: string;
  /** vlanTrunk as a sorted, de-duplicated VLAN list. */
  trunk: number[];
};

/** The bridge config, with MAC sources merged and vlanTrunk flattened; ADD-only checks on ADD. */
export function parseConfig(raw: Record<string, unknown>, env: CniEnv): Config {
  const c = parseWith(BridgeConfig, raw);
  if (c.isDefaultGateway) c.isGateway = true;
  if (c.vlan < 0 || c.vlan > 4094)
    throw new CniError(Code.InvalidConfig, `invalid VLAN ID ${c.vlan} (must be between 0 and 4094)`);
  const trunk = collectVlanTrunk(c.vlanTrunk);
  if (c.disableContainerInterface && c.ipam?.type)
    throw new CniError(Code.InvalidConfig, "cannot use IPAM when DisableContainerInterface flag is set");
  const cniArgs = env.command === "GC" || env.command === "STATUS" ? {} : parseCniArgs(env.args, ["MAC"]);
  const mac = c.runtimeConfig?.mac || c.args?.cni?.mac || cniArgs.MAC || undefined;
  const conf: Config = { ...c, trunk, mac };
  if (env.command === "ADD") validateForAdd(conf);
  return conf;
}

/** What only matters when something is about to be created: refused before anything exists. */
function validateForAdd(c: Config) {
  validateIfname(c.bridge, "bridge", Code.InvalidConfig);
  if (c.mtu !== 0 && (c.mtu < 68 || c.mtu > 65535))
    throw new CniError(Code.InvalidConfig, `invalid MTU ${c.mtu} (must be 0 or between 68 and 65535)`);
  if (c.hairpinMode && c.promiscMode)
    throw new CniError(Code.InvalidConfig, "cannot set hairpin mode and promiscuous mode at the same time");
  if (c.ipMasqBackend !== undefined && !(NETFILTER_BACKENDS as readonly string[]).includes(c.ipMasqBackend)) {
    throw new CniError(Code.InvalidConfig, `unknown ipmasq backend "${c.ipMasqBackend}"`);
  }
  if (c.mac !== undefined) c.mac = parseMac(c.mac);
}
