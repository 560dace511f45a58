import { bitsOf, type Family } from "../ip/address.ts";
import type { IpRoute, LinkOp } from "../kernel/link.ts";

/**
 * A route as the kernel reported it, turned back into the op that makes it again: for plugins
 * that move a container's routes between tables (sbr into a table of its own, vrf into the VRF's).
 */

export type RouteOp = Extract<LinkOp, { op: "route" }>;

const SCOPES: Record<string, number> = { global: 0, universe: 0, site: 200, link: 253, host: 254 };

export const familyOfRoute = (r: IpRoute): Family => (r.dst.includes(":") || r.gateway?.includes(":") ? 6 : 4);

/** ip prints "default" and host routes without a length; ops need the prefix with its family. */
export function routeDst(r: IpRoute, family: Family = familyOfRoute(r)): string {
  if (r.dst === "default") return family === 4 ? "0.0.0.0/0" : "::/0";
  return r.dst.includes("/") ? r.dst : `${r.dst}/${bitsOf(family)}`;
}

/** What names the route (destination, device, gateway, metric): enough to delete it. */
export const routeKeyOp = (r: IpRoute, verb: RouteOp["verb"], table?: number): RouteOp => ({
  op: "route",
  verb,
  dst: routeDst(r),
  dev: r.dev!,
  via: r.gateway,
  metric: r.metric,
  table,
});

/** The whole route (its scope and preferred source too): what makes it again, in `table` or main. */
export const routeCopyOp = (r: IpRoute, verb: RouteOp["verb"], table?: number): RouteOp => ({
  ...routeKeyOp(r, verb, table),
  scope: r.scope === undefined ? undefined : SCOPES[r.scope],
  src: r.prefsrc,
});
