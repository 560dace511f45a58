import type { EtcdClient, KeyValue } from "../../lib/etcd/client.ts";
import { fits, freeSubnets, type Network, parseSubnetKey, type Subnet, subnetKey } from "./network.ts";

/** flannel's lease value (pkg/lease), so flanneld nodes and ours read each other's keys. */
export interface LeaseValue {
  PublicIP: string;
  PublicIPv6?: string | null;
  BackendType: string;
  BackendData?: { VNI?: number; VtepMAC?: string };
}

/** A node's lease as read from the store. */
export interface Peer {
  subnet: Subnet;
  publicIp: string;
  vtepMac: string;
}

export const leaseValue = (publicIp: string, vni: number, mac: string): string =>
  JSON.stringify({
    PublicIP: publicIp,
    PublicIPv6: null,
    BackendType: "vxlan",
    BackendData: { VNI: vni, VtepMAC: mac },
  });

/** A subnets/ key and its value as a peer; undefined for what is not a vxlan IPv4 lease. */
export function peerOf(prefix: string, kv: Pick<KeyValue, "key" | "value">): Peer | undefined {
  const subnet = parseSubnetKey(kv.key.slice(`${prefix}/subnets/`.length));
  if (!subnet) return undefined;
  let v: LeaseValue;
  try {
    v = JSON.parse(kv.value) as LeaseValue;
  } catch {
    return undefined;
  }
  const mac = v.BackendData?.VtepMAC;
  if (v.BackendType !== "vxlan" || typeof v.PublicIP !== "string" || typeof mac !== "string") return undefined;
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(v.PublicIP) || !/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(mac)) return undefined;
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
): Promise<Held> {
  for (let attempt = 0; attempt < 10; attempt++) {
    const { kvs } = await etcd.range(`${prefix}/subnets/`, { prefix: true });
    const taken = new Set<string>();
    let ours: Subnet | undefined;
    for (const kv of kvs) {
      const s = parseSubnetKey(kv.key.slice(`${prefix}/subnets/`.length));
      if (!s) continue;
      taken.add(subnetKey(s));
      const p = peerOf(prefix, kv);
      if (p?.publicIp === publicIp) {
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
