import { test } from "uvu";
import * as assert from "uvu/assert";
import { formatIP } from "../../lib/ip/address.ts";
import { formatCidr, loadStaticConfig } from "../../plugins/static/config.ts";

// static IPAM's sources and their precedence, as the reference merges them: the config's
// addresses, CNI_ARGS IP appended (GATEWAY attached to those only), args.cni.ips replacing all,
// runtimeConfig.ips replacing again.

const conf = (ipam: Record<string, unknown>, extra: Record<string, unknown> = {}, cniVersion = "1.0.0") => ({
  cniVersion,
  name: "n",
  type: "bridge",
  ...extra,
  ipam: { type: "static", ...ipam },
});

const addrs = (c: ReturnType<typeof loadStaticConfig>) =>
  c.addresses.map((a) => (a.gateway ? `${formatCidr(a.cidr)} via ${formatIP(a.gateway)}` : formatCidr(a.cidr)));

const refused = (raw: Record<string, unknown>, args: string, msg: string) =>
  assert.throws(
    () => loadStaticConfig(raw, args),
    (e: Error & { code?: number }) => e.message === msg && e.code === 7,
    msg,
  );

test("config addresses with their gateways, host bits kept, IPv6 canonical", () => {
  const c = loadStaticConfig(
    conf({
      addresses: [
        { address: "10.0.0.5/24", gateway: "10.0.0.1" },
        { address: "FD00:0:0::5/64", gateway: "fd00:0::1" },
        { address: "10.1.0.5/16", gateway: "" },
      ],
    }),
    "",
  );
  assert.equal(addrs(c), ["10.0.0.5/24 via 10.0.0.1", "fd00::5/64 via fd00::1", "10.1.0.5/16"]);
});

test("an IPv4-mapped address folds to IPv4 with the low 32 bits of its mask, as Go prints it", () => {
  const c = loadStaticConfig(
    conf({
      addresses: [{ address: "::ffff:10.0.0.5/120", gateway: "::ffff:10.0.0.1" }, { address: "::ffff:10.0.0.6/64" }],
    }),
    "",
  );
  assert.equal(addrs(c), ["10.0.0.5/24 via 10.0.0.1", "10.0.0.6/0"]);
});

test("CNI_ARGS IP is appended (trimmed); GATEWAY attaches to the CNI_ARGS addresses whose subnet holds it", () => {
  const c = loadStaticConfig(
    conf({ addresses: [{ address: "10.0.0.5/24" }] }),
    "IP= 10.0.0.7/24 ,10.1.0.7/16,fd00::7/64;GATEWAY=10.1.0.1, 10.0.0.1,10.0.0.254",
  );
  // The config's own 10.0.0.5/24 gets none: the reference attaches before parsing the config's.
  assert.equal(addrs(c), ["10.0.0.5/24", "10.0.0.7/24 via 10.0.0.254", "10.1.0.7/16 via 10.1.0.1", "fd00::7/64"]);
  assert.equal(addrs(loadStaticConfig(conf({}), "IP=;GATEWAY=")), []);
  assert.equal(addrs(loadStaticConfig(conf({}), "IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.0.0.7/24")), ["10.0.0.7/24"]);
});

test("args.cni.ips replaces everything, runtimeConfig.ips replaces that; empty lists replace nothing", () => {
  const ipam = { addresses: [{ address: "10.0.0.5/24", gateway: "10.0.0.1" }] };
  const args = { args: { cni: { ips: ["10.9.0.1/24"] } } };
  assert.equal(addrs(loadStaticConfig(conf(ipam, args), "IP=10.0.0.7/24;GATEWAY=10.0.0.1")), ["10.9.0.1/24"]);
  assert.equal(addrs(loadStaticConfig(conf(ipam, { ...args, runtimeConfig: { ips: ["10.8.0.1/24"] } }), "")), [
    "10.8.0.1/24",
  ]);
  assert.equal(addrs(loadStaticConfig(conf(ipam, { args: { cni: { ips: [] } }, runtimeConfig: { ips: [] } }), "")), [
    "10.0.0.5/24 via 10.0.0.1",
  ]);
  // A bad config address that was replaced is never looked at.
  assert.equal(
    addrs(loadStaticConfig(conf({ addresses: [{ address: "bad" }] }, { runtimeConfig: { ips: ["10.8.0.1/24"] } }), "")),
    ["10.8.0.1/24"],
  );
});

test("the reference's messages for each source", () => {
  refused(
    conf({ addresses: [{ address: "10.0.0.5" }] }),
    "",
    "the 'address' field is expected to be in CIDR notation, got: '10.0.0.5'",
  );
  refused(conf({ addresses: [{}] }), "", "the 'address' field is expected to be in CIDR notation, got: ''");
  refused(
    conf({ addresses: [{ address: "10.0.0.5/33" }] }),
    "",
    "the 'address' field is expected to be in CIDR notation, got: '10.0.0.5/33'",
  );
  refused(conf({ addresses: [{ address: "10.0.0.5/24", gateway: "bad" }] }), "", "invalid IP address: bad");
  refused(conf({}), "IP=10.0.0.7", "the 'ip' field is expected to be in CIDR notation, got: '10.0.0.7'");
  refused(conf({}), "IP=10.0.0.7/24,", "the 'ip' field is expected to be in CIDR notation, got: ''");
  refused(conf({}), "IP=10.0.0.7/24;GATEWAY=10.0.0.1,bad ", "invalid gateway address: bad ");
  refused(
    conf({}, { args: { cni: { ips: ["10.9.0.1"] } } }),
    "",
    "an entry in the 'ips' field is NOT in CIDR notation, got: '10.9.0.1'",
  );
  refused(
    conf({}, { runtimeConfig: { ips: ["bad"] } }),
    "",
    "an entry in the 'ips' field is NOT in CIDR notation, got: 'bad'",
  );
  refused({ cniVersion: "1.0.0", name: "n" }, "", "IPAM config missing 'ipam' key");
  refused({ cniVersion: "1.0.0", name: "n", ipam: null }, "", "IPAM config missing 'ipam' key");
  refused(conf({ routes: [{ dst: "bad" }] }), "", "ipam.routes.0.dst: invalid CIDR address: bad");
  // JSON decoding (gateways, routes) comes before CNI_ARGS, as in the reference.
  refused(conf({ addresses: [{ address: "10.0.0.5/24", gateway: "x" }] }), "IP=bad", "invalid IP address: x");
});

test("before 0.3.0 at most one address per family, whatever the source", () => {
  const two = { addresses: [{ address: "10.0.0.5/24" }, { address: "10.0.0.6/24" }] };
  for (const v of ["0.1.0", "0.2.0"]) {
    refused(conf(two, {}, v), "", `CNI version ${v} does not support more than 1 address per family`);
    refused(
      conf({}, {}, v),
      "IP=10.0.0.7/24,10.0.0.8/24",
      `CNI version ${v} does not support more than 1 address per family`,
    );
    assert.equal(addrs(loadStaticConfig(conf(two, { runtimeConfig: { ips: ["10.8.0.1/24", "fd00::1/64"] } }, v), "")), [
      "10.8.0.1/24",
      "fd00::1/64",
    ]);
  }
  assert.is(loadStaticConfig(conf(two, {}, "0.3.0"), "").addresses.length, 2);
});

test("routes are canonical (host bits kept), dns is copied", () => {
  const c = loadStaticConfig(
    conf({
      routes: [{ dst: "10.1.2.3/8" }, { dst: "::/0", gw: "FD00::1" }],
      dns: { nameservers: ["1.1.1.1"], search: ["a"] },
    }),
    "",
  );
  assert.equal(c.routes, [{ dst: "10.1.2.3/8" }, { dst: "::/0", gw: "fd00::1" }]);
  assert.equal(c.dns, { nameservers: ["1.1.1.1"], search: ["a"] });
});

test.run();
