import { test } from "uvu";
import * as assert from "uvu/assert";
import type { IpLink, IpRoute } from "../../lib/kernel/link.ts";
import { parseConfig } from "../../plugins/vrf/config.ts";
import { droppedV6, freeTable, nexthopsToMove, routesToMove, slavesOf } from "../../plugins/vrf/plan.ts";

// The vrf plugin's decisions without a kernel: the table of a new VRF, the routes that follow the
// interface, the IPv6 addresses to add back, and the config's refusals.

const vrf = (ifname: string, table: number): IpLink => ({
  ifindex: table + 10,
  ifname,
  flags: [],
  mtu: 65575,
  linkinfo: { info_kind: "vrf", info_data: { table } },
});
const plain = (ifname: string, master?: string): IpLink => ({ ifindex: 2, ifname, flags: [], mtu: 1500, master });

test("a new VRF takes the lowest table from 1 that no VRF uses; other links do not count", () => {
  assert.is(freeTable([]), 1);
  assert.is(freeTable([vrf("a", 1), vrf("b", 2), vrf("c", 3), vrf("d", 5)]), 4);
  assert.is(freeTable([vrf("a", 1), vrf("b", 2), plain("eth0"), vrf("d", 5)]), 3);
  assert.is(freeTable([vrf("a", 2)]), 1);
});

test("the routes that follow the interface: main, unicast, universe scope, not the kernel's own", () => {
  const r = (x: Partial<IpRoute>): IpRoute => ({
    dst: "default",
    dev: "eth0",
    table: "main",
    type: "unicast",
    scope: "global",
    protocol: "boot",
    ...x,
  });
  const routes = [
    r({ gateway: "10.0.0.1" }),
    r({ dst: "10.0.0.0/24", scope: "link", protocol: "kernel", prefsrc: "10.0.0.2" }),
    r({ dst: "fd00::/64", protocol: "kernel" }),
    r({ dst: "10.9.0.0/16", gateway: "10.0.0.1", prefsrc: "10.0.0.2" }),
    r({ dst: "10.8.0.0/16", gateway: "10.0.0.1", table: "100" }),
    r({ dst: "10.7.0.0/16", gateway: "10.0.0.1", dev: "net1" }),
    r({ dst: "10.0.0.2", type: "local", table: "local", scope: "host", protocol: "kernel" }),
    r({ dst: "10.6.0.0/16", scope: "link", protocol: "boot" }),
  ];
  assert.equal(
    routesToMove(routes, "eth0").map((x) => x.dst),
    ["default", "10.9.0.0/16"],
  );
});

test("a multipath route's nexthop through the interface moves as a route of its own", () => {
  const ecmp: IpRoute = {
    dst: "default",
    table: "main",
    type: "unicast",
    scope: "global",
    protocol: "boot",
    metric: 1024,
    nexthops: [
      { gateway: "fd00:1::1", dev: "eth0", weight: 1 },
      { gateway: "fd00:2::1", dev: "net1", weight: 1 },
    ],
  };
  assert.equal(nexthopsToMove([ecmp, { ...ecmp, table: "100" }], "net1"), [
    { ...ecmp, gateway: "fd00:2::1", dev: "net1", nexthops: undefined },
  ]);
  assert.equal(routesToMove([ecmp], "net1"), [], "not as a route of the interface itself");
  assert.equal(nexthopsToMove([ecmp], "net9"), []);
});

test("the global IPv6 addresses the interface lost while enslaved; a VRF's slaves", () => {
  const withAddrs = (...addrs: [string, number, string][]): IpLink => ({
    ...plain("eth0"),
    addr_info: addrs.map(([local, prefixlen, scope]) => ({
      family: local.includes(":") ? "inet6" : "inet",
      local,
      prefixlen,
      scope,
    })),
  });
  const before = withAddrs(
    ["10.0.0.2", 24, "global"],
    ["fd00::2", 64, "global"],
    ["fd01::2", 64, "global"],
    ["fe80::1", 64, "link"],
  );
  const after = withAddrs(["10.0.0.2", 24, "global"], ["fd01::2", 64, "global"], ["fe80::2", 64, "link"]);
  assert.equal(droppedV6(before, after), [{ family: "inet6", local: "fd00::2", prefixlen: 64, scope: "global" }]);
  assert.equal(
    droppedV6(before, undefined).map((a) => a.local),
    ["fd00::2", "fd01::2"],
  );
  assert.equal(
    slavesOf([plain("eth0", "red"), plain("net1", "blue"), plain("net2", "red")], "red").map((l) => l.ifname),
    ["eth0", "net2"],
  );
});

test("config: vrfname required and an interface name; table 0 is not set", () => {
  const base = { cniVersion: "1.0.0", name: "n", type: "vrf" };
  assert.equal(parseConfig({ ...base, vrfname: "red", table: 0 }).table, undefined);
  assert.is(parseConfig({ ...base, vrfname: "red", table: 1001 }).table, 1001);
  assert.throws(() => parseConfig(base), /configuration is expected to have a valid vrf name/);
  assert.throws(() => parseConfig({ ...base, vrfname: "a/b" }), /vrfname: interface name contains/);
  assert.throws(() => parseConfig({ ...base, vrfname: "red", table: -1 }), /table/);
  assert.throws(() => parseConfig({ ...base, vrfname: "red", table: 2 ** 32 }), /table/);
});

test.run();
