import { CniError, Code } from "../../lib/cni/errors.ts";
import { isV6, type IPConfig, type Result } from "../../lib/cni/result.ts";
import { parseResult } from "../../lib/cni/result-schema.ts";
import type { PluginImpl, Request } from "../../lib/cni/skel.ts";
import { applyLinkOps, showLink } from "../../lib/kernel/link.ts";
import { writeSysctls } from "../../lib/kernel/procfs.ts";
import { attachmentOf } from "../../lib/net/attachment.ts";
import { checkAddressesAndRoutes, containerState } from "../../lib/net/check.ts";
import { configureContainer, removeContainerIface, settleIPv6 } from "../../lib/net/container.ts";
import { lockedAdd, lockedDel } from "../../lib/net/delete-notice.ts";
import {
  addIpam,
  applyDnsOverride,
  delegateIpam,
  prevResultAddresses,
  requireIpamPlugin,
  Undo,
} from "../../lib/net/interface-plugin.ts";
import { parseAddrs, setupMasquerade, teardownMasquerade } from "../../lib/net/masquerade/index.ts";
import { gcMasqueradeAndIpam } from "../../lib/net/masquerade-gc.ts";
import { createVethPair } from "../../lib/net/veth.ts";
import { defaultBackend, type NetfilterBackend } from "../../lib/netfilter/backend.ts";
import { type Config, parseConfig } from "./config.ts";
import { containerRouteOps, hostOps, requireGateways } from "./routes.ts";

/**
 * ptp: a veth pair per container, routed rather than bridged: the container reaches everything
 * through its gateway, which is an address of the node's end of the pair (routes.ts). Keys,
 * names and masquerade chains are the reference's, so either implementation cleans up after the
 * other.
 */
const CONTAINER_INDEX = 1;

const add = (req: Request<Config>) => lockedAdd(attachmentOf(req), () => addLocked(req));

async function addLocked(req: Request<Config>): Promise<Result> {
  const c = req.config;
  requireIpamPlugin(req);
  const undo = new Undo();
  return undo.guard(async () => {
    const ipam = await addIpam(req, undo);
    // Rebuilt rather than patched so the keys print in the reference's order.
    const ips: IPConfig[] = ipam.ips.map(({ address, gateway }) => ({
      interface: CONTAINER_INDEX,
      address,
      ...(gateway !== undefined ? { gateway } : {}),
    }));
    requireGateways(ips);
    enableForwarding(ips);

    const host = createVethPair(req.ifname, req.netns, { mtu: c.mtu });
    undo.push(() => applyLinkOps([{ op: "link-del", dev: host.ifname }]));
    // We own the routes on the node's end: no router advertisements.
    writeSysctls([[`net/ipv6/conf/${host.ifname}/accept_ra`, "0"]], { bestEffort: true });

    const result: Result = { cniVersion: req.version, ips, ...(ipam.routes ? { routes: ipam.routes } : {}) };
    if (ipam.dns) result.dns = ipam.dns;
    const container = configureContainer(req.netns, req.ifname, result, false, CONTAINER_INDEX);
    // The routes name the container's addresses as their source.
    if (ips.some((ip) => isV6(ip.address))) settleIPv6(req.netns, req.ifname);
    const p2p = applyLinkOps(containerRouteOps(req.ifname, ips), { netns: req.netns });
    if (!p2p.ok) throw new CniError(Code.Internal, `failed to set up routes on "${req.ifname}": ${p2p.stderr}`);
    const node = applyLinkOps(hostOps(host.ifname, ips));
    if (!node.ok) throw new CniError(Code.Internal, `failed to configure host veth ${host.ifname}: ${node.stderr}`);

    result.interfaces = [
      { name: host.ifname, mac: host.address },
      { name: req.ifname, mac: container.address, sandbox: req.netns },
    ];
    if (c.ipMasq) {
      const addrs = parseAddrs(ips.map((ip) => ip.address));
      undo.push(() => teardownMasquerade(attachmentOf(req), addrs));
      setupMasquerade((c.ipMasqBackend as NetfilterBackend | undefined) ?? defaultBackend(), addrs, attachmentOf(req));
    }
    applyDnsOverride(result, c);
    return result;
  });
}

function enableForwarding(ips: readonly IPConfig[]) {
  const forwarding: [string, string][] = [];
  if (ips.some((ip) => !isV6(ip.address))) forwarding.push(["net/ipv4/ip_forward", "1"]);
  if (ips.some((ip) => isV6(ip.address))) forwarding.push(["net/ipv6/conf/all/forwarding", "1"]);
  writeSysctls(forwarding);
}

const del = (req: Request<Config>) => lockedDel(attachmentOf(req), () => delLocked(req));

/**
 * Undo ADD, best effort and idempotent. Without the namespace the pair cannot be reached from the
 * container side, so the node's end named in prevResult goes instead (its peer with it); the
 * reservation and the masquerade rules go in every case.
 */
async function delLocked(req: Request<Config>) {
  const c = req.config;
  const errors: unknown[] = [];
  let addrs: string[] = [];
  if (req.netnsState === "ok") {
    try {
      addrs = removeContainerIface(req.netns, req.ifname);
    } catch (e) {
      errors.push(e);
    }
  } else {
    removeHostEnd(req);
  }
  try {
    await delegateIpam("DEL", req);
  } catch (e) {
    errors.push(e);
  }
  if (c.ipMasq) {
    const known = new Set([...addrs, ...prevResultAddresses(req)]);
    const failures = teardownMasquerade(attachmentOf(req), parseAddrs([...known]));
    if (failures.length > 0)
      errors.push(new CniError(Code.Internal, `failed to remove masquerade rules: ${failures.join("; ")}`));
  }
  if (errors.length > 0) throw errors[0];
}

/** The node's end of the pair prevResult names, when it is still a veth (a gone netns took it already). */
function removeHostEnd(req: Request<Config>) {
  const name = prevInterfaces(req)[0]?.name;
  if (!name || !/^veth[0-9a-f]{8}$/.test(name)) return;
  if (showLink(name)?.linkinfo?.info_kind === "veth") applyLinkOps([{ op: "link-del", dev: name }]);
}

function prevInterfaces(req: Request<Config>) {
  if (req.config.prevResult === undefined) return [];
  try {
    return parseResult(req.config.prevResult, req.version).interfaces ?? [];
  } catch {
    return [];
  }
}

const fail = (msg: string) => new CniError(Code.Internal, msg);

/** The reference's CHECK: IPAM, then the container interface, its addresses and its routes. */
async function check(req: Request<Config>) {
  await delegateIpam("CHECK", req);
  if (req.config.prevResult === undefined) throw fail("ptp: Required prevResult missing");
  const prev = parseResult(req.config.prevResult, req.version);
  const cont = (prev.interfaces ?? []).find((i) => i.name === req.ifname && i.sandbox === req.netns);
  if (!cont) {
    const named = (prev.interfaces ?? []).find((i) => i.name === req.ifname);
    throw fail(`Sandbox in prevResult ${named?.sandbox ?? ""} doesn't match configured netns: ${req.netns}`);
  }
  let state: ReturnType<typeof containerState>;
  try {
    state = containerState(req.netns, req.ifname);
  } catch (e) {
    if (/not found$/.test((e as Error).message))
      throw fail(`ptp: Container Interface name in prevResult: ${req.ifname} not found`);
    throw e;
  }
  const { link, routes } = state;
  if (link.linkinfo?.info_kind !== "veth") throw fail(`Error: Container interface ${req.ifname} not of type veth/p2p`);
  if (cont.mac && cont.mac !== link.address)
    throw fail(`ptp: Interface ${req.ifname} Mac ${cont.mac} doesn't match container Mac: ${link.address}`);
  checkAddressesAndRoutes(req.ifname, link, routes, prev);
}

async function status(req: Request<Config>) {
  await delegateIpam("STATUS", req);
}

const gc = gcMasqueradeAndIpam;

const plugin: PluginImpl<Config> = { parseConfig, add, del, check, status, gc };
export default plugin;
