import { z } from "./zod.ts";
import { CniError, Code } from "./errors.ts";
import { compact } from "./compact.ts";
import { resultFamily } from "./versions.ts";

// Zod schemas of results, loaded only by code that parses one (a prevResult, a delegate's output):
// a plugin that only prints a result never pays for zod.

export const RouteSchema = z.object({
  dst: z.string(),
  gw: z.string().optional(),
  mtu: z.number().int().optional(),
  advmss: z.number().int().optional(),
  priority: z.number().int().optional(),
  table: z.number().int().optional(),
  scope: z.number().int().optional(),
});

export const InterfaceSchema = z.object({
  name: z.string(),
  mac: z.string().optional(),
  mtu: z.number().int().optional(),
  sandbox: z.string().optional(),
  socketPath: z.string().optional(),
  pciID: z.string().optional(),
});

export const IPConfigSchema = z.object({
  interface: z.number().int().nonnegative().optional(),
  address: z.string(),
  gateway: z.string().optional(),
});

export const DNSSchema = z.object({
  nameservers: z.array(z.string()).optional(),
  domain: z.string().optional(),
  search: z.array(z.string()).optional(),
  options: z.array(z.string()).optional(),
});

export type Route = z.infer<typeof RouteSchema>;
export type Interface = z.infer<typeof InterfaceSchema>;
export type IPConfig = z.infer<typeof IPConfigSchema>;
export type DNS = z.infer<typeof DNSSchema>;

export interface Result {
  cniVersion: string;
  interfaces?: Interface[];
  ips?: IPConfig[];
  routes?: Route[];
  dns?: DNS;
}

const CurrentResult = z.object({
  cniVersion: z.string().optional(),
  interfaces: z.array(InterfaceSchema).optional().nullable(),
  ips: z
    .array(IPConfigSchema.extend({ version: z.enum(["4", "6"]).optional() }))
    .optional()
    .nullable(),
  routes: z.array(RouteSchema).optional().nullable(),
  dns: DNSSchema.optional().nullable(),
});

const LegacyIP = z.object({
  ip: z.string(),
  gateway: z.string().optional(),
  routes: z
    .array(z.object({ dst: z.string(), gw: z.string().optional() }))
    .optional()
    .nullable(),
});
const LegacyResult = z.object({
  cniVersion: z.string().optional(),
  ip4: LegacyIP.optional().nullable(),
  ip6: LegacyIP.optional().nullable(),
  dns: DNSSchema.optional().nullable(),
});

/**
 * Parses a result (a prevResult, a delegate's output or a cached result) into the internal shape.
 * A result without cniVersion is taken to be in `assumedVersion`, as libcni does.
 */
export function parseResult(raw: unknown, assumedVersion: string): Result {
  const own = typeof raw === "object" && raw !== null ? (raw as { cniVersion?: unknown }).cniVersion : undefined;
  const version = typeof own === "string" && own !== "" ? own : assumedVersion;
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

function decodeError(e: z.ZodError): CniError {
  const issue = e.issues[0];
  const where = issue?.path.length ? issue.path.join(".") : "result";
  return new CniError(Code.DecodingFailure, `could not parse prevResult: ${where}: ${issue?.message ?? "invalid"}`);
}
