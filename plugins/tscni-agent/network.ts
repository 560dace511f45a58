import * as z from "../../lib/cni/zod.ts";
import { formatIP, ipAt, maskOf, parseCIDR, parseIP } from "../../lib/ip/address.ts";

/** flannel's network config (`<prefix>/config`); the IPv4 vxlan and host-gw subset this agent serves. */
export const NetworkConfigSchema = z.looseObject({
  Network: z.string(),
  SubnetLen: z.optional(z.number().check(z.int())),
  SubnetMin: z.optional(z.string()),
  SubnetMax: z.optional(z.string()),
  Backend: z.looseObject({
    Type: z.enum(["vxlan", "host-gw"]),
    VNI: z.optional(z.number().check(z.int(), z.minimum(0), z.maximum(16777215))),
    Port: z.optional(z.number().check(z.int(), z.minimum(0), z.maximum(65535))),
    MTU: z.optional(z.number().check(z.int(), z.minimum(68), z.maximum(65535))),
    /** vxlan: peers on our L2 get a plain route via their PublicIP, no encapsulation. */
    DirectRouting: z.optional(z.boolean()),
  }),
});

export type NetworkConfigJson = z.infer<typeof NetworkConfigSchema>;

/** The config with flannel's defaults filled in and the subnet range as numbers. */
export interface Network {
  network: string;
  prefix: number;
  subnetLen: number;
  /** First and last subnet network address handed out, as integers. */
  min: bigint;
  max: bigint;
  backend: "vxlan" | "host-gw";
  directRouting: boolean;
  vni: number;
  port: number;
  mtu?: number;
}

const v4 = (s: string, what: string) => {
  const ip = parseIP(s);
  if (ip?.family !== 4) throw new Error(`${what} "${s}" is not an IPv4 address`);
  return ip.n;
};

/** Validates the config text; the error message says what is wrong (the caller names the key). */
export function parseNetworkConfig(text: string): Network {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`not JSON: ${(e as Error).message}`);
  }
  const r = NetworkConfigSchema.safeParse(json);
  if (!r.success) {
    const i = r.error.issues[0]!;
    const where = i.path.join(".") || "the config";
    // flannel's code falls back to the udp backend when Backend is absent; we say so instead.
    throw new Error(
      `${where}: ${i.message}${i.path[0] === "Backend" ? ' (this agent runs Backend.Type "vxlan" or "host-gw")' : ""}`,
    );
  }
  const c = r.data;
  const net = parseCIDR(c.Network);
  if (net?.ip.family !== 4) throw new Error(`Network "${c.Network}" is not an IPv4 CIDR`);
  if (net.prefix > 28) throw new Error(`Network "${c.Network}" is too small (at most /28)`);
  const base = net.ip.n & maskOf(4, net.prefix);
  const subnetLen = c.SubnetLen ?? (net.prefix <= 22 ? 24 : net.prefix + 2);
  if (subnetLen > 30 || subnetLen - net.prefix < 2)
    throw new Error(`SubnetLen ${subnetLen} must be at most 30 and leave at least 4 subnets of Network ${c.Network}`);
  const size = 1n << BigInt(32 - subnetLen);
  const last = base + (1n << BigInt(32 - net.prefix)) - size;
  const min = c.SubnetMin !== undefined ? v4(c.SubnetMin, "SubnetMin") : base + size;
  const max = c.SubnetMax !== undefined ? v4(c.SubnetMax, "SubnetMax") : last;
  for (const [n, name] of [
    [min, "SubnetMin"],
    [max, "SubnetMax"],
  ] as const) {
    if (n < base || n > last || (n - base) % size !== 0n)
      throw new Error(`${name} ${formatIP(ipAt(4, n))} is not a /${subnetLen} subnet of Network ${c.Network}`);
  }
  if (min > max) throw new Error("SubnetMin is above SubnetMax");
  return {
    network: `${formatIP(ipAt(4, base))}/${net.prefix}`,
    prefix: net.prefix,
    subnetLen,
    min,
    max,
    backend: c.Backend.Type,
    directRouting: c.Backend.DirectRouting ?? false,
    vni: c.Backend.VNI ?? 1,
    port: c.Backend.Port || 8472,
    mtu: c.Backend.MTU,
  };
}

/** A node subnet by its network address. */
export interface Subnet {
  /** e.g. "10.244.3.0" */
  addr: string;
  len: number;
}

export const subnetKey = (s: Subnet) => `${s.addr}-${s.len}`;
export const subnetCidr = (s: Subnet) => `${s.addr}/${s.len}`;

/** `a.b.c.d-len` (flannel's key suffix) back to a subnet; undefined for other keys (dual stack). */
export function parseSubnetKey(suffix: string): Subnet | undefined {
  const m = /^(\d{1,3}(?:\.\d{1,3}){3})-(\d{1,2})$/.exec(suffix);
  if (!m) return undefined;
  const ip = parseIP(m[1]!);
  return ip && ip.family === 4 ? { addr: formatIP(ip), len: Number(m[2]) } : undefined;
}

/** Whether a subnet is one this network hands out (in range, on the boundary, the right length). */
export function fits(n: Network, s: Subnet): boolean {
  if (s.len !== n.subnetLen) return false;
  const v = parseIP(s.addr)!.n;
  const size = 1n << BigInt(32 - n.subnetLen);
  return v >= n.min && v <= n.max && (v - n.min) % size === 0n;
}

/** Up to `limit` subnets of the range that are not taken, in order. */
export function freeSubnets(n: Network, taken: ReadonlySet<string>, limit = 100): Subnet[] {
  const size = 1n << BigInt(32 - n.subnetLen);
  const out: Subnet[] = [];
  for (let v = n.min; v <= n.max && out.length < limit; v += size) {
    const s = { addr: formatIP(ipAt(4, v)), len: n.subnetLen };
    if (!taken.has(subnetKey(s))) out.push(s);
  }
  return out;
}

/** The first host address of a subnet with its length: FLANNEL_SUBNET's form. */
export const firstHost = (s: Subnet) => `${formatIP(ipAt(4, parseIP(s.addr)!.n + 1n))}/${s.len}`;

/** subnet.env's FLANNEL_SUBNET back to its subnet (the previous run's, reused after store loss). */
export function subnetOfEnv(text: string): Subnet | undefined {
  const m = /^FLANNEL_SUBNET=(\S+)$/m.exec(text);
  const c = m ? parseCIDR(m[1]!) : undefined;
  if (c?.ip.family !== 4) return undefined;
  return { addr: formatIP(ipAt(4, c.ip.n & maskOf(4, c.prefix))), len: c.prefix };
}
