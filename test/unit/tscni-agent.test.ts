import { test } from "uvu";
import * as assert from "uvu/assert";
import { parseFlags, renewAfter } from "../../plugins/tscni-agent/flags.ts";
import { leaseValue, peerOf } from "../../plugins/tscni-agent/lease.ts";
import {
  firstHost,
  fits,
  freeSubnets,
  parseNetworkConfig,
  parseSubnetKey,
  subnetOfEnv,
} from "../../plugins/tscni-agent/network.ts";

const VX = { Type: "vxlan" };

test("flannel's defaults: SubnetLen 24 under a /16, the first subnet never handed out, port 8472", () => {
  const n = parseNetworkConfig(JSON.stringify({ Network: "10.244.0.0/16", Backend: VX }));
  assert.is(n.subnetLen, 24);
  assert.is(n.vni, 1);
  assert.is(n.port, 8472);
  const free = freeSubnets(n, new Set(["10.244.1.0-24"]), 2);
  assert.equal(free, [
    { addr: "10.244.2.0", len: 24 },
    { addr: "10.244.3.0", len: 24 },
  ]);
  assert.not.ok(fits(n, { addr: "10.244.0.0", len: 24 }));
  assert.ok(fits(n, { addr: "10.244.255.0", len: 24 }));
});

test("a small Network gets SubnetLen prefix+2; SubnetMin/Max bound the range", () => {
  const n = parseNetworkConfig(JSON.stringify({ Network: "10.1.0.0/24", Backend: VX }));
  assert.is(n.subnetLen, 26);
  const m = parseNetworkConfig(
    JSON.stringify({ Network: "10.2.0.0/16", SubnetMin: "10.2.10.0", SubnetMax: "10.2.11.0", Backend: VX }),
  );
  assert.equal(
    freeSubnets(m, new Set()).map((s) => s.addr),
    ["10.2.10.0", "10.2.11.0"],
  );
});

test("bad configs say what is wrong", () => {
  const err = (c: unknown) => {
    try {
      parseNetworkConfig(typeof c === "string" ? c : JSON.stringify(c));
    } catch (e) {
      return (e as Error).message;
    }
    return "accepted";
  };
  assert.match(err("{"), /not JSON/);
  assert.match(err({ Network: "10.0.0.0/16" }), /Backend: .*vxlan/);
  assert.match(err({ Network: "10.0.0.0/16", Backend: { Type: "udp" } }), /Backend\.Type/);
  assert.match(
    err({ Network: "10.0.0.0/16", Backend: { Type: "vxlan", DirectRouting: "yes" } }),
    /Backend\.DirectRouting/,
  );
  const gw = parseNetworkConfig(JSON.stringify({ Network: "10.0.0.0/16", Backend: { Type: "host-gw" } }));
  assert.is(gw.backend, "host-gw");
  assert.is(gw.directRouting, false);
  assert.ok(
    parseNetworkConfig(JSON.stringify({ Network: "10.0.0.0/16", Backend: { ...VX, DirectRouting: true } }))
      .directRouting,
  );
  assert.match(err({ Network: "fd00::/64", Backend: VX }), /not an IPv4 CIDR/);
  assert.match(err({ Network: "10.0.0.0/29", Backend: VX }), /too small/);
  assert.match(err({ Network: "10.0.0.0/16", SubnetMin: "10.0.0.7", Backend: VX }), /not a \/24 subnet/);
});

test("keys and subnet.env in flannel's forms", () => {
  assert.equal(parseSubnetKey("10.244.3.0-24"), { addr: "10.244.3.0", len: 24 });
  assert.is(parseSubnetKey("10.244.3.0-24&fd00::-64"), undefined);
  assert.is(firstHost({ addr: "10.244.3.0", len: 24 }), "10.244.3.1/24");
  assert.equal(subnetOfEnv("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\n"), {
    addr: "10.244.3.0",
    len: 24,
  });
});

test("a lease value round-trips and foreign or broken values are not peers", () => {
  const v = leaseValue("192.168.1.5", { type: "vxlan", vni: 1, mac: "C6:D2:32:6F:8F:44" });
  assert.equal(JSON.parse(v), {
    PublicIP: "192.168.1.5",
    PublicIPv6: null,
    BackendType: "vxlan",
    BackendData: { VNI: 1, VtepMAC: "C6:D2:32:6F:8F:44" },
  });
  const key = "/p/subnets/10.5.1.0-24";
  assert.equal(peerOf("/p", { key, value: v }), {
    subnet: { addr: "10.5.1.0", len: 24 },
    publicIp: "192.168.1.5",
    vtepMac: "c6:d2:32:6f:8f:44",
  });
  assert.is(peerOf("/p", { key, value: "{" }), undefined);
  const hostGw = leaseValue("1.2.3.4", { type: "host-gw" });
  assert.is(hostGw, '{"PublicIP":"1.2.3.4","PublicIPv6":null,"BackendType":"host-gw"}', "flannel omits BackendData");
  assert.is(peerOf("/p", { key, value: hostGw }), undefined, "a vxlan agent ignores host-gw leases");
  assert.is(peerOf("/p", { key, value: v }, "host-gw"), undefined, "and the other way round");
  assert.equal(peerOf("/p", { key, value: hostGw }, "host-gw"), {
    subnet: { addr: "10.5.1.0", len: 24 },
    publicIp: "1.2.3.4",
  });
  assert.is(peerOf("/p", { key, value: "null" }), undefined);
  assert.is(
    peerOf("/p", {
      key,
      value: '{"PublicIP":"x y","BackendType":"vxlan","BackendData":{"VtepMAC":"aa:bb:cc:dd:ee:ff"}}',
    }),
    undefined,
  );
});

test("flags: flannel's names, both forms; renewal at margin before expiry, TTL/2 when the margin is not below it", () => {
  const f = parseFlags(["--etcd-endpoints=http://a:2379,http://b:2379", "--iface", "eth1", "--subnet-lease-ttl=30"]);
  assert.equal(f.etcdEndpoints, ["http://a:2379", "http://b:2379"]);
  assert.is(f.iface, "eth1");
  assert.is(f.leaseTtl, 30);
  assert.is(renewAfter(86400, 60), 86400 - 3600);
  assert.is(renewAfter(30, 60), 15);
  assert.throws(() => parseFlags(["--etcd-endpoints=ftp://x"]), /not an http\(s\) URL/);
  assert.throws(() => parseFlags(["--public-ip=1.2.3"]), /not an IPv4 address/);
  assert.throws(() => parseFlags(["--iface"]), /needs a value/);
  assert.is(parseFlags(["--healthz-port=8081"]).healthzPort, 8081);
  assert.throws(() => parseFlags(["--healthz-port=70000"]), /not a port number/);
});

test.run();
