import { test } from "uvu";
import * as assert from "uvu/assert";
import { CniError } from "../../lib/cni/errors.ts";
import { toWire, type Result } from "../../lib/cni/result.ts";
import { parseResult } from "../../lib/cni/result-schema.ts";

// Result conversion between the three wire families, per the spec's converters (protocol.md §9.3),
// and prevResult parsing. Every conversion goes wire -> internal (parseResult) -> wire (toWire),
// which is exactly what a plugin does with a prevResult or a delegate's output.

const convert = (raw: unknown, from: string, to: string) => toWire(parseResult(raw, from), to);

function throwsCni(fn: () => unknown, code: number, msg: RegExp) {
  try {
    fn();
  } catch (e) {
    assert.instance(e, CniError);
    assert.is((e as CniError).code, code);
    assert.match((e as CniError).message, msg);
    return;
  }
  assert.unreachable("expected a CniError");
}

const legacy020 = {
  cniVersion: "0.2.0",
  ip4: {
    ip: "10.0.0.5/24",
    gateway: "10.0.0.1",
    routes: [{ dst: "0.0.0.0/0", gw: "10.0.0.1" }, { dst: "192.168.0.0/16" }],
  },
  ip6: { ip: "fd00::5/64", gateway: "fd00::1", routes: [{ dst: "::/0", gw: "fd00::1" }] },
  dns: { nameservers: ["10.0.0.53"], domain: "example.test", search: ["example.test"], options: ["ndots:2"] },
};

const rich040 = {
  cniVersion: "0.4.0",
  interfaces: [
    { name: "cni0", mac: "aa:bb:cc:dd:ee:01" },
    { name: "veth1", mac: "aa:bb:cc:dd:ee:02" },
    { name: "eth0", mac: "aa:bb:cc:dd:ee:03", sandbox: "/var/run/netns/x" },
  ],
  ips: [
    { version: "4", interface: 2, address: "10.0.0.5/24", gateway: "10.0.0.1" },
    { version: "4", interface: 2, address: "10.0.1.5/24", gateway: "10.0.1.1" },
    { version: "6", interface: 2, address: "fd00::5/64", gateway: "fd00::1" },
  ],
  routes: [{ dst: "0.0.0.0/0", gw: "10.0.0.1" }, { dst: "::/0", gw: "fd00::1" }, { dst: "172.16.0.0/12" }],
  dns: { nameservers: ["10.0.0.53"] },
};

const v110 = {
  cniVersion: "1.1.0",
  interfaces: [
    {
      name: "eth0",
      mac: "aa:bb:cc:dd:ee:03",
      mtu: 1400,
      sandbox: "/var/run/netns/x",
      socketPath: "/run/x.sock",
      pciID: "0000:00:01.0",
    },
  ],
  ips: [{ interface: 0, address: "10.0.0.5/24", gateway: "10.0.0.1" }],
  routes: [{ dst: "0.0.0.0/0", gw: "10.0.0.1", mtu: 1400, advmss: 1360, priority: 10, table: 100, scope: 0 }],
};

// 0.1/0.2 -> newer

test("0.2.0 -> 0.4.0: ip4 then ip6 become ips with version, routes move to the top level in order, no interfaces", () => {
  assert.equal(convert(legacy020, "0.2.0", "0.4.0"), {
    cniVersion: "0.4.0",
    ips: [
      { version: "4", address: "10.0.0.5/24", gateway: "10.0.0.1" },
      { version: "6", address: "fd00::5/64", gateway: "fd00::1" },
    ],
    routes: [{ dst: "0.0.0.0/0", gw: "10.0.0.1" }, { dst: "192.168.0.0/16" }, { dst: "::/0", gw: "fd00::1" }],
    dns: legacy020.dns,
  });
});

test("0.1.0 -> 0.3.1 and 0.3.0 convert like 0.2.0 -> 0.4.0, relabelled", () => {
  for (const to of ["0.3.0", "0.3.1"]) {
    const out = convert({ ...legacy020, cniVersion: "0.1.0" }, "0.1.0", to);
    assert.is(out.cniVersion, to);
    assert.equal(out.ips, convert(legacy020, "0.2.0", "0.4.0").ips);
  }
});

test("0.2.0 -> 1.0.0 and 1.1.0: as via 0.4.0, without ips[].version", () => {
  for (const to of ["1.0.0", "1.1.0"]) {
    assert.equal(convert(legacy020, "0.2.0", to), {
      cniVersion: to,
      ips: [
        { address: "10.0.0.5/24", gateway: "10.0.0.1" },
        { address: "fd00::5/64", gateway: "fd00::1" },
      ],
      routes: [{ dst: "0.0.0.0/0", gw: "10.0.0.1" }, { dst: "192.168.0.0/16" }, { dst: "::/0", gw: "fd00::1" }],
      dns: legacy020.dns,
    });
  }
});

test("0.2.0 with only ip6 keeps it as the first ip", () => {
  const out = convert({ cniVersion: "0.2.0", ip6: { ip: "fd00::5/64" } }, "0.2.0", "0.4.0");
  assert.equal(out.ips, [{ version: "6", address: "fd00::5/64" }]);
});

test("0.2.0 -> 0.2.0 and 0.1.0 relabel", () => {
  assert.equal(convert(legacy020, "0.2.0", "0.2.0"), legacy020);
  assert.equal(convert(legacy020, "0.2.0", "0.1.0"), { ...legacy020, cniVersion: "0.1.0" });
});

// 0.3/0.4 -> others

test("0.4.0 -> 0.2.0 is lossy: first v4 and first v6 only, address+gateway, routes by dst family, no interfaces", () => {
  assert.equal(convert(rich040, "0.4.0", "0.2.0"), {
    cniVersion: "0.2.0",
    ip4: {
      ip: "10.0.0.5/24",
      gateway: "10.0.0.1",
      routes: [{ dst: "0.0.0.0/0", gw: "10.0.0.1" }, { dst: "172.16.0.0/12" }],
    },
    ip6: { ip: "fd00::5/64", gateway: "fd00::1", routes: [{ dst: "::/0", gw: "fd00::1" }] },
    dns: { nameservers: ["10.0.0.53"] },
  });
});

test("0.4.0 -> 0.2.0 drops routes of a family that has no IP", () => {
  const only4 = { ...rich040, ips: [rich040.ips[0]] };
  const out = convert(only4, "0.4.0", "0.1.0");
  assert.equal(out.ip4, {
    ip: "10.0.0.5/24",
    gateway: "10.0.0.1",
    routes: [{ dst: "0.0.0.0/0", gw: "10.0.0.1" }, { dst: "172.16.0.0/12" }],
  });
  assert.not.ok("ip6" in out);
});

test("0.4.0 -> 0.2.0 without any IP fails with 'no valid IP addresses'", () => {
  const noIps = { cniVersion: "0.4.0", interfaces: [{ name: "eth0", sandbox: "/x" }], routes: [{ dst: "0.0.0.0/0" }] };
  throwsCni(() => convert(noIps, "0.4.0", "0.2.0"), 999, /cannot convert: no valid IP addresses/);
});

test("0.4.0 -> 0.3.0/0.3.1 relabels", () => {
  for (const to of ["0.3.0", "0.3.1", "0.4.0"]) {
    assert.equal(convert(rich040, "0.4.0", to), { ...rich040, cniVersion: to });
  }
});

test("0.3.1 -> 1.0.0 drops ips[].version and keeps interface indexes", () => {
  const out = convert({ ...rich040, cniVersion: "0.3.1" }, "0.3.1", "1.0.0");
  assert.equal(out, {
    cniVersion: "1.0.0",
    interfaces: rich040.interfaces,
    ips: rich040.ips.map(({ version: _v, ...ip }) => ip),
    routes: rich040.routes,
    dns: rich040.dns,
  });
});

// 1.x -> others

test("1.1.0 -> 0.4.0 adds version by address family, drops mtu/socketPath/pciID, keeps extra route fields", () => {
  assert.equal(convert(v110, "1.1.0", "0.4.0"), {
    cniVersion: "0.4.0",
    interfaces: [{ name: "eth0", mac: "aa:bb:cc:dd:ee:03", sandbox: "/var/run/netns/x" }],
    ips: [{ version: "4", interface: 0, address: "10.0.0.5/24", gateway: "10.0.0.1" }],
    routes: v110.routes,
    dns: {},
  });
});

test("1.1.0 -> 0.2.0 goes via 0.4.0: routes keep only dst and gw", () => {
  assert.equal(convert(v110, "1.1.0", "0.2.0"), {
    cniVersion: "0.2.0",
    ip4: { ip: "10.0.0.5/24", gateway: "10.0.0.1", routes: [{ dst: "0.0.0.0/0", gw: "10.0.0.1" }] },
    dns: {},
  });
});

test("1.0.0 with only an interface cannot become 0.2.0", () => {
  throwsCni(
    () => convert({ cniVersion: "1.0.0", interfaces: [{ name: "eth0" }] }, "1.0.0", "0.2.0"),
    999,
    /no valid IP addresses/,
  );
});

test("1.1.0 <-> 1.0.0 relabel only (same types)", () => {
  assert.equal(convert(v110, "1.1.0", "1.0.0"), { ...v110, cniVersion: "1.0.0" });
  assert.equal(convert({ ...v110, cniVersion: "1.0.0" }, "1.0.0", "1.1.0"), v110);
});

test("1.x -> 0.4.0 -> 1.x round trip keeps the 0.4.0-visible fields", () => {
  const there = convert(v110, "1.1.0", "0.4.0");
  const back = convert(there, "0.4.0", "1.1.0");
  assert.equal(back.ips, v110.ips);
  assert.equal(back.routes, v110.routes);
  assert.equal(back.interfaces, [{ name: "eth0", mac: "aa:bb:cc:dd:ee:03", sandbox: "/var/run/netns/x" }]);
});

// empty fields, as the reference's omitempty encoding prints them

test("empty dns: printed as {} for 0.x, omitted for 1.x; empty lists omitted", () => {
  const r: Result = { cniVersion: "1.0.0", interfaces: [], ips: [{ address: "10.0.0.5/24" }], routes: [], dns: {} };
  assert.equal(toWire(r, "1.0.0"), { cniVersion: "1.0.0", ips: [{ address: "10.0.0.5/24" }] });
  assert.equal(toWire(r, "0.4.0"), { cniVersion: "0.4.0", ips: [{ version: "4", address: "10.0.0.5/24" }], dns: {} });
  assert.equal(toWire(r, "0.2.0"), { cniVersion: "0.2.0", ip4: { ip: "10.0.0.5/24" }, dns: {} });
});

test("the output is labelled with the requested version, not the input's", () => {
  for (const to of ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]) {
    assert.is(convert(rich040, "0.4.0", to).cniVersion, to);
  }
});

// prevResult parsing

test("prevResult without cniVersion is read in the request's version", () => {
  const { cniVersion: _v, ...unlabelled } = legacy020;
  const asLegacy = parseResult(unlabelled, "0.2.0");
  assert.is(asLegacy.cniVersion, "0.2.0");
  assert.equal(asLegacy.ips, [
    { address: "10.0.0.5/24", gateway: "10.0.0.1" },
    { address: "fd00::5/64", gateway: "fd00::1" },
  ]);

  const { cniVersion: _w, ...unlabelled040 } = rich040;
  const asRich = parseResult(unlabelled040, "1.0.0");
  assert.is(asRich.cniVersion, "1.0.0");
  assert.is(asRich.ips?.length, 3);
});

test("prevResult: a labelled result is read in its own family", () => {
  // ip4/ip6 keys only mean something to the legacy family: a 0.2.0-labelled result parses them
  // even when the request is 1.0.0.
  const r = parseResult(legacy020, "1.0.0");
  assert.is(r.ips?.[0]?.address, "10.0.0.5/24");
});

test("prevResult: internal form drops ips[].version (derived from the address on output)", () => {
  const r = parseResult(rich040, "0.4.0");
  for (const ip of r.ips ?? []) assert.not.ok("version" in ip);
});

test("prevResult: null lists are accepted as absent", () => {
  const r = parseResult({ cniVersion: "1.0.0", interfaces: null, ips: null, routes: null, dns: null }, "1.0.0");
  assert.equal(toWire(r, "1.0.0"), { cniVersion: "1.0.0" });
});

test("prevResult: malformed fields are decoding failures (code 6) naming the field", () => {
  throwsCni(() => parseResult({ cniVersion: "1.0.0", ips: "10.0.0.5/24" }, "1.0.0"), 6, /ips/);
  throwsCni(() => parseResult({ cniVersion: "1.0.0", ips: [{ interface: 0 }] }, "1.0.0"), 6, /ips\.0\.address/);
  throwsCni(
    () => parseResult({ cniVersion: "1.0.0", interfaces: [{ name: "eth0", mtu: "big" }] }, "1.0.0"),
    6,
    /interfaces\.0\.mtu/,
  );
  throwsCni(
    () => parseResult({ cniVersion: "0.4.0", ips: [{ version: "5", address: "10.0.0.5/24" }] }, "0.4.0"),
    6,
    /ips\.0\.version/,
  );
  throwsCni(() => parseResult({ cniVersion: "0.2.0", ip4: { gateway: "10.0.0.1" } }, "0.2.0"), 6, /ip4\.ip/);
  throwsCni(() => parseResult("not a result", "1.0.0"), 6, /prevResult/);
});

test.run();
