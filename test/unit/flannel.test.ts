import { test } from "uvu";
import * as assert from "uvu/assert";
import { CniError } from "../../lib/cni/errors.ts";
import { delegateConfig, parseConfig } from "../../plugins/flannel/config.ts";
import { parseSubnetEnv } from "../../plugins/flannel/subnet-env.ts";

// The flannel plugin's two pure steps: reading the agent's subnet.env, building the delegate.

const ENV = `FLANNEL_NETWORK=10.244.0.0/16,10.245.0.0/16
FLANNEL_SUBNET=10.244.1.1/24
FLANNEL_IPV6_NETWORK=fd00:244::/56
FLANNEL_IPV6_SUBNET=fd00:244:0:1::1/64
FLANNEL_MTU=1450
FLANNEL_IPMASQ=true
`;

test("subnet.env: networks as comma lists, both families, MTU and masquerade", () => {
  const e = parseSubnetEnv(ENV, "/run/flannel/subnet.env");
  assert.is(e.networks.length, 3);
  assert.is(e.subnets.length, 2);
  assert.is(e.mtu, 1450);
  assert.is(e.ipMasq, true);
});

test("subnet.env errors name the file, what is missing or wrong, and the agent", () => {
  const message = (text: string) => {
    try {
      parseSubnetEnv(text, "/x/subnet.env");
    } catch (e) {
      assert.instance(e, CniError);
      return (e as CniError).message;
    }
    throw new Error("accepted");
  };
  assert.match(
    message(""),
    /\/x\/subnet\.env: missing FLANNEL_NETWORK, FLANNEL_SUBNET, FLANNEL_MTU, FLANNEL_IPMASQ; the node agent/,
  );
  assert.match(message(ENV.replace("1450", "big")), /FLANNEL_MTU=big is not an MTU/);
  assert.match(message(ENV.replace("IPMASQ=true", "IPMASQ=yes")), /FLANNEL_IPMASQ=yes is not true or false/);
  assert.match(message(ENV.replace("10.244.1.1/24", "10.244.1.1")), /FLANNEL_SUBNET=10\.244\.1\.1 is not a CIDR list/);
});

const conf = (extra: Record<string, unknown> = {}) =>
  parseConfig({ cniVersion: "1.0.0", name: "cbr0", type: "flannel", ...extra });

test("the delegate as upstream builds it: bridge, gateway, masquerade only without the agent's, its MTU, host-local over the subnets", () => {
  const d = delegateConfig(
    conf({ ipam: { routes: [{ dst: "192.168.0.0/16" }] }, runtimeConfig: { portMappings: [] } }),
    parseSubnetEnv(ENV, "f"),
  );
  assert.equal(d, {
    type: "bridge",
    name: "cbr0",
    cniVersion: "1.0.0",
    ipMasq: false,
    mtu: 1450,
    isGateway: true,
    runtimeConfig: { portMappings: [] },
    ipam: {
      type: "host-local",
      ranges: [[{ subnet: "10.244.1.0/24" }], [{ subnet: "fd00:244:0:1::/64" }]],
      routes: [{ dst: "192.168.0.0/16" }, { dst: "10.244.0.0/16" }, { dst: "10.245.0.0/16" }, { dst: "fd00:244::/56" }],
    },
  });
  // The delegate's own choices stand; another type gets no isGateway.
  const own = delegateConfig(conf({ delegate: { type: "ptp", ipMasq: true, mtu: 1400 } }), parseSubnetEnv(ENV, "f"));
  assert.equal([own.type, own.ipMasq, own.mtu, own.isGateway], ["ptp", true, 1400, undefined]);
});

test("the delegate's name and ipam are refused", () => {
  assert.throws(() => conf({ delegate: { name: "x" } }), /must not contain "name"/);
  assert.throws(() => conf({ delegate: { ipam: {} } }), /must not contain "ipam"/);
});

test.run();
