import { test } from "uvu";
import * as assert from "uvu/assert";
import { lineOf } from "../../lib/kernel/link.ts";
import { containerRouteOps, hostOps, requireGateways } from "../../plugins/ptp/routes.ts";

// ptp's routing as the reference sets it up: the container's subnet route replaced by a host
// route to the gateway and the subnet via it; the gateway on the node's end with a route back.

const lines = (ops: ReturnType<typeof hostOps>) => ops.map((o) => lineOf(o).join(" "));

test("container: subnet route out, link route to the gateway and the subnet via it, from the address", () => {
  assert.equal(
    lines(
      containerRouteOps("eth0", [
        { interface: 1, address: "10.1.2.3/24", gateway: "10.1.2.1" },
        { interface: 1, address: "fd00:1::3/64", gateway: "fd00:1::1" },
      ]),
    ),
    [
      "route del 10.1.2.0/24 dev eth0",
      "route replace 10.1.2.1/32 dev eth0 scope 253 src 10.1.2.3",
      "route replace 10.1.2.0/24 via 10.1.2.1 dev eth0 src 10.1.2.3",
      "route del fd00:1::/64 dev eth0",
      "route replace fd00:1::1/128 dev eth0 scope 253 src fd00:1::3",
      "route replace fd00:1::/64 via fd00:1::1 dev eth0 src fd00:1::3",
    ],
  );
});

test("container: a full-length prefix has no subnet route to replace", () => {
  assert.equal(lines(containerRouteOps("eth0", [{ address: "10.1.2.3/32", gateway: "10.1.2.1" }])), [
    "route replace 10.1.2.1/32 dev eth0 scope 253 src 10.1.2.3",
  ]);
});

test("node: the gateway as a host address (IPv6 without DAD) and a host route to the container", () => {
  assert.equal(
    lines(
      hostOps("veth01234567", [
        { address: "10.1.2.3/24", gateway: "10.1.2.1" },
        { address: "fd00:1::3/64", gateway: "fd00:1::1" },
      ]),
    ),
    [
      "addr replace 10.1.2.1/32 dev veth01234567",
      "route replace 10.1.2.3/32 dev veth01234567",
      "addr replace fd00:1::1/128 nodad dev veth01234567",
      "route replace fd00:1::3/128 dev veth01234567",
    ],
  );
});

test("an address without a gateway is refused before anything is created", () => {
  assert.throws(() => requireGateways([{ address: "10.1.2.3/24" }]), /10\.1\.2\.3\/24 has no gateway/);
  requireGateways([{ address: "10.1.2.3/24", gateway: "10.1.2.1" }]);
});

test.run();
