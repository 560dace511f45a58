import { CniError, Code } from "../../lib/cni/errors.ts";
import { ipBatch, ipJson } from "../../lib/kernel/exec.ts";
import { bridgeBatch, tryIpBatch } from "../../lib/kernel/batch.ts";
import { linkKindNoSpawn, writeSysctls } from "../../lib/kernel/procfs.ts";
import { isBridge, showLink, type IpLink } from "../../lib/kernel/link.ts";
import { gatewayAddrLines } from "../../lib/net/gateways.ts";
import {
  bridgePortLines,
  portVlanLines,
  randomVethName,
  vethPairLine,
  type PortOptions,
  type VlanOptions,
} from "../../lib/net/veth.ts";
import { randomHex } from "../../lib/hash.ts";

/**
 * The node side of a bridge attachment: the bridge itself (created when missing, never deleted),
 * the host end of the veth pair as one of its ports, and the gateway addresses. Every change is one
 * `ip -batch` process; whether the bridge exists is looked up first (in sysfs when it shows our
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

function bridgeLines(o: BridgeOptions, exists: boolean): string[][] {
  const lines: string[][] = [];
  if (!exists) {
    // A fixed address from the start: a bridge without one takes the lowest MAC of its ports, so
    // concurrent first ADDs could each read (and report, and pin) a different one.
    lines.push([
      "link",
      "add",
      o.name,
      "address",
      randomLocalMac(),
      ...(o.mtu > 0 ? ["mtu", String(o.mtu)] : []),
      "type",
      "bridge",
      ...(o.vlanFiltering ? ["vlan_filtering", "1"] : []),
    ]);
  }
  // promisc is only ever turned on, as in the reference.
  lines.push(["link", "set", o.name, ...(o.promisc ? ["promisc", "on"] : []), "up"]);
  return lines;
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
    const head = bridgeLines(b, exists);
    const lines = [
      ...head,
      vethPairLine(host, ifname, netnsPath, port),
      ...bridgePortLines(host, { ...port, bridge: b.name }),
      ["addr", "show", "dev", host],
      ["addr", "show", "dev", b.name],
    ];
    const r = tryIpBatch(lines, { json: true });
    if (r.ok) {
      const shown = r.shown as IpLink[];
      const hostLink = shown.find((l) => l.ifname === host);
      const bridge = shown.find((l) => l.ifname === b.name);
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
    // An unknown failing line (ip killed or timed out) may have created the pair: remove it too.
    const failed = r.failedLine ?? Number.MAX_SAFE_INTEGER;
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
  const ports = ipJson<IpLink[]>(["link", "show", "master", name], { allowFailure: true });
  const bridge = ports.length === 0 ? showLink(name) : undefined;
  if (bridge && isBridge(bridge)) removeLink(name);
}

/** Deletes a node-side link (and with a veth, its peer); absent is fine. */
export function removeLink(dev: string) {
  tryIpBatch([["link", "del", dev]]);
}

/** VLAN membership of a new port; the kernel default PVID entry is the one to drop. */
export function setPortVlans(port: string, bridge: IpLink, o: VlanOptions) {
  try {
    bridgeBatch(portVlanLines(port, o, bridge.linkinfo?.info_data?.vlan_default_pvid ?? 1));
  } catch (e) {
    throw new CniError(Code.Internal, `failed to setup vlan tag on interface "${port}": ${(e as Error).message}`);
  }
}

/**
 * Puts the gateway addresses on `dev` (the bridge, or the VLAN gateway interface) and pins its MAC
 * at the current value: a bridge without an explicit MAC takes its lowest port's and would change
 * as pods come and go. Nothing is spawned when every gateway is already there.
 */
export function ensureGateways(dev: IpLink, gateways: readonly string[], forceAddress: boolean) {
  const lines = gatewayAddrLines(dev.ifname, dev.addr_info ?? [], gateways, forceAddress);
  if (lines.length === 0) return;
  if (dev.address) lines.push(["link", "set", dev.ifname, "address", dev.address]);
  ipBatch(lines);
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
    const mtuArgs = mtu > 0 ? ["mtu", String(mtu)] : [];
    const r = tryIpBatch(
      [
        ["link", "add", name, ...mtuArgs, "type", "veth", "peer", "name", peer, ...mtuArgs],
        ...bridgePortLines(peer, { bridge: bridge.ifname, mtu, hairpin: false, isolated: false }),
        ["link", "set", name, "up"],
        ["addr", "show", "dev", name],
      ],
      { json: true },
    );
    if (!r.ok) {
      if ((r.failedLine ?? 0) > 0) removeLink(name);
      if (r.failedLine === 0 && /File exists/.test(r.stderr) && !showLink(name)) continue;
      throw new CniError(Code.Internal, `failed to create vlan gateway "${name}": ${r.stderr}`);
    }
    try {
      setPortVlans(peer, bridge, { vlan, trunk: [], trunkGiven: false, preserveDefaultVlan });
    } catch (e) {
      removeLink(name);
      throw e;
    }
    const link = (r.shown as IpLink[]).find((l) => l.ifname === name);
    if (link) return link;
  }
  throw new CniError(Code.Internal, `failed to create vlan gateway "${name}"`);
}
