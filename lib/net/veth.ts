import { randomHex } from "../hash.ts";
import { CniError, Code } from "../cni/errors.ts";
import { applyLinkOps, showLink, type IpLink, type LinkOp } from "../kernel/link.ts";
import { sysfsOperstate } from "../kernel/procfs.ts";
import { sleepMs } from "../sleep.ts";

/**
 * The veth pair of one attachment: host end `veth` + 8 random hex digits (the reference's naming),
 * container end CNI_IFNAME created directly inside the container namespace, and the host end
 * configured as a bridge port, all as link operations.
 */
export const randomVethName = () => `veth${randomHex(4)}`;

export interface PortOptions {
  bridge: string;
  mtu: number;
  /** Container-side MAC; kernel-random when absent. */
  mac?: string;
  hairpin: boolean;
  isolated: boolean;
}

/** Creates the pair with the peer in `netnsPath` (a path works where ip takes a netns). */
export function vethPairOp(
  host: string,
  ifname: string,
  netnsPath: string,
  o: Pick<PortOptions, "mtu" | "mac">,
): LinkOp {
  const mtu = o.mtu > 0 ? o.mtu : undefined;
  return {
    op: "link-add",
    dev: host,
    mtu,
    kind: { type: "veth", peer: { name: ifname, mtu, mac: o.mac, netns: netnsPath } },
  };
}

/** Enslaves the host end with hairpin and isolation set explicitly either way, then brings it up. */
export function bridgePortOps(host: string, o: PortOptions): LinkOp[] {
  return [
    { op: "link-set", dev: host, master: o.bridge },
    { op: "port-set", dev: host, hairpin: o.hairpin, isolated: o.isolated },
    { op: "link-set", dev: host, up: true },
  ];
}

export interface VlanOptions {
  vlan: number;
  trunk: readonly number[];
  /** Whether vlanTrunk was given at all (even empty): it still counts as VLAN configuration. */
  trunkGiven: boolean;
  preserveDefaultVlan: boolean;
}

/**
 * VLAN membership of a new port, as the reference (HEAD): drop the port's initial VLAN (the
 * bridge's default PVID) unless preserveDefaultVlan, then the access VLAN as PVID untagged, then the
 * trunk VLANs tagged, and VLAN 1 as native when only a trunk is given.
 */
export function portVlanOps(port: string, o: VlanOptions, defaultPvid: number): LinkOp[] {
  if (o.vlan === 0 && o.trunk.length === 0) return [];
  const vlan = (verb: "add" | "del", vid: number, native = false): LinkOp => ({
    op: "port-vlan",
    verb,
    dev: port,
    vid,
    pvid: native,
    untagged: native,
  });
  const ops: LinkOp[] = [];
  if (!o.preserveDefaultVlan && defaultPvid > 0) ops.push(vlan("del", defaultPvid));
  if (o.vlan !== 0) ops.push(vlan("add", o.vlan, true));
  for (const v of o.trunk) ops.push(vlan("add", v));
  if (o.vlan === 0) ops.push(vlan("add", 1, true));
  return ops;
}

const RETRY_SLEEPS_MS = [0, 50, 500, 1000, 1000];

/**
 * Waits until the host end is operationally up (the bridge forwards on the port only then), polling
 * like the reference. sysfs answers without a spawn; ip is the fallback when sysfs shows another
 * namespace.
 */
export function waitPortUp(dev: string) {
  let state = "unknown";
  for (const ms of RETRY_SLEEPS_MS) {
    sleepMs(ms);
    state = sysfsOperstate(dev) ?? showLink(dev)?.operstate?.toLowerCase() ?? "absent";
    if (state === "up") return;
  }
  throw new CniError(Code.Internal, `bridge port in error state: ${state}`);
}

const MAX_NAME_TRIES = 10;

/**
 * A veth pair on its own (no bridge): host end `vethXXXXXXXX` brought up, container end
 * CNI_IFNAME created in `netnsPath`. A taken random host name is retried; a taken
 * container name is the reference's error. Returns the host end as the kernel reports it.
 */
export function createVethPair(ifname: string, netnsPath: string, o: Pick<PortOptions, "mtu" | "mac">): IpLink {
  for (let attempt = 0; attempt < MAX_NAME_TRIES; attempt++) {
    const host = randomVethName();
    const r = applyLinkOps([
      vethPairOp(host, ifname, netnsPath, o),
      { op: "link-set", dev: host, up: true },
      { op: "show", dev: host },
    ]);
    const link = r.shown.find((l) => l.ifname === host);
    if (r.ok && link) return link;
    // Anything past the creation (or an unknown failing op) may have left the pair: remove it.
    if (r.failedOp !== 0) applyLinkOps([{ op: "link-del", dev: host }]);
    if (r.failedOp === 0 && /File exists/.test(r.stderr)) {
      if (showLink(host)) continue;
      throw new CniError(Code.Internal, `container veth name ("${ifname}") peer provided ("${host}") already exists`);
    }
    throw new CniError(Code.Internal, `failed to create veth pair for "${ifname}": ${r.stderr}`);
  }
  throw new CniError(Code.Internal, `failed to find a free host veth name after ${MAX_NAME_TRIES} tries`);
}
