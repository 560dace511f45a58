import { CniError, Code } from "../../lib/cni/errors.ts";
import { linkKindNoSpawn, writeSysctls } from "../../lib/kernel/procfs.ts";
import { applyLinkOps, isBridge, mustApplyLinkOps, showLink, type IpLink, type LinkOp } from "../../lib/kernel/link.ts";
import { gatewayAddrOps } from "../../lib/net/gateways.ts";
import {
  bridgePortOps,
  portVlanOps,
  randomVethName,
  vethPairOp,
  type PortOptions,
  type VlanOptions,
} from "../../lib/net/veth.ts";
import { randomHex } from "../../lib/hash.ts";

/**
 * The node side of a bridge attachment: the bridge itself (created when missing, never deleted),
 * the host end of the veth pair as one of its ports, and the gateway addresses. Every change is one
 * run of link operations; whether the bridge exists is looked up first (in sysfs when it shows our
 * namespace, so usually without a spawn).
 */

export interface BridgeOptions {
  name: string;
  mtu: number;
  promisc: boolean;
  /** vlan or vlanTrunk configured: a bridge we create filters VLANs. */
  vlanFiltering: boolean;
}

/**
 * Whether the bridge exists; an error when the name is taken by something else. Answered from
 * procfs/sysfs when they show our namespace, else by asking ip.
 */
export function bridgeExists(name: string): boolean {
  const kind = linkKindNoSpawn(name) ?? ipKind(name);
  if (kind === "other") throw new CniError(Code.Internal, `"${name}" already exists but is not a bridge`);
  return kind === "bridge";
}

function ipKind(name: string): "absent" | "bridge" | "other" {
  const link = showLink(name);
  return !link ? "absent" : isBridge(link) ? "bridge" : "other";
}

function bridgeOps(o: BridgeOptions, exists: boolean): LinkOp[] {
  const ops: LinkOp[] = [];
  if (!exists) {
    // A fixed address from the start: a bridge without one takes the lowest MAC of its ports, so
    // concurrent first ADDs could each read (and report, and pin) a different one.
    ops.push({
      op: "link-add",
      dev: o.name,
      mac: randomLocalMac(),
      mtu: o.mtu > 0 ? o.mtu : undefined,
      kind: { type: "bridge", vlanFiltering: o.vlanFiltering },
    });
  }
  // promisc is only ever turned on, as in the reference.
  ops.push({ op: "link-set", dev: o.name, promisc: o.promisc ? true : undefined, up: true });
  return ops;
}

/** A random unicast, locally administered MAC. */
function randomLocalMac(): string {
  const bytes = randomHex(6).match(/../g)!;
  bytes[0] = ((parseInt(bytes[0]!, 16) & 0xfc) | 0x02).toString(16).padStart(2, "0");
  return bytes.join(":");
}

export interface Port {
  bridge: IpLink;
  host: IpLink;
  /** This call created the bridge (it did not exist before): a failed ADD removes it again. */
  createdBridge: boolean;
}

const MAX_NAME_TRIES = 10;

/**
 * Ensures the bridge and creates the veth pair with its host end on it, in one batch. A taken host name is retried with a new random one; a bridge created concurrently by
 * another ADD is picked up; a failure after the pair exists removes the pair again.
 */
export function createPort(
  b: BridgeOptions,
  ifname: string,
  netnsPath: string,
  port: Omit<PortOptions, "bridge">,
): Port {
  let exists = bridgeExists(b.name);
  for (let attempt = 0; attempt < MAX_NAME_TRIES; attempt++) {
    const host = randomVethName();
    const head = bridgeOps(b, exists);
    const r = applyLinkOps([
      ...head,
      vethPairOp(host, ifname, netnsPath, port),
      ...bridgePortOps(host, { ...port, bridge: b.name }),
      { op: "show", dev: host },
      { op: "show", dev: b.name },
    ]);
    if (r.ok) {
      const hostLink = r.shown.find((l) => l.ifname === host);
      const bridge = r.shown.find((l) => l.ifname === b.name);
      if (!hostLink || !bridge) {
        removeLink(host);
        throw new CniError(Code.Internal, `could not read back ${host} and ${b.name}`);
      }
      // We own the routes on these interfaces: no router advertisements.
      writeSysctls(
        [
          [`net/ipv6/conf/${b.name}/accept_ra`, "0"],
          [`net/ipv6/conf/${host}/accept_ra`, "0"],
        ],
        { bestEffort: true },
      );
      return { bridge, host: hostLink, createdBridge: !exists };
    }
    const vethLine = head.length;
    // An unknown failing op (ip killed or timed out) may have created the pair: remove it too.
    const failed = r.failedOp ?? Number.MAX_SAFE_INTEGER;
    if (failed > vethLine) removeLink(host);
    const taken = /File exists/.test(r.stderr);
    if (failed < vethLine) {
      if (!exists && taken) {
        // Another ADD created the bridge between our look and our batch.
        exists = bridgeExists(b.name);
        continue;
      }
      if (exists && /does not exist|Cannot find device/.test(r.stderr)) {
        // Deleted since we looked (or sysfs misled us): look again, with ip.
        exists = ipKind(b.name) === "bridge";
        continue;
      }
      throw new CniError(Code.Internal, `failed to create bridge "${b.name}": ${r.stderr}`);
    }
    if (failed === vethLine && taken) {
      if (showLink(host)) continue; // our random host name was taken: try another
      throw new CniError(Code.Internal, `container veth name ("${ifname}") peer provided ("${host}") already exists`);
    }
    if (failed === vethLine)
      throw new CniError(Code.Internal, `failed to create veth pair for "${ifname}": ${r.stderr}`);
    throw new CniError(Code.Internal, `failed to connect "${host}" to bridge ${b.name}: ${r.stderr}`);
  }
  throw new CniError(Code.Internal, `failed to find a free host veth name after ${MAX_NAME_TRIES} tries`);
}

/**
 * Deletes a bridge that has no ports: the undo of an ADD that created it. A bridge another ADD has
 * meanwhile put a port on stays. (An ADD that looked before the delete and adds its port after it
 * finds the bridge gone and creates it again: createPort looks again on "does not exist".)
 */
export function removeBridgeIfUnused(name: string) {
  const ports = applyLinkOps([{ op: "ports", master: name }]).shown;
  const bridge = ports.length === 0 ? showLink(name) : undefined;
  if (bridge && isBridge(bridge)) removeLink(name);
}

/** Deletes a node-side link (and with a veth, its peer); absent is fine. */
export function removeLink(dev: string) {
  applyLinkOps([{ op: "link-del", dev }]);
}

/** VLAN membership of a new port; the kernel default PVID entry is the one to drop. */
export function setPortVlans(port: string, bridge: IpLink, o: VlanOptions) {
  const r = applyLinkOps(portVlanOps(port, o, bridge.linkinfo?.info_data?.vlan_default_pvid ?? 1));
  if (!r.ok) throw new CniError(Code.Internal, `failed to setup vlan tag on interface "${port}": ${r.stderr}`);
}

/**
 * Puts the gateway addresses on `dev` (the bridge, or the VLAN gateway interface) and pins its MAC
 * at the current value: a bridge without an explicit MAC takes its lowest port's and would change
 * as pods come and go. Nothing is spawned when every gateway is already there.
 */
export function ensureGateways(dev: IpLink, gateways: readonly string[], forceAddress: boolean) {
  const ops = gatewayAddrOps(dev.ifname, dev.addr_info ?? [], gateways, forceAddress);
  if (ops.length === 0) return;
  if (dev.address) ops.push({ op: "link-set", dev: dev.ifname, mac: dev.address });
  mustApplyLinkOps(ops);
}

/**
 * The VLAN gateway `<bridge>.<vlan>`: one end of a node-side veth pair holding the gateway
 * addresses, its peer an access port of the VLAN on the bridge. Reused when it exists.
 */
export function ensureVlanGateway(bridge: IpLink, vlan: number, preserveDefaultVlan: boolean, mtu: number): IpLink {
  const name = `${bridge.ifname}.${vlan}`;
  const found = showLink(name);
  if (found) return found;
  for (let attempt = 0; attempt < MAX_NAME_TRIES; attempt++) {
    const peer = randomVethName();
    const m = mtu > 0 ? mtu : undefined;
    const r = applyLinkOps([
      { op: "link-add", dev: name, mtu: m, kind: { type: "veth", peer: { name: peer, mtu: m } } },
      ...bridgePortOps(peer, { bridge: bridge.ifname, mtu, hairpin: false, isolated: false }),
      { op: "link-set", dev: name, up: true },
      { op: "show", dev: name },
    ]);
    if (!r.ok) {
      if ((r.failedOp ?? 0) > 0) removeLink(name);
      if (r.failedOp === 0 && /File exists/.test(r.stderr) && !showLink(name)) continue;
      throw new CniError(Code.Internal, `failed to create vlan gateway "${name}": ${r.stderr}`);
    }
    try {
      setPortVlans(peer, bridge, { vlan, trunk: [], trunkGiven: false, preserveDefaultVlan });
    } catch (e) {
      removeLink(name);
      throw e;
    }
    const link = r.shown.find((l) => l.ifname === name);
    if (link) return link;
  }
  throw new CniError(Code.Internal, `failed to create vlan gateway "${name}"`);
}
