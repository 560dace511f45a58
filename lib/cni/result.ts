import { z } from "zod";
import { CniError, Code } from "./errors.ts";
import { resultFamily } from "./versions.ts";

// Internal results always have the 1.x shape; conversion to older shapes happens only at the edge.

export const Route = z.object({
  dst: z.string(),
  gw: z.string().optional(),
  mtu: z.number().int().optional(),
  advmss: z.number().int().optional(),
  priority: z.number().int().optional(),
  table: z.number().int().optional(),
  scope: z.number().int().optional(),
});
export type Route = z.infer<typeof Route>;

export const Interface = z.object({
  name: z.string(),
  mac: z.string().optional(),
  mtu: z.number().int().optional(),
  sandbox: z.string().optional(),
  socketPath: z.string().optional(),
  pciID: z.string().optional(),
});
export type Interface = z.infer<typeof Interface>;

export const IPConfig = z.object({
  interface: z.number().int().nonnegative().optional(),
  address: z.string(),
  gateway: z.string().optional(),
});
export type IPConfig = z.infer<typeof IPConfig>;

export const DNS = z.object({
  nameservers: z.array(z.string()).optional(),
  domain: z.string().optional(),
  search: z.array(z.string()).optional(),
  options: z.array(z.string()).optional(),
});
export type DNS = z.infer<typeof DNS>;

export interface Result {
  cniVersion: string;
  interfaces?: Interface[];
  ips?: IPConfig[];
  routes?: Route[];
  dns?: DNS;
}

const CurrentResult = z.object({
  cniVersion: z.string().optional(),
  interfaces: z.array(Interface).optional().nullable(),
  ips: z.array(IPConfig.extend({ version: z.enum(["4", "6"]).optional() })).optional().nullable(),
  routes: z.array(Route).optional().nullable(),
  dns: DNS.optional().nullable(),
});

const LegacyIP = z.object({
  ip: z.string(),
  gateway: z.string().optional(),
  routes: z.array(z.object({ dst: z.string(), gw: z.string().optional() })).optional().nullable(),
});
const LegacyResult = z.object({
  cniVersion: z.string().optional(),
  ip4: LegacyIP.optional().nullable(),
  ip6: LegacyIP.optional().nullable(),
  dns: DNS.optional().nullable(),
});

export const isV6 = (addr: string) => addr.includes(":");

/**
 * Parses a result (a prevResult, a delegate's output or a cached result) into the internal shape.
 * A result without cniVersion is taken to be in `assumedVersion`, as libcni does.
 */
export function parseResult(raw: unknown, assumedVersion: string): Result {
  const version =
    typeof raw === "object" && raw !== null && typeof (raw as { cniVersion?: unknown }).cniVersion === "string"
      ? (raw as { cniVersion: string }).cniVersion
      : assumedVersion;
  if (resultFamily(version) === "legacy") {
    const r = LegacyResult.safeParse(raw);
    if (!r.success) throw decodeError(r.error);
    const ips: IPConfig[] = [];
    const routes: Route[] = [];
    for (const l of [r.data.ip4, r.data.ip6]) {
      if (!l) continue;
      ips.push(compact({ address: l.ip, gateway: l.gateway }));
      for (const rt of l.routes ?? []) routes.push(compact({ dst: rt.dst, gw: rt.gw }));
    }
    return compact({ cniVersion: version, ips, routes, dns: r.data.dns ?? undefined });
  }
  const r = CurrentResult.safeParse(raw);
  if (!r.success) throw decodeError(r.error);
  return compact({
    cniVersion: version,
    interfaces: r.data.interfaces ?? undefined,
    ips: r.data.ips?.map(({ version: _v, ...ip }) => ip),
    routes: r.data.routes ?? undefined,
    dns: r.data.dns ?? undefined,
  });
}

/** Renders an internal result in the wire shape of `version` (the spec's converters). */
export function toWire(result: Result, version: string): Record<string, unknown> {
  const dns = result.dns && Object.keys(result.dns).length > 0 ? result.dns : undefined;
  switch (resultFamily(version)) {
    case "v1":
      return compact({ cniVersion: version, interfaces: nonEmpty(result.interfaces), ips: nonEmpty(result.ips), routes: nonEmpty(result.routes), dns });
    case "v04":
      return compact({
        cniVersion: version,
        interfaces: nonEmpty(result.interfaces?.map(({ name, mac, sandbox }) => compact({ name, mac, sandbox }))),
        ips: nonEmpty(result.ips?.map((ip) => compact({ version: isV6(ip.address) ? "6" : "4", ...ip }))),
        routes: nonEmpty(result.routes),
        dns: dns ?? {},
      });
    case "legacy": {
      const ip4 = result.ips?.find((ip) => !isV6(ip.address));
      const ip6 = result.ips?.find((ip) => isV6(ip.address));
      if (!ip4 && !ip6) throw new CniError(Code.Internal, "cannot convert: no valid IP addresses");
      const legacy = (ip: IPConfig | undefined, v6: boolean) => {
        if (!ip) return undefined;
        const routes = (result.routes ?? []).filter((r) => isV6(r.dst) === v6).map((r) => compact({ dst: r.dst, gw: r.gw }));
        return compact({ ip: ip.address, gateway: ip.gateway, routes: nonEmpty(routes) });
      };
      return compact({ cniVersion: version, ip4: legacy(ip4, false), ip6: legacy(ip6, true), dns: dns ?? {} });
    }
  }
}

function decodeError(e: z.ZodError): CniError {
  const issue = e.issues[0];
  const where = issue?.path.length ? issue.path.join(".") : "result";
  return new CniError(Code.DecodingFailure, `could not parse prevResult: ${where}: ${issue?.message ?? "invalid"}`);
}

function nonEmpty<T>(a: T[] | undefined): T[] | undefined {
  return a && a.length > 0 ? a : undefined;
}

/** Drops undefined and empty-array fields so the JSON matches the reference's omitempty output. */
export function compact<T extends Record<string, unknown>>(o: T): T {
  for (const k of Object.keys(o)) {
    const v = o[k];
    if (v === undefined || (Array.isArray(v) && v.length === 0)) delete o[k];
  }
  return o;
}
