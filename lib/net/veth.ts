import { randomHex } from "../hash.ts";
import { CniError, Code } from "../cni/errors.ts";
import { ipJson } from "../kernel/exec.ts";
import { sysfsOperstate } from "../kernel/procfs.ts";
import { sleepMs } from "../sleep.ts";

/**
 * The veth pair of one attachment: host end `veth` + 8 random hex digits (the reference's naming),
 * container end CNI_IFNAME created directly inside the container namespace, and the host end
 * configured as a bridge port, all as ip batch lines.
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
export function vethPairLine(
  host: string,
  ifname: string,
  netnsPath: string,
  o: Pick<PortOptions, "mtu" | "mac">,
): string[] {
  const mtu = o.mtu > 0 ? ["mtu", String(o.mtu)] : [];
  return [
    "link",
    "add",
    host,
    ...mtu,
    "type",
    "veth",
    "peer",
    "name",
    ifname,
    ...mtu,
    ...(o.mac ? ["address", o.mac] : []),
    "netns",
    netnsPath,
  ];
}

/** Enslaves the host end with hairpin and isolation set explicitly either way, then brings it up. */
export function bridgePortLines(host: string, o: PortOptions): string[][] {
  const onOff = (b: boolean) => (b ? "on" : "off");
  return [
    ["link", "set", host, "master", o.bridge],
    ["link", "set", host, "type", "bridge_slave", "hairpin", onOff(o.hairpin), "isolated", onOff(o.isolated)],
    ["link", "set", host, "up"],
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
 * `bridge vlan` lines for a new port, as the reference (HEAD): drop the port's initial VLAN (the
 * bridge's default PVID) unless preserveDefaultVlan, then the access VLAN as PVID untagged, then the
 * trunk VLANs tagged, and VLAN 1 as native when only a trunk is given.
 */
export function portVlanLines(port: string, o: VlanOptions, defaultPvid: number): string[][] {
  if (o.vlan === 0 && o.trunk.length === 0) return [];
  const lines: string[][] = [];
  if (!o.preserveDefaultVlan && defaultPvid > 0)
    lines.push(["vlan", "del", "dev", port, "vid", String(defaultPvid), "master"]);
  if (o.vlan !== 0) lines.push(["vlan", "add", "dev", port, "vid", String(o.vlan), "pvid", "untagged", "master"]);
  for (const v of o.trunk) lines.push(["vlan", "add", "dev", port, "vid", String(v), "master"]);
  if (o.vlan === 0) lines.push(["vlan", "add", "dev", port, "vid", "1", "pvid", "untagged", "master"]);
  return lines;
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
    state =
      sysfsOperstate(dev) ??
      ipJson<{ operstate?: string }[]>(["link", "show", "dev", dev], {
        allowFailure: true,
      })[0]?.operstate?.toLowerCase() ??
      "absent";
    if (state === "up") return;
  }
  throw new CniError(Code.Internal, `bridge port in error state: ${state}`);
}
