import { validateIfname } from "../cni/env.ts";
import { CniError, Code } from "../cni/errors.ts";
import type { DNS, Interface, IPConfig, Result, Route } from "../cni/result.ts";
import type { PluginImpl, Request } from "../cni/skel.ts";
import { resultFamily } from "../cni/versions.ts";
import * as z from "../cni/zod.ts";
import { applyLinkOps, showLink, type IpLink, type IpRoute, type LinkKind, type LinkOp } from "../kernel/link.ts";
import { writeSysctls } from "../kernel/procfs.ts";
import { configureContainer, layer2Container, removeContainerIface } from "./container.ts";
import { checkContainerIface } from "./check.ts";
import { addIpam, applyDnsOverride, delegateIpam, requireIpamPlugin, Undo } from "./interface-plugin.ts";

import { randomVethName } from "./veth.ts";
import { attachmentOf } from "./attachment.ts";
import { lockedAdd, lockedDel } from "./delete-notice.ts";

/**
 * What macvlan, ipvlan and vlan share: a child link of a `master` interface, created directly in
 * the container namespace (or, with linkInContainer, next to a master that lives there) under a
 * temporary name, renamed to CNI_IFNAME and configured; the default master (the interface of the
 * first default route); DEL and the common part of CHECK. The plugins add their kind, mode and keys.
 * dummy and tap are the same walk with no master at all (tap's link made its own way).
 */

export type SublinkType = "macvlan" | "ipvlan" | "vlan" | "dummy" | "tap";

/** The keys the three plugins share, with the reference's defaults. */
export const SublinkKeys = {
  master: z._default(z.string(), ""),
  mtu: z._default(z.number().check(z.int()), 0),
  linkInContainer: z._default(z.boolean(), false),
};

interface SublinkConfig {
  name: string;
  /** Absent for dummy, which has no master. */
  master?: string;
  mtu?: number;
  linkInContainer?: boolean;
  ipam?: { type?: string };
  dns?: DNS;
  prevResult?: unknown;
}

const internal = (msg: string) => new CniError(Code.Internal, msg);

/** A master named in the config is an interface name like any other: refused before it reaches ip. */
export function validateMaster(master: string) {
  if (master !== "") validateIfname(master, "master", Code.InvalidConfig);
}

const where = (netns: string, inContainer: boolean) => (inContainer ? { netns } : {});

/**
 * The interface of the first default route of the main table, IPv4 before IPv6, as the reference
 * finds it (netlink's route list of both families); in the container namespace with linkInContainer.
 */
export function defaultRouteInterface(netns: string, inContainer: boolean): string {
  const r = applyLinkOps(
    [
      { op: "routes", family: 4 },
      { op: "routes", family: 6 },
    ],
    where(netns, inContainer),
  );
  if (!r.ok) throw internal(`failed to list routes: ${r.stderr}`);
  const routes = r.groups.flat() as IpRoute[];
  const main = routes.find((rt) => rt.dst === "default" && (rt.table ?? "main") === "main" && rt.dev);
  if (!main) throw internal("no default route interface found");
  return main.dev!;
}

/** The master link (the configured one, or the default-route interface), looked up where it lives. */
export function findMaster(configured: string, netns: string, inContainer: boolean): IpLink {
  const name = configured || defaultRouteInterface(netns, inContainer);
  const link = showLink(name, where(netns, inContainer));
  if (!link) throw internal(`failed to lookup master "${name}": Link not found`);
  return link;
}

/** mtu 0 means the kernel's choice; more than the master's cannot be carried. */
function checkMtu(mtu: number, master: IpLink) {
  if (mtu < 0 || mtu > master.mtu)
    throw new CniError(Code.InvalidConfig, `invalid MTU ${mtu}, must be [0, master MTU(${master.mtu})]`);
}

/**
 * The master a sublink of this config goes on (`name`, default the config's `master`), looked up
 * where it lives, with the config's MTU bounded by the master's.
 */
export function masterFor(
  c: { master: string; mtu: number; linkInContainer: boolean },
  netns: string,
  name = c.master,
) {
  const master = findMaster(name, netns, c.linkInContainer);
  checkMtu(c.mtu, master);
  return master;
}

export interface SublinkSpec {
  type: SublinkType;
  /** The kind with its parent (the master's name). */
  kind: LinkKind;
  ifname: string;
  netns: string;
  mtu: number;
  mac?: string;
  linkInContainer: boolean;
}

/**
 * Creates the link under a temporary name and renames it to `ifname` inside the container: created
 * straight under its final name, it could collide with a node interface of that name on the way
 * (the reference's workaround for the same kernel behaviour). Returns the link as the container sees
 * it; a failure leaves nothing behind.
 */
export function createSublink(s: SublinkSpec): IpLink {
  const tmp = randomVethName();
  const add: LinkOp = {
    op: "link-add",
    dev: tmp,
    kind: s.kind,
    mtu: s.mtu > 0 ? s.mtu : undefined,
    mac: s.mac,
    netns: s.linkInContainer ? undefined : s.netns,
  };
  const rename: LinkOp[] = [
    { op: "link-set", dev: tmp, name: s.ifname },
    { op: "show", dev: s.ifname },
  ];
  // With the master in the container, creation and rename are one run there.
  let renameAt = 0;
  if (s.linkInContainer) {
    rename.unshift(add);
    renameAt = 1;
  } else {
    const created = applyLinkOps([add]);
    if (!created.ok) throw internal(`failed to create ${s.type}: ${created.stderr}`);
  }
  const r = applyLinkOps(rename, { netns: s.netns });
  const link = r.shown.find((l) => l.ifname === s.ifname);
  if (r.ok && link) return link;
  const failed = r.failedOp ?? renameAt;
  if (failed < renameAt) throw internal(`failed to create ${s.type}: ${r.stderr}`);
  applyLinkOps([{ op: "link-del", dev: failed === renameAt ? tmp : s.ifname }], { netns: s.netns });
  throw internal(`failed to rename ${s.type} to "${s.ifname}": ${r.stderr || "not found after the rename"}`);
}

/**
 * A layer-2 attachment (no addresses) has no result before 0.3.0: refused before anything exists,
 * where the reference moves or creates the link and then fails to print.
 */
export function refuseLegacyLayer2(version: string) {
  if (resultFamily(version) === "legacy")
    throw new CniError(
      Code.InvalidConfig,
      "cannot convert: no valid IP addresses",
      `a layer-2 attachment (no ipam) has no ${version} result`,
    );
}

/** Where the container's addresses come from: IPAM, a previous plugin's result, or none (layer 2). */
export type Addresses = { from: "ipam" } | { from: "prev"; ips: IPConfig[]; routes?: Route[] } | { from: "none" };

/** How the link comes to be: a kind of `ip link add` (createSublink), or a creator of its own (tap's). */
type SublinkMaking =
  | Omit<SublinkSpec, "ifname" | "netns">
  | { type: SublinkType; create: (ifname: string, netns: string) => IpLink };

export type SublinkAdd = SublinkMaking & {
  addresses: Addresses;
  /** arp_notify and ndisc_notify on the new link, so neighbours learn its MAC at once. */
  notify: boolean;
  /** Put before IPAM's own message (vlan's "failed to execute IPAM delegate: "). */
  ipamErrorPrefix?: string;
  /** Report IPAM's DNS and not the config's (dummy's reference prints IPAM's result; the others only the config's dns). */
  ipamDns?: boolean;
};

/**
 * ADD of a sublink plugin: the link, the addresses (IPAM's, whose DEL is registered for rollback, or
 * prevResult's), the container side configured, the result with the one container interface and
 * the config's DNS. A failure removes the link and releases the addresses. ADD and DEL of one
 * attachment hold its lock, as bridge and ptp do, so a DEL never releases an address an ADD is
 * still configuring.
 */
export const addSublink = (req: Request<SublinkConfig>, a: SublinkAdd): Promise<Result> =>
  lockedAdd(attachmentOf(req), () => addUnlocked(req, a));

async function addUnlocked(req: Request<SublinkConfig>, a: SublinkAdd): Promise<Result> {
  if (a.addresses.from === "none") refuseLegacyLayer2(req.version);
  if (a.addresses.from === "ipam") requireIpamPlugin(req);
  const link =
    "create" in a ? a.create(req.ifname, req.netns) : createSublink({ ...a, ifname: req.ifname, netns: req.netns });
  const undo = new Undo();
  undo.push(() => removeContainerIface(req.netns, req.ifname));
  return undo.guard(async () => {
    const iface: Interface = { name: req.ifname, mac: link.address, sandbox: req.netns };
    const result: Result = { cniVersion: req.version, interfaces: [iface] };
    if (a.addresses.from === "none") {
      layer2Container(req.netns, req.ifname, true);
    } else {
      const got = a.addresses.from === "prev" ? a.addresses : await ipamAddresses(req, undo, a.ipamErrorPrefix);
      // Every address is the new link's (index 0 of this result).
      result.ips = got.ips.map((ip) => ({ ...ip, interface: 0 }));
      if (got.routes?.length) result.routes = got.routes;
      if (a.ipamDns && "dns" in got && got.dns) result.dns = got.dns;
      if (a.notify)
        writeSysctls(
          [
            [`net/ipv4/conf/${req.ifname}/arp_notify`, "1"],
            [`net/ipv6/conf/${req.ifname}/ndisc_notify`, "1"],
          ],
          { netns: req.netns, bestEffort: true },
        );
      // DAD as the kernel defaults it, and waited for with an IPv6 gateway, as ConfigureIface does.
      configureContainer(req.netns, req.ifname, result, true, 0);
    }
    // macvlan, ipvlan and vlan report the config's dns, never IPAM's.
    if (!a.ipamDns) applyDnsOverride(result, req.config);
    return result;
  });
}

async function ipamAddresses(req: Request<SublinkConfig>, undo: Undo, prefix = "") {
  try {
    return await addIpam(req, undo);
  } catch (e) {
    if (prefix && e instanceof CniError) throw new CniError(e.code, `${prefix}${e.message}`, e.details);
    throw e;
  }
}

/**
 * DEL: IPAM's DEL, then the link if the namespace is still there; a missing link or namespace is
 * fine. Both are attempted whatever the other did; the first failure is reported.
 */
export const delSublink = (req: Request<SublinkConfig>) => lockedDel(attachmentOf(req), () => delUnlocked(req));

async function delUnlocked(req: Request<SublinkConfig>) {
  const errors: unknown[] = [];
  try {
    await delegateIpam("DEL", req);
  } catch (e) {
    errors.push(e);
  }
  if (req.netnsState === "ok") {
    try {
      removeContainerIface(req.netns, req.ifname);
    } catch (e) {
      errors.push(e);
    }
  }
  if (errors.length > 0) throw errors[0];
}

export interface SublinkCheck {
  type: SublinkType;
  /** The kind-specific part (mode, VLAN id, MTU): throws with the reference's message. */
  validate?: (link: IpLink, name: string) => void;
  /** The kernel's name of the kind when it is not the plugin's (tap links are "tun"). */
  kind?: string;
  /** Skip the IPAM CHECK (vlan always asks IPAM; the others only when configured). */
  ipamAlways?: boolean;
  missingPrevResult?: string;
}

/**
 * CHECK with the reference's walk (lib/net/check.ts checkContainerIface), the master looked up
 * before the container is read.
 */
export async function checkSublink(req: Request<SublinkConfig>, c: SublinkCheck) {
  const conf = req.config;
  await checkContainerIface(req, {
    validate: c.validate,
    missingPrevResult: c.missingPrevResult,
    kind: c.kind ?? c.type,
    ipam: c.ipamAlways ? "always" : "configured",
    // dummy and tap have no master to look up.
    beforeContainer: () =>
      c.type === "dummy" || c.type === "tap"
        ? undefined
        : findMaster(conf.master ?? "", req.netns, conf.linkInContainer ?? false),
  });
}

/**
 * The plugin object of macvlan, ipvlan, vlan, dummy and tap: their own config, ADD and CHECK; DEL is
 * delSublink; STATUS and GC go to IPAM.
 */
export function sublinkPlugin<C extends SublinkConfig>(
  parseConfig: PluginImpl<C>["parseConfig"],
  add: (req: Request<C>) => Promise<Result>,
  check: (req: Request<C>) => Promise<void>,
): PluginImpl<C> {
  return {
    parseConfig,
    add,
    del: delSublink,
    check,
    status: (req) => delegateIpam("STATUS", req),
    gc: (req) => delegateIpam("GC", req),
  };
}
