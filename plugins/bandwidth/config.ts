import { BaseConfig, foldKeys, parseWith } from "../../lib/cni/config.ts";
import { isObject } from "../../lib/is-object.ts";
import { CniError, Code } from "../../lib/cni/errors.ts";
import * as z from "../../lib/cni/zod.ts";
import type { TokenBucket } from "../../lib/kernel/tc.ts";

/**
 * The bandwidth config with the reference's keys: rates in bits per second and bursts in bits, set
 * in the config or (only when the config sets none) by the runtime through the `bandwidth`
 * capability, which is how Kubernetes' ingress/egress-bandwidth pod annotations arrive.
 */

const Bits = z.number().check(z.int(), z.minimum(0), z.maximum(Number.MAX_SAFE_INTEGER));

const LimitKeys = {
  ingressRate: z._default(Bits, 0),
  ingressBurst: z._default(Bits, 0),
  egressRate: z._default(Bits, 0),
  egressBurst: z._default(Bits, 0),
};
const Limits = z.looseObject(LimitKeys);
export type Limits = z.infer<typeof Limits>;

const BandwidthConfig = z.extend(BaseConfig, {
  ...LimitKeys,
  runtimeConfig: z.optional(z.looseObject({ bandwidth: z.optional(Limits) })),
});

/** Shaping of one direction, in the kernel's units; undefined when that direction is not shaped. */
export interface Shaping {
  /** Traffic to the container: a token bucket on the host end of its veth. */
  ingress?: TokenBucket;
  /** Traffic from the container: redirected to an ifb device whose token bucket shapes it. */
  egress?: TokenBucket;
}

export type Config = z.infer<typeof BandwidthConfig> & { shaping: Shaping };

export function parseConfig(raw: Record<string, unknown>): Config {
  const c = parseWith(BandwidthConfig, withGoKeys(raw));
  return { ...c, shaping: shapingOf(limitsOf(c)) };
}

// containerd's CRI plugin sends the capability as {"IngressRate": ..., "IngressBurst": ...}, which
// the reference reads because Go matches keys case-insensitively; so do we, at every level.
const LIMIT_KEYS = Object.keys(LimitKeys);
function withGoKeys(raw: Record<string, unknown>): Record<string, unknown> {
  const top = foldKeys(raw, [...LIMIT_KEYS, "runtimeConfig"]) as Record<string, unknown>;
  const rc = foldKeys(top.runtimeConfig, ["bandwidth"]);
  if (isObject(rc)) top.runtimeConfig = { ...rc, bandwidth: foldKeys(rc.bandwidth, LIMIT_KEYS) };
  return top;
}

const isZero = (l: Limits) => !l.ingressRate && !l.ingressBurst && !l.egressRate && !l.egressBurst;

/** The config's own limits win; the runtime's apply only when the config sets none, as the reference. */
function limitsOf(c: z.infer<typeof BandwidthConfig>): Limits {
  const rt = c.runtimeConfig?.bandwidth;
  return isZero(c) && rt ? rt : c;
}

const bad = (msg: string) => new CniError(Code.Internal, msg);

function shapingOf(l: Limits): Shaping {
  checkPair(l.ingressRate, l.ingressBurst);
  checkPair(l.egressRate, l.egressBurst);
  return {
    ingress: l.ingressRate > 0 ? tokenBucket(l.ingressRate, l.ingressBurst) : undefined,
    egress: l.egressRate > 0 ? tokenBucket(l.egressRate, l.egressBurst) : undefined,
  };
}

const FOUR_GB = 2 ** 32;

/** The reference's checks and messages, which users match on. */
function checkPair(rate: number, burst: number) {
  if (rate === 0 && burst !== 0) throw bad("if burst is set, rate must also be set");
  if (burst === 0 && rate !== 0) throw bad("if rate is set, burst must also be set");
  if (burst / 8 >= FOUR_GB) throw bad("burst cannot be more than 4GB");
  if (rate !== 0 && rate < 8) throw bad(`invalid rate: ${rate} bits/s is less than one byte per second`);
}

/** How long packets may wait behind the bucket, as the reference sets it. */
export const LATENCY_US = 25_000;

/**
 * The kernel keeps a bucket's burst as the time to send it at the rate, in 64 ns scheduler ticks
 * held in 32 bits: about 274.9 s. A longer burst wraps around in the kernel (the reference passes
 * it on and gets a tiny or random one: containerd sends 4 Gbit as the "unlimited" burst of
 * Kubernetes' annotations); it is capped to the longest the kernel can hold instead.
 */
const MAX_BURST_SECONDS = (2 ** 32 - 1) / 15_625_000;

/** The bucket for a rate in bits/s and a burst in bits, in bytes as the kernel takes them. */
export function tokenBucket(rateBits: number, burstBits: number): TokenBucket {
  const rate = Math.floor(rateBits / 8);
  const burst = Math.min(Math.floor(burstBits / 8), Math.floor(rate * MAX_BURST_SECONDS));
  const limit = Math.floor((rate * LATENCY_US) / 1_000_000) + burst;
  if (limit >= FOUR_GB)
    throw bad(`rate ${rateBits} bits/s is too high: its queue of ${LATENCY_US / 1000} ms exceeds 4GB`);
  return { rate, burst, limit };
}
