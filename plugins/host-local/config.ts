import * as z from "../../lib/cni/zod.ts";
import { BaseConfig, GcAttachmentKeys, parseWith, validAttachmentsOf } from "../../lib/cni/config.ts";
import { CniError, Code } from "../../lib/cni/errors.ts";
import { parseCniArgs } from "../../lib/cni/args.ts";
import type { Route } from "../../lib/cni/result.ts";
import { canonicalRoute } from "../../lib/cni/route-config.ts";
import { RouteSchema } from "../../lib/cni/result-schema.ts";
import { compareVersions } from "../../lib/cni/versions.ts";
import { formatIP, parseCIDR, parseIP, type IP } from "../../lib/ip/address.ts";
import { canonicalizeRangeSet, InvalidRange, setsOverlap, type RangeSet } from "./range.ts";

export const DEFAULT_DATA_DIR = "/var/lib/cni/networks";

const RangeJson = z.looseObject({
  subnet: z.string(),
  rangeStart: z.optional(z.string()),
  rangeEnd: z.optional(z.string()),
  gateway: z.optional(z.string()),
});
const RangeSetsJson = z.nullish(z.array(z.array(RangeJson)));
const IpList = z.nullish(z.array(z.string()));

/** The host-local configuration: every key of the reference, under `ipam` and as capabilities. */
export const HostLocalConfig = z.extend(BaseConfig, {
  ipam: z.optional(
    z.looseObject({
      type: z.optional(z.string()),
      ranges: RangeSetsJson,
      // Legacy single-range form; becomes a one-range set in front of `ranges`.
      subnet: z.optional(z.string()),
      rangeStart: z.optional(z.string()),
      rangeEnd: z.optional(z.string()),
      gateway: z.optional(z.string()),
      routes: z.nullish(z.array(RouteSchema)),
      dataDir: z.optional(z.string()),
      resolvConf: z.optional(z.string()),
    }),
  ),
  runtimeConfig: z.optional(z.looseObject({ ips: IpList, ipRanges: RangeSetsJson })),
  args: z.optional(z.looseObject({ cni: z.nullish(z.looseObject({ ips: IpList })) })),
  ...GcAttachmentKeys,
});
export type HostLocalConfig = z.infer<typeof HostLocalConfig>;

/** Everything an invocation needs, validated and canonical. */
export interface IpamConfig {
  cniVersion: string;
  network: string;
  /** In the reference's order: runtimeConfig.ipRanges, legacy subnet, ipam.ranges. The index is N of last_reserved_ip.N. */
  rangeSets: RangeSet[];
  /** CNI_ARGS IP, then args.cni.ips, then runtimeConfig.ips; duplicates collapse, prefixes are ignored. */
  requested: IP[];
  routes: Route[];
  dataDir: string;
  resolvConf?: string;
  /** GC only: attachments whose reservations survive (valid-attachments, else attachments). */
  validAttachments?: { containerID: string; ifname: string }[];
}

const invalid = (msg: string) => new CniError(Code.InvalidConfig, msg);

/** The reference's LoadIPAMConfig, with the same messages (code 7 rather than 999). */
export function loadIpamConfig(raw: Record<string, unknown>, cniArgs: string): IpamConfig {
  const conf = parseWith(HostLocalConfig, raw);
  const ipam = conf.ipam;
  if (!ipam) throw invalid("IPAM config missing 'ipam' key");

  const requested = new Map<string, IP>();
  const addRequested = (where: string, text: string) => {
    const ip = requestedIP(text);
    if (!ip) throw invalid(`${where}: invalid IP address ${text}`);
    requested.set(formatIP(ip), ip);
  };
  const envIP = parseCniArgs(cniArgs, ["IP"]).IP;
  if (envIP !== undefined) addRequested("CNI_ARGS IP", envIP);
  for (const t of conf.args?.cni?.ips ?? []) addRequested("args.cni.ips", t);
  for (const t of conf.runtimeConfig?.ips ?? []) addRequested("runtimeConfig.ips", t);

  const inputs = [
    ...(conf.runtimeConfig?.ipRanges ?? []),
    ...(ipam.subnet
      ? [[{ subnet: ipam.subnet, rangeStart: ipam.rangeStart, rangeEnd: ipam.rangeEnd, gateway: ipam.gateway }]]
      : []),
    ...(ipam.ranges ?? []),
  ];
  if (inputs.length === 0) throw invalid("no IP ranges specified");
  const rangeSets = inputs.map((set, i) => {
    try {
      return canonicalizeRangeSet(set);
    } catch (e) {
      if (e instanceof InvalidRange) throw invalid(`invalid range set ${i}: ${e.message}`);
      throw e;
    }
  });

  // Versions before 0.3.0 report at most one address per family (ip4/ip6).
  const perFamily = (f: 4 | 6) => rangeSets.filter((s) => s[0]!.family === f).length;
  if ((perFamily(4) > 1 || perFamily(6) > 1) && compareVersions(conf.cniVersion, "0.3.0") < 0) {
    throw invalid(`CNI version ${conf.cniVersion} does not support more than 1 address per family`);
  }
  for (let i = 0; i < rangeSets.length; i++) {
    for (let j = i + 1; j < rangeSets.length; j++) {
      if (setsOverlap(rangeSets[i]!, rangeSets[j]!)) throw invalid(`range set ${i} overlaps with ${j}`);
    }
  }

  return {
    cniVersion: conf.cniVersion,
    network: conf.name,
    rangeSets,
    requested: [...requested.values()],
    routes: (ipam.routes ?? []).map(canonicalRoute),
    dataDir: ipam.dataDir || DEFAULT_DATA_DIR,
    resolvConf: ipam.resolvConf || undefined,
    validAttachments: validAttachmentsOf(conf),
  };
}

/** An address, optionally with a prefix length that is ignored (the reference's ip.ParseIP). */
function requestedIP(text: string): IP | undefined {
  const cidr = parseCIDR(text);
  if (cidr) return parseIP(formatIP(cidr.ip));
  return parseIP(text);
}
