import { CniError, Code } from "../cni/errors.ts";
import { isV6, type Result } from "../cni/result.ts";
import { formatIP, parseCIDR, parseIP } from "../ip/address.ts";
import { parseResult } from "../cni/result-schema.ts";
import type { Request } from "../cni/skel.ts";
import { applyLinkOps, type IpLink, type IpRoute } from "../kernel/link.ts";
import { delegateIpam, hasIpam } from "./interface-plugin.ts";

/**
 * The part of an interface plugin's CHECK that compares the container with prevResult, in the
 * reference's words (ip.ValidateExpectedInterfaceIPs and ip.ValidateExpectedRoute): every address
 * on the interface, every route in the table of its family.
 */
const fail = (msg: string) => new CniError(Code.Internal, msg);

export function checkAddressesAndRoutes(ifname: string, link: IpLink, routes: Record<4 | 6, IpRoute[]>, prev: Result) {
  const have = new Set((link.addr_info ?? []).map((a) => canonicalCidr(`${a.local}/${a.prefixlen}`)));
  for (const ip of prev.ips ?? []) {
    if (!have.has(canonicalCidr(ip.address))) throw fail(`Failed to match addr ${ip.address} on interface ${ifname}`);
  }
  for (const r of prev.routes ?? []) {
    const dst = canonicalCidr(r.dst);
    const gw = r.gw === undefined ? undefined : canonicalIp(r.gw);
    const v6 = isV6(r.dst);
    const found = routes[v6 ? 6 : 4].some(
      (k) =>
        kernelDst(k.dst, v6) === dst &&
        (gw === undefined || (k.gateway !== undefined && canonicalIp(k.gateway) === gw)),
    );
    if (!found) throw fail(`Expected Route ${JSON.stringify({ dst: r.dst, gw: r.gw })} not found in routing table`);
  }
}

/** ip prints "default" and host routes without a prefix length. */
function kernelDst(dst: string, v6: boolean): string {
  if (dst === "default") return v6 ? "::/0" : "0.0.0.0/0";
  return canonicalCidr(dst.includes("/") ? dst : `${dst}/${v6 ? 128 : 32}`);
}

function canonicalCidr(text: string): string {
  const c = parseCIDR(text);
  return c ? `${formatIP(c.ip)}/${c.prefix}` : text;
}

function canonicalIp(text: string): string {
  const ip = parseIP(text);
  return ip ? formatIP(ip) : text;
}

export interface ContainerView {
  link: IpLink;
  routes: Record<4 | 6, IpRoute[]>;
}

/** The container interface and the routes of both families, in one process; undefined when the interface is missing. */
export function readContainer(netns: string, ifname: string): ContainerView | undefined {
  const r = applyLinkOps(
    [
      { op: "show", dev: ifname },
      { op: "routes", family: 4 },
      { op: "routes", family: 6 },
    ],
    { netns },
  );
  if (!r.ok && r.failedOp === 0) return undefined;
  if (!r.ok) throw fail(`failed to read routes in ${netns}: ${r.stderr}`);
  return {
    link: r.groups[0]?.[0] as IpLink,
    routes: { 4: (r.groups[1] ?? []) as IpRoute[], 6: (r.groups[2] ?? []) as IpRoute[] },
  };
}

/** The same, with the reference's text when the interface is missing. */
export function containerState(netns: string, ifname: string): ContainerView {
  const view = readContainer(netns, ifname);
  if (!view) throw fail(`Interface name ${ifname} not found`);
  return view;
}

/** The prevResult of a chained call or a CHECK, in the current shape. */
export function prevResultOf(req: Request<{ prevResult?: unknown }>, what = "could not parse prevResult"): Result {
  try {
    return parseResult(req.config.prevResult, req.version);
  } catch (e) {
    throw fail(`${what}: ${(e as Error).message}`);
  }
}

export interface IfaceCheck {
  /** The link kind the container interface must have (none: any kind, as host-device). */
  kind?: string;
  /** The kind-specific part (mode, VLAN id, MTU): throws with the reference's message. */
  validate?: (link: IpLink, name: string) => void;
  /** When IPAM's CHECK runs: only with an `ipam` configured, or always (vlan). */
  ipam: "configured" | "always";
  missingPrevResult?: string;
  /** Runs after the prevResult entry is found and before the container is read (a master lookup). */
  beforeContainer?: () => unknown;
}

/**
 * An interface plugin's CHECK with the reference's walk: IPAM's CHECK, prevResult, the container
 * entry in it for this netns, then inside the container the link (present, of the kind, the kind's
 * own attributes, the recorded MAC), its addresses and the routes.
 */
export async function checkContainerIface(
  req: Request<{ prevResult?: unknown; ipam?: { type?: string } }>,
  c: IfaceCheck,
) {
  const conf = req.config;
  if (c.ipam === "always" || hasIpam(conf)) await delegateIpam("CHECK", req);
  if (conf.prevResult === undefined) throw fail(c.missingPrevResult ?? "Required prevResult missing");
  const prev = prevResultOf(req, "could not parse prevResult");
  const entry = (prev.interfaces ?? []).find((i) => i.name === req.ifname && i.sandbox === req.netns);
  if (!entry) throw fail(`Sandbox in prevResult  doesn't match configured netns: ${req.netns}`);
  c.beforeContainer?.();

  const view = readContainer(req.netns, entry.name);
  if (!view) throw fail(`Container Interface name in prevResult: ${entry.name} not found`);
  const { link } = view;
  if (c.kind !== undefined && link.linkinfo?.info_kind !== c.kind)
    throw fail(`Error: Container interface ${link.ifname} not of type ${c.kind}`);
  c.validate?.(link, entry.name);
  if (entry.mac && entry.mac !== link.address)
    throw fail(`Interface ${entry.name} Mac ${entry.mac} doesn't match container Mac: ${link.address}`);
  checkAddressesAndRoutes(req.ifname, link, view.routes, prev);
}
