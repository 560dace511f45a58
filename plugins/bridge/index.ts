import { CniError, Code } from "../../lib/cni/errors.ts";
import type { Result } from "../../lib/cni/result.ts";
import { parseResult } from "../../lib/cni/result-schema.ts";
import { resultFamily } from "../../lib/cni/versions.ts";
import type { PluginImpl, Request } from "../../lib/cni/skel.ts";
import { writeSysctls } from "../../lib/kernel/procfs.ts";
import {
  createPort,
  ensureGateways,
  ensureVlanGateway,
  removeBridgeIfUnused,
  removeLink,
  setPortVlans,
} from "./bridge.ts";
import type { IpLink } from "../../lib/kernel/link.ts";
import { configureContainer, layer2Container, removeContainerIface } from "../../lib/net/container.ts";
import { calcGateways } from "../../lib/net/gateways.ts";
import { parseAddrs, setupMasquerade, teardownMasquerade } from "../../lib/net/masquerade/index.ts";
import { gcMasqueradeAndIpam } from "../../lib/net/masquerade-gc.ts";
import { defaultBackend, type NetfilterBackend } from "../../lib/netfilter/backend.ts";
import { setupSpoofCheck, spoofRefId, teardownSpoofCheck } from "./spoofcheck.ts";
import { waitPortUp } from "../../lib/net/veth.ts";
import { checkAttachment } from "./check.ts";
import { parseConfig, type Config } from "./config.ts";
import { attachmentOf } from "../../lib/net/attachment.ts";
import { lockedAdd, lockedDel } from "../../lib/net/delete-notice.ts";
import {
  addIpam,
  applyDnsOverride,
  delegateIpam,
  hasIpam,
  prevResultAddresses,
  requireIpamPlugin,
  Undo,
} from "../../lib/net/interface-plugin.ts";

/**
 * bridge: a Linux bridge on the node, a veth pair per container with one end on the bridge and the
 * other as CNI_IFNAME in the container, addresses from the IPAM plugin, the bridge as gateway,
 * forwarding, and masquerade for traffic leaving the subnet. Config keys and kernel names are the
 * reference plugin's, so either implementation cleans up after the other.
 */
const CONTAINER_INDEX = 2;

const layer3 = hasIpam;

/** ADD and DEL of one attachment never interleave inside this plugin (see lib/net/delete-notice.ts). */
const add = (req: Request<Config>) => lockedAdd(attachmentOf(req), () => addLocked(req));

async function addLocked(req: Request<Config>): Promise<Result> {
  const c = req.config;
  if (!layer3(c) && resultFamily(req.version) === "legacy") {
    // Caught before anything exists: the reference creates the veth and then fails to print.
    throw new CniError(
      Code.InvalidConfig,
      "cannot convert: no valid IP addresses",
      `a layer-2 attachment (no ipam) has no ${req.version} result`,
    );
  }
  requireIpamPlugin(req);

  const port = createPort(
    { name: c.bridge, mtu: c.mtu, promisc: c.promiscMode, vlanFiltering: c.vlan !== 0 || c.vlanTrunk !== undefined },
    req.ifname,
    req.netns,
    { mtu: c.mtu, mac: c.mac, hairpin: c.hairpinMode, isolated: c.portIsolation },
  );
  const undo = new Undo();
  if (port.createdBridge) undo.push(() => removeBridgeIfUnused(port.bridge.ifname));
  undo.push(() => removeLink(port.host.ifname));
  return undo.guard(async () => {
    setPortVlans(port.host.ifname, port.bridge, {
      vlan: c.vlan,
      trunk: c.trunk,
      trunkGiven: c.vlanTrunk !== undefined,
      preserveDefaultVlan: c.preserveDefaultVlan,
    });
    const result: Result = {
      cniVersion: req.version,
      interfaces: [
        { name: port.bridge.ifname, mac: port.bridge.address },
        { name: port.host.ifname, mac: port.host.address },
        { name: req.ifname, sandbox: req.netns },
      ],
    };

    let container: IpLink;
    if (layer3(c)) {
      Object.assign(result, await addIpam(req, undo));
      const gateways = calcGateways(result, c.isGateway, c.isDefaultGateway, CONTAINER_INDEX);
      container = configureContainer(req.netns, req.ifname, result, c.enabledad, CONTAINER_INDEX);
      if (c.isGateway) setUpGateways(c, port.bridge, gateways, result);
      if (c.ipMasq) {
        const addrs = parseAddrs(result.ips!.map((ip) => ip.address));
        // Only this container's chain and a jump from the built-in POSTROUTING: nothing shared is
        // created, so unlike portmap and firewall this needs no netfilter lock.
        undo.push(() => teardownMasquerade(attachmentOf(req), addrs));
        setupMasquerade(
          (c.ipMasqBackend as NetfilterBackend | undefined) ?? defaultBackend(),
          addrs,
          attachmentOf(req),
        );
      }
    } else {
      container = layer2Container(req.netns, req.ifname, !c.disableContainerInterface);
    }
    result.interfaces![CONTAINER_INDEX] = { name: req.ifname, mac: container.address, sandbox: req.netns };

    if (c.macspoofchk) {
      undo.push(() => teardownSpoofCheck(spoofRefId(req.containerId, req.ifname)));
      setupSpoofCheck(port.host.ifname, container.address!, spoofRefId(req.containerId, req.ifname));
    }
    if (!c.disableContainerInterface) waitPortUp(port.host.ifname);
    applyDnsOverride(result, c);
    return result;
  });
}

/** Gateway addresses on the bridge (or the VLAN gateway interface), then forwarding per family. */
function setUpGateways(c: Config, bridge: IpLink, gateways: { 4: string[]; 6: string[] }, result: Result) {
  const all = [...gateways[4], ...gateways[6]];
  if (all.length === 0) return;
  let dev = bridge;
  if (c.vlan !== 0) {
    dev = ensureVlanGateway(bridge, c.vlan, c.preserveDefaultVlan, c.mtu);
    result.interfaces!.push({ name: dev.ifname, mac: dev.address });
  }
  ensureGateways(dev, all, c.forceAddress);
  const forwarding: [string, string][] = [];
  if (gateways[4].length > 0) forwarding.push(["net/ipv4/ip_forward", "1"]);
  if (gateways[6].length > 0) forwarding.push(["net/ipv6/conf/all/forwarding", "1"]);
  writeSysctls(forwarding);
}

/**
 * Undo ADD, best effort and idempotent: the container interface if the namespace is still there,
 * the IPAM reservation always, and the masquerade rules even when the namespace is gone (their
 * addresses then come from prevResult, or the whole chain of this container goes).
 */
const del = (req: Request<Config>) => lockedDel(attachmentOf(req), () => delLocked(req));

async function delLocked(req: Request<Config>) {
  const c = req.config;
  const errors: unknown[] = [];
  let addrs: string[] = [];
  if (req.netnsState === "ok") {
    try {
      addrs = removeContainerIface(req.netns, req.ifname);
    } catch (e) {
      // Go on: the reservation and the rules must go whatever happened in the namespace.
      errors.push(e);
    }
  }
  try {
    await delegateIpam("DEL", req);
  } catch (e) {
    errors.push(e);
  }
  if (c.macspoofchk) {
    try {
      teardownSpoofCheck(spoofRefId(req.containerId, req.ifname));
    } catch (e) {
      process.stderr.write(`bridge: spoof-check teardown: ${(e as Error).message}\n`);
    }
  }
  if (layer3(c) && c.ipMasq) {
    const known = new Set([...addrs, ...prevResultAddresses(req)]);
    const failures = teardownMasquerade(attachmentOf(req), parseAddrs([...known]));
    if (failures.length > 0)
      errors.push(new CniError(Code.Internal, `failed to remove masquerade rules: ${failures.join("; ")}`));
  }
  if (errors.length > 0) throw errors[0];
}

async function check(req: Request<Config>) {
  const c = req.config;
  // The reference also asks IPAM when there is none and so fails every layer-2 CHECK; we do not.
  await delegateIpam("CHECK", req);
  if (c.prevResult === undefined) throw new CniError(Code.Internal, "Required prevResult missing");
  const prev = parseResult(c.prevResult, req.version);
  checkAttachment({ bridge: c.bridge, promisc: c.promiscMode, ifname: req.ifname, netns: req.netns, prev });
}

async function status(req: Request<Config>) {
  await delegateIpam("STATUS", req);
}

const gc = gcMasqueradeAndIpam;

const plugin: PluginImpl<Config> = { parseConfig, add, del, check, status, gc };
export default plugin;
