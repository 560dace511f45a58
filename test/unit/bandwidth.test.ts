import { test } from "uvu";
import * as assert from "uvu/assert";
import { CniError } from "../../lib/cni/errors.ts";
import { parseConfig, tokenBucket } from "../../plugins/bandwidth/config.ts";

// bandwidth's configuration: which limits apply, the reference's checks, and the token bucket in
// the kernel's units.

const conf = (extra: Record<string, unknown>) =>
  parseConfig({ cniVersion: "1.0.0", name: "n", type: "bandwidth", ...extra });

test("bits to bytes; the queue is 25 ms at the rate on top of the burst", () => {
  assert.equal(tokenBucket(8_000_000, 80_000), { rate: 1_000_000, burst: 10_000, limit: 35_000 });
  // Fractions of a byte are dropped, as the reference's integer division does.
  assert.equal(tokenBucket(8_007, 87), { rate: 1_000, burst: 10, limit: 35 });
});

test("a burst longer than the kernel's 32-bit tick count holds is capped at about 274.9 s", () => {
  const b = tokenBucket(10_000_000, 2 ** 32 - 1);
  assert.is(b.rate, 1_250_000);
  assert.ok(b.burst < (2 ** 32 - 1) / 8 && b.burst > 343_000_000, String(b.burst));
  assert.ok((b.burst / b.rate) * 15_625_000 <= 2 ** 32 - 1);
});

test("the config's limits win; the runtime's apply only when the config sets none", () => {
  const runtime = { runtimeConfig: { bandwidth: { egressRate: 800, egressBurst: 80 } } };
  assert.equal(conf(runtime).shaping, { ingress: undefined, egress: { rate: 100, burst: 10, limit: 12 } });
  const both = conf({ ...runtime, ingressRate: 1600, ingressBurst: 160 });
  assert.equal(both.shaping, { ingress: { rate: 200, burst: 20, limit: 25 }, egress: undefined });
  assert.equal(conf({}).shaping, { ingress: undefined, egress: undefined });
});

test("the capability as containerd's CRI plugin sends it, with Go's capitalised field names", () => {
  const cri = {
    runtimeConfig: { Bandwidth: { IngressRate: 800, IngressBurst: 80, EgressRate: 1600, EgressBurst: 160 } },
  };
  assert.equal(conf(cri).shaping, {
    ingress: { rate: 100, burst: 10, limit: 12 },
    egress: { rate: 200, burst: 20, limit: 25 },
  });
});

const refused = (extra: Record<string, unknown>) => {
  try {
    conf(extra);
  } catch (e) {
    assert.instance(e, CniError);
    return (e as CniError).message;
  }
  throw new Error(`accepted ${JSON.stringify(extra)}`);
};

test("the reference's messages for a rate or burst alone and a burst of 4 GB; ours for what it passes on", () => {
  assert.is(refused({ ingressRate: 8 }), "if rate is set, burst must also be set");
  assert.is(refused({ egressBurst: 8 }), "if burst is set, rate must also be set");
  assert.is(refused({ egressRate: 8, egressBurst: 8 * 2 ** 32 }), "burst cannot be more than 4GB");
  assert.match(refused({ ingressRate: 7, ingressBurst: 8 }), "less than one byte per second");
  assert.match(refused({ ingressRate: 2 ** 50, ingressBurst: 8 }), "too high");
  assert.match(refused({ ingressRate: -1, ingressBurst: 8 }), "ingressRate");
  assert.match(refused({ ingressRate: 1.5, ingressBurst: 8 }), "ingressRate");
});

test.run();
