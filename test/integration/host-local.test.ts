import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Sandbox, withSandbox } from "../helpers/sandbox.ts";
import { IpamNet, OURS, addresses } from "../helpers/host-local.ts";

const withNet = (
  fn: (net: IpamNet, sb: Sandbox) => void | Promise<void>,
  ...args: ConstructorParameters<typeof IpamNet> extends [Sandbox, ...infer R] ? R : never
) => withSandbox("hostlocal", (sb) => fn(new IpamNet(sb, ...args), sb));

test("dual stack ADD: one address per range set with gateways, routes and dns; CHECK; DEL; CHECK fails; DEL again", () =>
  withNet((net, sb) => {
    const resolv = join(sb.tmp, "resolv.conf");
    writeFileSync(resolv, "nameserver 10.77.0.53\nsearch svc.example\noptions ndots:2\n");
    const config = net.config({
      ipam: { resolvConf: resolv, routes: [{ dst: "0.0.0.0/0" }, { dst: "::/0", gw: "fd00:77::1" }] },
    });
    const add = net.run(OURS, "ADD", "c1", config);
    assert.is(add.code, 0, add.stdout);
    assert.equal(add.json, {
      cniVersion: "1.1.0",
      ips: [
        { address: "10.77.0.2/24", gateway: "10.77.0.1" },
        { address: "fd00:77::2/64", gateway: "fd00:77::1" },
      ],
      routes: [{ dst: "0.0.0.0/0" }, { dst: "::/0", gw: "fd00:77::1" }],
      dns: { nameservers: ["10.77.0.53"], search: ["svc.example"], options: ["ndots:2"] },
    });
    assert.equal(net.addressesOf("c1"), ["10.77.0.2", "fd00:77::2"]);
    assert.is(readFileSync(join(net.dir, "last_reserved_ip.0"), "latin1"), "10.77.0.2");
    assert.is(readFileSync(join(net.dir, "last_reserved_ip.1"), "latin1"), "fd00:77::2");

    assert.is(net.run(OURS, "CHECK", "c1", config).code, 0);
    const second = net.run(OURS, "ADD", "c2", config);
    assert.equal(addresses(second), ["10.77.0.3/24", "fd00:77::3/64"]);

    assert.is(net.run(OURS, "DEL", "c1", config).code, 0);
    assert.equal(net.addressesOf("c1"), []);
    assert.equal(net.addressesOf("c2"), ["10.77.0.3", "fd00:77::3"]);
    const check = net.run(OURS, "CHECK", "c1", config);
    assert.is(check.code, 1);
    assert.is(check.json.msg, "host-local: Failed to find address added by container c1");
    assert.is(net.run(OURS, "DEL", "c1", config).code, 0, "DEL of what is gone succeeds");
    assert.is(net.run(OURS, "DEL", "c1", config, { CNI_NETNS: "" }).code, 0, "DEL without a netns succeeds");
  }));

test("result shapes follow the request version (0.2.0 ip4/ip6, 0.4.0 with version)", () =>
  withNet((net) => {
    const legacy = net.run(OURS, "ADD", "v2", net.config({ cniVersion: "0.2.0" }));
    assert.equal(legacy.json, {
      cniVersion: "0.2.0",
      ip4: { ip: "10.77.0.2/24", gateway: "10.77.0.1" },
      ip6: { ip: "fd00:77::2/64", gateway: "fd00:77::1" },
      dns: {},
    });
    const v04 = net.run(OURS, "ADD", "v4", net.config({ cniVersion: "0.4.0" }));
    assert.equal(v04.json.ips, [
      { version: "4", address: "10.77.0.3/24", gateway: "10.77.0.1" },
      { version: "6", address: "fd00:77::3/64", gateway: "fd00:77::1" },
    ]);
  }));

test("the same container and interface asking again is refused; another interface gets its own address", () =>
  withNet((net) => {
    net.run(OURS, "ADD", "dup");
    const again = net.run(OURS, "ADD", "dup");
    assert.is(again.code, 1);
    assert.is(
      again.json.msg,
      "failed to allocate for range 0: 10.77.0.2 has been allocated to dup, duplicate allocation is not allowed",
    );
    assert.equal(net.addressesOf("dup"), ["10.77.0.2", "fd00:77::2"], "the refused ADD left the first one intact");
    const eth1 = net.run(OURS, "ADD", "dup", net.config(), { CNI_IFNAME: "eth1" });
    assert.equal(addresses(eth1), ["10.77.0.3/24", "fd00:77::3/64"]);
  }));

test("requested addresses through CNI_ARGS IP, args.cni.ips and runtimeConfig.ips", () =>
  withNet((net) => {
    const viaEnv = net.run(OURS, "ADD", "r1", net.config(), {
      CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAME=p;IP=10.77.0.50",
    });
    assert.equal(addresses(viaEnv), ["10.77.0.50/24", "fd00:77::2/64"]);
    const viaArgs = net.run(
      OURS,
      "ADD",
      "r2",
      net.config({ extra: { args: { cni: { ips: ["fd00:77::99/64", "10.77.0.60"] } } } }),
    );
    assert.equal(addresses(viaArgs), ["10.77.0.60/24", "fd00:77::99/64"]);
    const viaCap = net.run(OURS, "ADD", "r3", net.config({ extra: { runtimeConfig: { ips: ["10.77.0.70"] } } }));
    assert.equal(
      addresses(viaCap),
      ["10.77.0.70/24", "fd00:77::9a/64"],
      "dynamic v6 continues after the requested fd00:77::99",
    );

    const before = net.reservations();
    const taken = net.run(OURS, "ADD", "r4", net.config(), { CNI_ARGS: "IP=10.77.0.50" });
    assert.is(
      taken.json.msg,
      "failed to allocate for range 0: requested IP address 10.77.0.50 is not available in range set 10.77.0.1-10.77.0.254",
    );
    const gateway = net.run(OURS, "ADD", "r4", net.config(), { CNI_ARGS: "IP=10.77.0.1" });
    assert.is(gateway.json.msg, "failed to allocate for range 0: requested ip 10.77.0.1 is subnet's gateway");
    const outside = net.run(OURS, "ADD", "r4", net.config(), { CNI_ARGS: "IP=10.99.0.5" });
    assert.is(outside.json.msg, "failed to allocate all requested IPs: 10.99.0.5");
    const v6Taken = net.run(OURS, "ADD", "r4", net.config({ extra: { runtimeConfig: { ips: ["fd00:77::99"] } } }));
    assert.match(v6Taken.json.msg, "failed to allocate for range 1: requested IP address fd00:77::99 is not available");
    assert.equal(
      net.reservations(),
      before,
      "failed ADDs left nothing behind (the v4 address of the last one was rolled back)",
    );
  }));

test("exhaustion: a clear error naming the range set, and nothing leaked from the other family", () =>
  withNet(
    (net) => {
      assert.equal(addresses(net.run(OURS, "ADD", "e1")), ["10.78.0.2/30", "fd00:78::2/64"]);
      const full = net.run(OURS, "ADD", "e2");
      assert.is(full.code, 1);
      assert.is(
        full.json.msg,
        "failed to allocate for range 0: no IP addresses available in range set: 10.78.0.1-10.78.0.2",
      );
      assert.equal([...net.reservations().keys()], ["10.78.0.2", "fd00:78::2"]);
      net.run(OURS, "DEL", "e1");
      assert.equal(
        addresses(net.run(OURS, "ADD", "e2")),
        ["10.78.0.2/30", "fd00:78::3/64"],
        "freed addresses are reused",
      );
    },
    "small",
    { ranges: [[{ subnet: "10.78.0.0/30" }], [{ subnet: "fd00:78::/64" }]] },
  ));

test("v6 exhaustion after a v4 success rolls the v4 address back", () =>
  withNet(
    (net) => {
      net.run(OURS, "ADD", "x1");
      const r = net.run(OURS, "ADD", "x2");
      assert.is(
        r.json.msg,
        "failed to allocate for range 1: no IP addresses available in range set: fd00:79::5-fd00:79::5",
      );
      assert.equal(net.addressesOf("x2"), []);
    },
    "v6small",
    {
      ranges: [
        [{ subnet: "10.79.0.0/24" }],
        [{ subnet: "fd00:79::/64", rangeStart: "fd00:79::5", rangeEnd: "fd00:79::5" }],
      ],
    },
  ));

const BAD_INPUT: [string, Record<string, unknown>, string][] = [
  ["invalid CIDR", { ranges: [[{ subnet: "10.80.0.0/33" }]] }, "invalid CIDR address: 10.80.0.0/33"],
  [
    "gateway outside its subnet",
    { ranges: [[{ subnet: "10.80.0.0/24", gateway: "10.81.0.1" }]] },
    "Gateway 10.81.0.1 not in network 10.80.0.0/24",
  ],
  [
    "rangeStart after rangeEnd",
    { ranges: [[{ subnet: "10.80.0.0/24", rangeStart: "10.80.0.9", rangeEnd: "10.80.0.5" }]] },
    "RangeStart 10.80.0.9 not in network 10.80.0.0/24 (it is after RangeEnd 10.80.0.5)",
  ],
  [
    "rangeStart outside the subnet",
    { ranges: [[{ subnet: "10.80.0.0/24", rangeStart: "10.80.1.9" }]] },
    "RangeStart 10.80.1.9 not in network 10.80.0.0/24",
  ],
  [
    "overlapping ranges in a set",
    { ranges: [[{ subnet: "10.80.0.0/24" }, { subnet: "10.80.0.128/25" }]] },
    "subnets 10.80.0.1-10.80.0.254 and 10.80.0.129-10.80.0.254 overlap",
  ],
  [
    "overlapping range sets",
    { ranges: [[{ subnet: "10.80.0.0/24" }], [{ subnet: "10.80.0.0/16" }]] },
    "range set 0 overlaps with 1",
  ],
  ["no ranges", { ranges: [] }, "no IP ranges specified"],
];

for (const [name, ipam, msg] of BAD_INPUT) {
  test(`bad input refused, nothing written: ${name}`, () =>
    withNet((net) => {
      const r = net.run(OURS, "ADD", "bad", net.config({ ipam: { ranges: undefined, ...ipam } }));
      assert.is(r.code, 1);
      assert.ok(r.json.msg.includes(msg), r.json.msg);
      assert.is(r.json.code, 7);
      assert.not.ok(existsSync(net.dataDir), "dataDir was not even created");
    }));
}

test("a network name that would escape dataDir is refused", () =>
  withNet((net) => {
    for (const name of ["../escape", "a/b", ".."]) {
      const r = net.run(OURS, "ADD", "c", { ...net.config(), name });
      assert.is(r.code, 1, name);
      assert.not.ok(existsSync(net.dataDir));
    }
  }));

test("the store follows no symlink out of dataDir: a symlinked network directory is refused", () =>
  withNet((net, sb) => {
    const outside = join(sb.tmp, "outside");
    mkdirSync(outside);
    mkdirSync(net.dataDir);
    symlinkSync(outside, net.dir);
    const r = net.run(OURS, "ADD", "c");
    assert.is(r.code, 1);
    assert.match(r.json.msg, "is not a directory");
    assert.equal(readdirSync(outside), []);
    assert.is(net.run(OURS, "DEL", "c").code, 1, "DEL refuses too rather than read through it");
  }));

test("GC releases every reservation not in cni.dev/valid-attachments (then cni.dev/attachments)", () =>
  withNet((net) => {
    for (const id of ["live", "leak1", "leak2"]) net.run(OURS, "ADD", id);
    net.run(OURS, "ADD", "live", net.config(), { CNI_IFNAME: "net1" });
    const gc = net.run(
      OURS,
      "GC",
      "",
      net.config({
        extra: {
          "cni.dev/valid-attachments": [
            { containerID: "live", ifname: "eth0" },
            { containerID: "live", ifname: "net1" },
          ],
        },
      }),
    );
    assert.is(gc.code, 0, gc.stdout);
    assert.equal(net.addressesOf("leak1"), []);
    assert.equal(net.addressesOf("leak2"), []);
    assert.equal(net.addressesOf("live").length, 2);
    assert.equal(net.addressesOf("live", "net1").length, 2);
    net.run(
      OURS,
      "GC",
      "",
      net.config({ extra: { "cni.dev/attachments": [{ containerID: "live", ifname: "eth0" }] } }),
    );
    assert.equal(net.addressesOf("live", "net1"), []);
    assert.equal(net.addressesOf("live").length, 2);
    assert.is(net.run(OURS, "CHECK", "live").code, 0);
    net.run(OURS, "GC", "", net.config({ extra: { "cni.dev/valid-attachments": [] } }));
    assert.equal(net.reservations().size, 0);
  }));

test("STATUS: success on a usable dataDir, code 50 when it is unusable", () =>
  withNet((net, sb) => {
    assert.is(net.run(OURS, "STATUS", "").code, 0, "dataDir not created yet but creatable");
    net.run(OURS, "ADD", "s1");
    assert.is(net.run(OURS, "STATUS", "").code, 0);
    const file = join(sb.tmp, "a-file");
    writeFileSync(file, "");
    const r = net.run(OURS, "STATUS", "", net.config({ ipam: { dataDir: file } }));
    assert.is(r.code, 1);
    assert.is(r.json.code, 50);
    assert.match(r.json.msg, file);
  }));

test.run();
