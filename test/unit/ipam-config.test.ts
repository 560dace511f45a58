import { test } from "uvu";
import * as assert from "uvu/assert";
import { CniError } from "../../lib/cni/errors.ts";
import { loadIpamConfig } from "../../plugins/host-local/config.ts";
import { formatIP } from "../../lib/ip/address.ts";
import { rangeSetText } from "../../plugins/host-local/range.ts";

const conf = (ipam: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  cniVersion: "1.0.0",
  name: "net1",
  type: "bridge",
  ipam: { type: "host-local", ...ipam },
  ...extra,
});

function failure(raw: Record<string, unknown>, args = ""): CniError {
  try {
    loadIpamConfig(raw, args);
  } catch (e) {
    assert.instance(e, CniError);
    return e as CniError;
  }
  throw new Error("expected the configuration to be refused");
}

test("defaults: gateway and rangeStart .1, rangeEnd broadcast-1 (v4) or last address (v6)", () => {
  const c = loadIpamConfig(conf({ ranges: [[{ subnet: "10.1.2.0/24" }], [{ subnet: "fd00:1::/64" }]] }), "");
  assert.equal(c.rangeSets.map(rangeSetText), ["10.1.2.1-10.1.2.254", "fd00:1::1-fd00:1::ffff:ffff:ffff:ffff"]);
  assert.equal(
    c.rangeSets.map((s) => formatIP({ family: s[0]!.family, n: s[0]!.gateway })),
    ["10.1.2.1", "fd00:1::1"],
  );
  assert.is(c.dataDir, "/var/lib/cni/networks");
  assert.is(c.network, "net1");
});

test("range set order: runtimeConfig.ipRanges, then the legacy subnet, then ranges", () => {
  const c = loadIpamConfig(
    conf(
      {
        subnet: "10.2.0.0/16",
        rangeStart: "10.2.0.10",
        rangeEnd: "10.2.0.20",
        gateway: "10.2.0.254",
        ranges: [[{ subnet: "10.3.0.0/24" }]],
      },
      { runtimeConfig: { ipRanges: [[{ subnet: "10.1.0.0/24" }]] } },
    ),
    "",
  );
  assert.equal(c.rangeSets.map(rangeSetText), ["10.1.0.1-10.1.0.254", "10.2.0.10-10.2.0.20", "10.3.0.1-10.3.0.254"]);
  assert.is(formatIP({ family: 4, n: c.rangeSets[1]![0]!.gateway }), "10.2.0.254");
});

test("requested addresses: CNI_ARGS IP, args.cni.ips, runtimeConfig.ips; prefixes ignored, duplicates collapse", () => {
  const c = loadIpamConfig(
    conf(
      { ranges: [[{ subnet: "10.1.0.0/24" }]] },
      { args: { cni: { ips: ["10.1.0.7/24", "10.1.0.5"] } }, runtimeConfig: { ips: ["10.1.0.9", "10.1.0.5"] } },
    ),
    "IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.1.0.5",
  );
  assert.equal(c.requested.map(formatIP), ["10.1.0.5", "10.1.0.7", "10.1.0.9"]);
});

test("unknown CNI_ARGS need IgnoreUnknown", () => {
  assert.match(failure(conf({ ranges: [[{ subnet: "10.1.0.0/24" }]] }), "FOO=bar").message, "unknown args");
});

test("routes are validated and rendered canonically", () => {
  const c = loadIpamConfig(
    conf({ subnet: "10.1.0.0/24", routes: [{ dst: "0.0.0.0/0" }, { dst: "FD00::/8", gw: "FD00::1", mtu: 1400 }] }),
    "",
  );
  assert.equal(c.routes, [{ dst: "0.0.0.0/0" }, { dst: "fd00::/8", gw: "fd00::1", mtu: 1400 }]);
  assert.match(
    failure(conf({ subnet: "10.1.0.0/24", routes: [{ dst: "nope" }] })).message,
    "ipam.routes.0.dst: invalid CIDR address: nope",
  );
});

const BAD: [string, Record<string, unknown>, string][] = [
  ["missing ipam", { cniVersion: "1.0.0", name: "n" }, "IPAM config missing 'ipam' key"],
  ["no ranges", conf({}), "no IP ranges specified"],
  [
    "invalid CIDR",
    conf({ ranges: [[{ subnet: "10.1.0.0/33" }]] }),
    "invalid range set 0: invalid CIDR address: 10.1.0.0/33",
  ],
  [
    "host bits",
    conf({ ranges: [[{ subnet: "10.1.2.5/24" }]] }),
    "invalid range set 0: Network has host bits set. For a subnet mask of length 24 the network address is 10.1.2.0",
  ],
  [
    "too small",
    conf({ ranges: [[{ subnet: "10.1.2.0/31" }]] }),
    "invalid range set 0: Network 10.1.2.0/31 too small to allocate from",
  ],
  [
    "too small v6",
    conf({ ranges: [[{ subnet: "fd00::/127" }]] }),
    "invalid range set 0: Network fd00::/127 too small to allocate from",
  ],
  [
    "mapped",
    conf({ ranges: [[{ subnet: "::ffff:10.0.0.0/104" }]] }),
    "invalid range set 0: IPNet IP and Mask version mismatch",
  ],
  [
    "start outside",
    conf({ ranges: [[{ subnet: "10.1.2.0/24", rangeStart: "10.1.3.1" }]] }),
    "invalid range set 0: RangeStart 10.1.3.1 not in network 10.1.2.0/24",
  ],
  [
    "end outside",
    conf({ ranges: [[{ subnet: "10.1.2.0/24", rangeEnd: "10.1.3.1" }]] }),
    "invalid range set 0: RangeEnd 10.1.3.1 not in network 10.1.2.0/24",
  ],
  [
    "start after end",
    conf({ ranges: [[{ subnet: "10.1.2.0/24", rangeStart: "10.1.2.50", rangeEnd: "10.1.2.40" }]] }),
    "invalid range set 0: RangeStart 10.1.2.50 not in network 10.1.2.0/24 (it is after RangeEnd 10.1.2.40)",
  ],
  [
    "end before default start",
    conf({ ranges: [[{ subnet: "10.1.2.0/24", rangeEnd: "10.1.2.0" }]] }),
    "invalid range set 0: RangeEnd 10.1.2.0 not in network 10.1.2.0/24 (it is before RangeStart 10.1.2.1)",
  ],
  [
    "gateway outside",
    conf({ ranges: [[{ subnet: "10.1.2.0/24", gateway: "10.9.9.9" }]] }),
    "invalid range set 0: Gateway 10.9.9.9 not in network 10.1.2.0/24",
  ],
  [
    "bad gateway",
    conf({ ranges: [[{ subnet: "10.1.2.0/24", gateway: "10.1.2" }]] }),
    "invalid range set 0: invalid IP address: 10.1.2 (gateway)",
  ],
  ["empty set", conf({ ranges: [[]] }), "invalid range set 0: empty range set"],
  [
    "mixed families",
    conf({ ranges: [[{ subnet: "10.1.2.0/24" }, { subnet: "fd00::/64" }]] }),
    "invalid range set 0: mixed address families",
  ],
  [
    "overlap in a set",
    conf({ ranges: [[{ subnet: "10.1.2.0/24" }, { subnet: "10.1.2.0/25", rangeStart: "10.1.2.100" }]] }),
    "invalid range set 0: subnets 10.1.2.1-10.1.2.254 and 10.1.2.100-10.1.2.126 overlap",
  ],
  [
    "overlapping sets",
    conf({ ranges: [[{ subnet: "10.1.2.0/24" }], [{ subnet: "fd00::/64" }], [{ subnet: "10.1.0.0/16" }]] }),
    "range set 0 overlaps with 2",
  ],
  [
    "two v4 sets before 0.3.0",
    { ...conf({ ranges: [[{ subnet: "10.1.2.0/24" }], [{ subnet: "10.1.3.0/24" }]] }), cniVersion: "0.2.0" },
    "CNI version 0.2.0 does not support more than 1 address per family",
  ],
  [
    "bad requested IP",
    conf({ ranges: [[{ subnet: "10.1.2.0/24" }]] }, { runtimeConfig: { ips: ["10.1.2.300"] } }),
    "runtimeConfig.ips: invalid IP address 10.1.2.300",
  ],
  ["subnet not a string", conf({ ranges: [[{ subnet: 5 }]] }), "ipam.ranges.0.0.subnet"],
];

for (const [name, raw, msg] of BAD) {
  test(`refused: ${name}`, () => {
    const e = failure(raw);
    assert.ok(e.message.includes(msg), `${e.message}\n  should contain\n${msg}`);
  });
}

test("CNI_ARGS IP is validated", () => {
  assert.match(
    failure(conf({ subnet: "10.1.0.0/24" }), "IP=10.1.0.x").message,
    "CNI_ARGS IP: invalid IP address 10.1.0.x",
  );
});

test("two ranges of different families in separate sets are fine before 0.3.0", () => {
  const c = loadIpamConfig(
    { ...conf({ ranges: [[{ subnet: "10.1.2.0/24" }], [{ subnet: "fd00::/64" }]] }), cniVersion: "0.2.0" },
    "",
  );
  assert.is(c.rangeSets.length, 2);
});

test.run();
