import type { IpAddr, IpLink, IpRoute } from "../../lib/kernel/link.ts";

/**
 * What the vrf plugin decides from what the container's namespace reports, as pure functions: the
 * table of a new VRF, the routes that must follow an interface into it, and the IPv6 addresses the
 * kernel dropped while enslaving it.
 */

export const isVrf = (l: IpLink) => l.linkinfo?.info_kind === "vrf";

export const vrfTable = (l: IpLink) => l.linkinfo?.info_data?.table;

/** The reference's choice without `table`: the lowest id from 1 that no VRF of the namespace uses. */
export function freeTable(links: readonly IpLink[]): number {
  const taken = new Set(links.filter(isVrf).map(vrfTable));
  let t = 1;
  while (taken.has(t)) t++;
  return t;
}

/** The VRF's slaves (ip names a link's master by name). */
export const slavesOf = (links: readonly IpLink[], vrf: string) => links.filter((l) => l.master === vrf);

const movable = (r: IpRoute) =>
  (r.table ?? "main") === "main" &&
  (r.type ?? "unicast") === "unicast" &&
  (r.scope ?? "global") === "global" &&
  r.protocol !== "kernel";

/**
 * The interface's routes that enslaving would lose and the plugin copies into the VRF's table:
 * those of the main table through it with universe scope (not the kernel's link and host routes,
 * which it makes again itself in the VRF's table), and not the kernel's own IPv6 prefix routes
 * (universe scope too; the reference tells them apart by their lack of a preferred source, which
 * also leaves behind a default route without one, as the bridge and ptp plugins add it).
 */
export const routesToMove = (routes: readonly IpRoute[], ifname: string): IpRoute[] =>
  routes.filter((r) => r.dev === ifname && movable(r));

/**
 * The interface's nexthops of multipath (ECMP) routes, as single-path routes for the VRF's table,
 * as upstream HEAD moves them (its test for issue #1253): a second attachment's default route that
 * the kernel merged with the first one's. The multipath route itself stays in main, as the kernel
 * leaves it.
 */
export const nexthopsToMove = (routes: readonly IpRoute[], ifname: string): IpRoute[] =>
  routes
    .filter(movable)
    .flatMap((r) =>
      (r.nexthops ?? [])
        .filter((h) => h.dev === ifname)
        .map(({ gateway, dev }) => ({ ...r, gateway, dev, nexthops: undefined })),
    );

export const globalV6 = (l: IpLink | undefined): IpAddr[] =>
  (l?.addr_info ?? []).filter((a) => a.family === "inet6" && a.scope === "global");

/**
 * The global IPv6 addresses `before` had that `after` lacks: enslaving cycles the link down and
 * up, which drops them unless net.ipv6.conf.*.keep_addr_on_down is set.
 */
export function droppedV6(before: IpLink | undefined, after: IpLink | undefined): IpAddr[] {
  const kept = new Set(globalV6(after).map((a) => `${a.local}/${a.prefixlen}`));
  return globalV6(before).filter((a) => !kept.has(`${a.local}/${a.prefixlen}`));
}
