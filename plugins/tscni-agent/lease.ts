import type { EtcdClient, KeyValue } from "../../lib/etcd/client.ts";
import { fits, freeSubnets, type Network, parseSubnetKey, type Subnet, subnetKey } from "./network.ts";

/** flannel's lease value (pkg/lease), so flanneld nodes and ours read each other's keys. */
export interface LeaseValue {
  PublicIP: string;
  PublicIPv6?: string | null;
  BackendType: string;
  BackendData?: { VNI?: number; VtepMAC?: string } | null;
}

/** A node's lease as read from the store. */
export interface Peer {
  subnet: Subnet;
  publicIp: string;
  /** The VTEP's MAC (vxlan leases). */
  vtepMac?: string;
}

/** What a lease says of the node's backend: flannel's BackendType and BackendData. */
export type Backend = { type: "vxlan"; vni: number; mac: string } | { type: "host-gw" };

/** flannel's value: host-gw has no BackendData (flannel's field is omitempty and left unset). */
export const leaseValue = (publicIp: string, b: Backend): string =>
  JSON.stringify({
    PublicIP: publicIp,
    PublicIPv6: null,
    BackendType: b.type,
    ...(b.type === "vxlan" ? { BackendData: { VNI: b.vni, VtepMAC: b.mac } } : {}),
  });

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

/**
 * A subnets/ key and its value as a peer of the given backend type; undefined for what is not an
 * IPv4 lease of that type (flannel, too, ignores leases of another backend).
 */
export function peerOf(
  prefix: string,
  kv: Pick<KeyValue, "key" | "value">,
  backendType: Backend["type"] = "vxlan",
): Peer | undefined {
  const subnet = parseSubnetKey(kv.key.slice(`${prefix}/subnets/`.length));
  if (!subnet) return undefined;
  let v: LeaseValue;
  try {
    v = JSON.parse(kv.value) as LeaseValue;
  } catch {
    return undefined;
  }
  if (v === null || typeof v !== "object") return undefined;
  if (v.BackendType !== backendType || typeof v.PublicIP !== "string" || !IPV4.test(v.PublicIP)) return undefined;
  if (backendType === "host-gw") return { subnet, publicIp: v.PublicIP };
  const mac = v.BackendData?.VtepMAC;
  if (typeof mac !== "string" || !MAC.test(mac)) return undefined;
  return { subnet, publicIp: v.PublicIP, vtepMac: mac.toLowerCase() };
}

export interface Held {
  subnet: Subnet;
  key: string;
  /** The etcd lease the key is attached to. */
  leaseId: string;
  ttl: number;
}

/**
 * flannel's acquisition order: the lease already carrying our PublicIP (re-put with a fresh etcd
 * lease: the key, and its create revision, stay), else the previous subnet.env's subnet if free,
 * else a random one of the first 100 free subnets; created with create-if-absent, 10 attempts.
 * Beyond flannel: the previous subnet.env's lease is ours too when it carries our VTEP's MAC (the
 * device, and so its MAC, outlives a change of the node's address), so a re-addressed node keeps
 * its subnet and its pods, and its peers only see its PublicIP change.
 */
export async function acquire(
  etcd: EtcdClient,
  prefix: string,
  net: Network,
  publicIp: string,
  value: string,
  ttl: number,
  previous: Subnet | undefined,
  log: (m: string) => void,
  vtepMac?: string,
): Promise<Held> {
  for (let attempt = 0; attempt < 10; attempt++) {
    const { kvs } = await etcd.range(`${prefix}/subnets/`, { prefix: true });
    const taken = new Set<string>();
    let ours: Subnet | undefined;
    for (const kv of kvs) {
      const s = parseSubnetKey(kv.key.slice(`${prefix}/subnets/`.length));
      if (!s) continue;
      taken.add(subnetKey(s));
      const p = peerOf(prefix, kv, "vxlan") ?? peerOf(prefix, kv, "host-gw");
      const moved = vtepMac !== undefined && p?.vtepMac === vtepMac && previous && subnetKey(previous) === subnetKey(s);
      if (p?.publicIp === publicIp || moved) {
        if (fits(net, s)) ours = s;
        else {
          log(`lease ${kv.key} carries our address but no longer fits the config: deleting it`);
          await etcd.delete(kv.key);
        }
      }
    }
    const grant = await etcd.leaseGrant(ttl);
    if (ours) {
      const key = `${prefix}/subnets/${subnetKey(ours)}`;
      await etcd.put(key, value, grant.id);
      return { subnet: ours, key, leaseId: grant.id, ttl: grant.ttl };
    }
    const candidates =
      previous && fits(net, previous) && !taken.has(subnetKey(previous)) ? [previous] : freeSubnets(net, taken);
    if (candidates.length === 0) throw new Error(`no free subnet left in ${net.network}`);
    const pick = candidates[Math.floor(Math.random() * candidates.length)]!;
    const key = `${prefix}/subnets/${subnetKey(pick)}`;
    if (await etcd.createIfAbsent(key, value, grant.id))
      return { subnet: pick, key, leaseId: grant.id, ttl: grant.ttl };
    await etcd.leaseRevoke(grant.id).catch(() => {});
    log(`subnet ${subnetKey(pick)} was taken meanwhile; trying again`);
  }
  throw new Error("max retries reached trying to acquire a subnet");
}

/**
 * Renews as flannel does, a fresh etcd lease and a re-put of the same key (its create revision
 * stays, peers see a PUT they already handle); then the old etcd lease, now empty, is revoked.
 * When the key is gone (deleted by hand) this recreates it for the same subnet.
 */
export async function renew(etcd: EtcdClient, held: Held, value: string, ttl: number): Promise<Held> {
  const grant = await etcd.leaseGrant(ttl);
  await etcd.put(held.key, value, grant.id);
  await etcd.leaseRevoke(held.leaseId).catch(() => {});
  return { ...held, leaseId: grant.id, ttl: grant.ttl };
}
