import { bitsOf, formatIP, maskOf, parseCIDR, parseIP, type CIDR } from "../../lib/ip/address.ts";
import type { IPConfig, Result } from "../../lib/cni/result.ts";
import type { IpRoute, IpRule, LinkOp } from "../../lib/kernel/link.ts";
import { familyOfRoute, routeCopyOp, routeKeyOp, type RouteOp } from "../../lib/net/route-ops.ts";

/**
 * Source-based routing as the reference sets it up, as pure functions from what the container's
 * namespace holds to the ops that change it: per address of the interface a rule "from <address>
 * lookup <table>", the default route via the address's gateway in that table, and the interface's
 * routes moved from the main table into it (copied, then deleted from main once every address has
 * its copies, so addresses of one subnet all get theirs).
 */

const FIRST_TABLE = 100;
const MAIN = "main";

/** The addresses prevResult gives `ifname`: those on its interface, or on no interface at all. */
export function addressesOf(prev: Result, ifname: string): IPConfig[] {
  return (prev.ips ?? []).filter((ip) => {
    if (ip.interface === undefined) return true;
    const iface = prev.interfaces?.[ip.interface];
    return !iface || iface.name === ifname;
  });
}

/** The first table from 100 on that no rule looks up and no route is in. */
export function freeTable(rules: readonly IpRule[], routes: readonly IpRoute[]): number {
  const used = new Set([...rules.map((r) => r.table), ...routes.map((r) => r.table ?? MAIN)]);
  let t = FIRST_TABLE;
  while (used.has(String(t))) t++;
  return t;
}

function contains(net: CIDR, addr: string | undefined): boolean {
  const ip = addr === undefined ? undefined : parseIP(addr);
  if (!ip || ip.family !== net.ip.family) return false;
  const mask = maskOf(net.ip.family, net.prefix);
  return (ip.n & mask) === (net.ip.n & mask);
}

/** The kernel's own link-local route: moved out of main, link-local traffic would lose its way. */
const isLinkLocal = (r: IpRoute) => r.dst === "fe80::/64";

interface Move {
  copy: RouteOp;
  /** Undefined for a route that stays in main too. */
  remove?: RouteOp;
  /** The route as it is in main. */
  restore: RouteOp;
}

function moveOf(r: IpRoute, table: number): Move {
  const copy = routeCopyOp(r, "replace", table);
  const restore = routeCopyOp(r, "replace");
  return { copy, remove: isLinkLocal(r) ? undefined : routeKeyOp(r, "del"), restore };
}

export interface AddPlan {
  table: number;
  ops: LinkOp[];
  /** The inverse of each op, run newest first for the ops that succeeded when a later one failed. */
  undo: LinkOp[];
}

/**
 * The ops of an ADD. `mainRoutes` are the interface's routes in the main table (both families);
 * only routes of an address's family, whose source and gateway (if any) are in its subnet, move.
 */
export function planAdd(ifname: string, addresses: readonly IPConfig[], mainRoutes: readonly IpRoute[], table: number) {
  const ops: LinkOp[] = [];
  const undo: LinkOp[] = [];
  const moved = new Map<string, Move>();
  for (const a of addresses) {
    const net = parseCIDR(a.address)!;
    const family = net.ip.family;
    const src = `${formatIP(net.ip)}/${bitsOf(family)}`;
    ops.push({ op: "rule", verb: "add", src, table });
    undo.push({ op: "rule", verb: "del", src, table });
    if (a.gateway) {
      const dst = family === 4 ? "0.0.0.0/0" : "::/0";
      ops.push({ op: "route", verb: "replace", dst, via: a.gateway, dev: ifname, table });
      undo.push({ op: "route", verb: "del", dst, via: a.gateway, dev: ifname, table });
    }
    for (const r of mainRoutes) {
      if (familyOfRoute(r) !== family) continue;
      if (r.prefsrc && !contains(net, r.prefsrc)) continue;
      if (r.gateway && !contains(net, r.gateway)) continue;
      const m = moveOf(r, table);
      ops.push(m.copy);
      undo.push({ ...m.copy, verb: "del" });
      moved.set(`${family} ${r.dst} ${r.gateway ?? ""} ${r.metric ?? ""}`, m);
    }
  }
  for (const m of moved.values()) {
    if (!m.remove) continue;
    ops.push(m.remove);
    undo.push(m.restore);
  }
  return { table, ops, undo } satisfies AddPlan;
}

/** The interface's routes in the main table, from the dumps of both families. */
export const mainRoutesOf = (routes: readonly IpRoute[], ifname: string) =>
  routes.filter((r) => r.dev === ifname && (r.table ?? MAIN) === MAIN && (r.type ?? "unicast") === "unicast");

/** The rules whose source is exactly one of `addresses` (and, when given, that look up `table`). */
export function rulesFrom(rules: readonly IpRule[], addresses: readonly string[], table?: number): IpRule[] {
  const wanted = new Set(addresses.map((a) => formatIP(parseIP(a)!)));
  return rules.filter((r) => {
    const ip = parseIP(r.src);
    // ip prints no srclen for a full-length source.
    if (!ip || (r.srclen ?? bitsOf(ip.family)) !== bitsOf(ip.family) || !wanted.has(formatIP(ip))) return false;
    return table === undefined || r.table === String(table);
  });
}

/**
 * The ops of a DEL: the rules go, and the interface's routes in the tables they looked up go back
 * to main (routes without a gateway first, so the gateways are reachable again), all but the
 * default routes, which the ADD put there itself. The tables are left empty, so the same
 * interface can be set up again (the reference leaves them full, and the next ADD's gateway is
 * then unreachable from main).
 */
export function planDel(ifname: string, doomed: readonly IpRule[], routes: readonly IpRoute[]): LinkOp[] {
  const tables = new Set(doomed.map((r) => r.table));
  const ours = routes.filter((r) => r.dev === ifname && r.table !== undefined && tables.has(r.table));
  const moves = ours.map((r) => ({ r, m: moveOf(r, Number(r.table)) }));
  const back = moves
    .filter(({ r }) => r.dst !== "default")
    .sort((a, b) => Number(a.r.gateway !== undefined) - Number(b.r.gateway !== undefined))
    .map(({ m }) => m.restore);
  return [...doomed.map(ruleDel), ...moves.map(({ m }) => ({ ...m.copy, verb: "del" as const })), ...back];
}

const ruleDel = (r: IpRule): LinkOp => {
  const ip = parseIP(r.src)!;
  return { op: "rule", verb: "del", priority: r.priority, src: `${r.src}/${bitsOf(ip.family)}`, table: tableNumber(r) };
};

/** ip names the reserved tables; every other one is its number. */
function tableNumber(r: IpRule): number {
  const named: Record<string, number> = { default: 253, main: 254, local: 255 };
  return named[r.table] ?? Number(r.table);
}
