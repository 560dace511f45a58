import { test } from "uvu";
import * as assert from "uvu/assert";
import type { Request } from "../../lib/cni/skel.ts";
import { prevResultAddresses } from "../../lib/net/interface-plugin.ts";

// DEL reads prevResult as a cache: whatever it cannot use is skipped, never a reason to fail.

const delWith = (prevResult: unknown) =>
  ({ ifname: "eth0", version: "1.0.0", config: { prevResult } }) as unknown as Request<{ prevResult?: unknown }>;

test("prevResult addresses of the interface, and those without an index", () => {
  const prev = {
    cniVersion: "1.0.0",
    interfaces: [{ name: "veth1" }, { name: "eth0", sandbox: "/run/netns/x" }, { name: "net1" }],
    ips: [
      { address: "10.1.2.3/24", interface: 1 },
      { address: "10.9.9.9/24", interface: 2 },
      { address: "fd00::3/64" },
    ],
  };
  assert.equal(prevResultAddresses(delWith(prev)), ["10.1.2.3/24", "fd00::3/64"]);
});

test("an address that is not a CIDR is skipped (a fuzzed prevResult once made ptp's DEL fail)", () => {
  const prev = {
    cniVersion: "1.0.0",
    interfaces: [{ name: "eth0" }],
    ips: [
      { address: "0.4.0", interface: 0 },
      { address: "10.1.2.3/24", interface: 0 },
    ],
  };
  assert.equal(prevResultAddresses(delWith(prev)), ["10.1.2.3/24"]);
});

test("an unreadable prevResult yields nothing", () => {
  assert.equal(prevResultAddresses(delWith({ ips: "nope" })), []);
  assert.equal(prevResultAddresses(delWith(undefined)), []);
});

test.run();
