import * as z from "./zod.ts";
import { CniError, Code } from "./errors.ts";
import { compact } from "./compact.ts";
import { resultFamily } from "./versions.ts";

// Zod schemas of results, loaded only by code that parses one (a prevResult, a delegate's output):
// a plugin that only prints a result never pays for zod.

export const RouteSchema = z.object({
  dst: z.string(),
  gw: z.optional(z.string()),
  mtu: z.optional(z.number().check(z.int())),
  advmss: z.optional(z.number().check(z.int())),
  priority: z.optional(z.number().check(z.int())),
  table: z.optional(z.number().check(z.int())),
  scope: z.optional(z.number().check(z.int())),
});

export const InterfaceSchema = z.object({
  name: z.string(),
  mac: z.optional(z.string()),
  mtu: z.optional(z.number().check(z.int())),
  sandbox: z.optional(z.string()),
  socketPath: z.optional(z.string()),
  pciID: z.optional(z.string()),
});

export const IPConfigSchema = z.object({
  interface: z.optional(z.number().check(z.int(), z.nonnegative())),
  address: z.string(),
  gateway: z.optional(z.string()),
});

export const DNSSchema = z.object({
  nameservers: z.optional(z.array(z.string())),
  domain: z.optional(z.string()),
  search: z.optional(z.array(z.string())),
  options: z.optional(z.array(z.string())),
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

// Built on first use, not at import: config.ts and host-local load this module for its route and
// DNS schemas, and most processes (a bridge ADD with host-local in-process) never parse a result.
let resultSchemas: ReturnType<typeof buildResultSchemas> | undefined;

function buildResultSchemas() {
  const LegacyIP = z.object({
    ip: z.string(),
    gateway: z.optional(z.string()),
    routes: z.nullable(z.optional(z.array(z.object({ dst: z.string(), gw: z.optional(z.string()) })))),
  });
  return {
    current: z.object({
      cniVersion: z.optional(z.string()),
      interfaces: z.nullable(z.optional(z.array(InterfaceSchema))),
      ips: z.nullable(z.optional(z.array(z.extend(IPConfigSchema, { version: z.optional(z.enum(["4", "6"])) })))),
      routes: z.nullable(z.optional(z.array(RouteSchema))),
      dns: z.nullable(z.optional(DNSSchema)),
    }),
    legacy: z.object({
      cniVersion: z.optional(z.string()),
      ip4: z.nullable(z.optional(LegacyIP)),
      ip6: z.nullable(z.optional(LegacyIP)),
      dns: z.nullable(z.optional(DNSSchema)),
    }),
  };
}

/**
 * Parses a result (a prevResult, a delegate's output or a cached result) into the internal shape.
 * A result without cniVersion is taken to be in `assumedVersion`, as libcni does.
 */
export function parseResult(raw: unknown, assumedVersion: string): Result {
  const own = typeof raw === "object" && raw !== null ? (raw as { cniVersion?: unknown }).cniVersion : undefined;
  const version = typeof own === "string" && own !== "" ? own : assumedVersion;
  resultSchemas ??= buildResultSchemas();
  if (resultFamily(version) === "legacy") {
    const r = resultSchemas.legacy.safeParse(raw);
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
  const r = resultSchemas.current.safeParse(raw);
  if (!r.success) throw decodeError(r.error);
  return compact({
    cniVersion: version,
    interfaces: r.data.interfaces ?? undefined,
    ips: r.data.ips?.map(({ version: _v, ...ip }) => ip),
    routes: r.data.routes ?? undefined,
    dns: r.data.dns ?? undefined,
  });
}

function decodeError(e: z.core.$ZodError): CniError {
  const issue = e.issues[0];
  const where = issue?.path.length ? issue.path.join(".") : "result";
  return new CniError(Code.DecodingFailure, `could not parse prevResult: ${where}: ${issue?.message ?? "invalid"}`);
}
