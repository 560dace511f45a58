import type { IPConfig, Result } from "./result-schema.ts";
import { compact } from "./compact.ts";
import { CniError, Code } from "./errors.ts";
import { resultFamily } from "./versions.ts";

// Internal results always have the 1.x shape; conversion to older shapes happens only at the edge.
// Types come from the schemas in result-schema.ts (type-only: printing a result loads no zod).
export type { DNS, Interface, IPConfig, Result, Route } from "./result-schema.ts";

export const isV6 = (addr: string) => addr.includes(":");

/** Renders an internal result in the wire shape of `version` (the spec's converters). */
export function toWire(result: Result, version: string): Record<string, unknown> {
  const dns = result.dns && Object.keys(result.dns).length > 0 ? result.dns : undefined;
  switch (resultFamily(version)) {
    case "v1":
      return compact({
        cniVersion: version,
        interfaces: nonEmpty(result.interfaces),
        ips: nonEmpty(result.ips),
        routes: nonEmpty(result.routes),
        dns,
      });
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
        const routes = (result.routes ?? [])
          .filter((r) => isV6(r.dst) === v6)
          .map((r) => compact({ dst: r.dst, gw: r.gw }));
        return compact({ ip: ip.address, gateway: ip.gateway, routes: nonEmpty(routes) });
      };
      return compact({ cniVersion: version, ip4: legacy(ip4, false), ip6: legacy(ip6, true), dns: dns ?? {} });
    }
  }
}

function nonEmpty<T>(a: T[] | undefined): T[] | undefined {
  return a && a.length > 0 ? a : undefined;
}
