import { CniError, Code } from "../../lib/cni/errors.ts";
import type { Result } from "../../lib/cni/result.ts";
import type { PluginImpl, Request } from "../../lib/cni/skel.ts";
import { applyLinkOps, listLinks, showLink, type IpLink } from "../../lib/kernel/link.ts";
import { inspectNetns, withOwnNetnsPath } from "../../lib/kernel/netns.ts";
import { attachmentOf } from "../../lib/net/attachment.ts";
import { checkContainerIface } from "../../lib/net/check.ts";
import { configureContainer, layer2Container } from "../../lib/net/container.ts";
import {
  addIpam,
  applyDnsOverride,
  delegateIpam,
  hasIpam,
  requireIpamPlugin,
  Undo,
} from "../../lib/net/interface-plugin.ts";
import { refuseLegacyLayer2 } from "../../lib/net/sublink.ts";
import { parseConfig, type Config } from "./config.ts";
import { findHostDevice } from "./lookup.ts";
import { forgetMoved, readMoved, saveMoved, type Moved } from "./state.ts";

/**
 * host-device: an existing node device moved into the container as CNI_IFNAME, its own name kept in
 * the link's alias (as the reference keeps it) and in a record of ours; DEL moves it back under
 * that name, also when CNI_NETNS is empty or gone, by looking where the device can be.
 */

const internal = (msg: string) => new CniError(Code.Internal, msg);

/**
 * Moves and renames in one request. The kernel moves first and renames after, so a taken CNI_IFNAME
 * fails with the device already inside under its own name: then it goes straight back.
 */
function moveIn(dev: IpLink, netns: string, ifname: string, up: boolean) {
  const r = applyLinkOps([{ op: "link-set", dev: dev.ifname, netns, name: ifname, alias: dev.ifname }]);
  if (r.ok) return;
  if (showLink(dev.ifname, { netns })) moveOut(netns, dev.ifname, dev.ifname, up);
  throw internal(`failed to move "${dev.ifname}" to container netns as "${ifname}": ${r.stderr}`);
}

/** From inside `netns`, back to the node as `name`, its alias cleared and up again if it was. */
function moveOut(netns: string, ifname: string, name: string, up: boolean) {
  const r = withOwnNetnsPath((node) => applyLinkOps([{ op: "link-set", dev: ifname, netns: node, name }], { netns }));
  if (!r.ok) throw internal(`failed to move "${ifname}" back to the node as "${name}": ${r.stderr}`);
  restoreInNode(name, name, up);
}

function restoreInNode(current: string, name: string, up: boolean) {
  const r = applyLinkOps([
    { op: "link-set", dev: current, name: current === name ? undefined : name, alias: null },
    ...(up ? [{ op: "link-set", dev: name, up: true } as const] : []),
  ]);
  if (!r.ok) throw internal(`failed to restore "${name}" in the node: ${r.stderr}`);
}

async function add(req: Request<Config>): Promise<Result> {
  const c = req.config;
  if (!hasIpam(c)) refuseLegacyLayer2(req.version);
  requireIpamPlugin(req);
  const dev = findHostDevice(c, listLinks());
  const key = attachmentOf(req);
  const moved: Moved = { name: dev.ifname, mac: dev.address, up: dev.flags.includes("UP"), netns: req.netns };
  const undo = new Undo();
  moveIn(dev, req.netns, req.ifname, moved.up);
  undo.push(() => moveOut(req.netns, req.ifname, dev.ifname, moved.up));
  return undo.guard(async () => {
    saveMoved(key, moved);
    undo.push(() => forgetMoved(key));
    let link: IpLink;
    const result: Result = { cniVersion: req.version, interfaces: [] };
    if (!hasIpam(c)) {
      link = layer2Container(req.netns, req.ifname, true);
    } else {
      const got = await addIpam(req, undo);
      // Every address is the moved device's (index 0 of this result).
      result.ips = got.ips.map((ip) => ({ ...ip, interface: 0 }));
      if (got.routes?.length) result.routes = got.routes;
      link = configureContainer(req.netns, req.ifname, result, true, 0);
    }
    result.interfaces = [{ name: req.ifname, mac: link.address, sandbox: req.netns }];
    // The reference reports the config's dns, never IPAM's.
    applyDnsOverride(result, c);
    return result;
  });
}

/** A namespace path that still holds a namespace (not the node's own); anything else is none. */
function liveNetns(path: string): boolean {
  try {
    return inspectNetns(path) === "ok";
  } catch {
    return false;
  }
}

/**
 * Puts the device back. Where it is: in CNI_NETNS; else in the namespace ADD recorded, when that is
 * still there; else in the node, where the kernel returns a physical device whose namespace went
 * away (under its name, or "devN" when the name was taken), known by its alias and MAC.
 */
function restore(req: Request<Config>) {
  const key = attachmentOf(req);
  const saved = readMoved(key);
  const recorded = (l: IpLink) => !!saved && l.ifalias === saved.name && (!saved.mac || l.address === saved.mac);
  const told = req.netnsState === "ok";
  const netns = told ? req.netns : saved && liveNetns(saved.netns) ? saved.netns : undefined;
  const inside = netns === undefined ? undefined : showLink(req.ifname, { netns });
  if (netns && inside && (told || recorded(inside))) {
    const name = inside.ifalias || saved?.name;
    if (!name) throw internal(`failed to restore "${req.ifname}": its original name is unknown (no alias)`);
    moveOut(netns, req.ifname, name, saved?.up ?? false);
  } else if (saved) {
    const back = listLinks().find(recorded);
    if (back) restoreInNode(back.ifname, saved.name, saved.up);
  }
  forgetMoved(key);
}

/** DEL: IPAM's DEL (also without a namespace: the reference leaks the address there), then the device back. */
async function del(req: Request<Config>) {
  const errors: unknown[] = [];
  try {
    await delegateIpam("DEL", req);
  } catch (e) {
    errors.push(e);
  }
  try {
    restore(req);
  } catch (e) {
    errors.push(e);
  }
  if (errors.length > 0) throw errors[0];
}

const plugin: PluginImpl<Config> = {
  parseConfig,
  add,
  del,
  check: (req) => checkContainerIface(req, { ipam: "configured" }),
  status: (req) => delegateIpam("STATUS", req),
  gc: (req) => delegateIpam("GC", req),
};
export default plugin;
