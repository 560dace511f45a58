import { test } from "uvu";
import * as assert from "uvu/assert";
import { CniError } from "../../lib/cni/errors.ts";
import { addressOrCidr, canonicalIp, formatIP, formatNetwork, parseCIDR } from "../../lib/ip/address.ts";
import { chainNameFor, dnatComment, parseDnatComment } from "../../plugins/portmap/iptables.ts";
import { defaultBackend } from "../../lib/netfilter/backend.ts";
import {
  containerAddresses,
  mappingsForFamily,
  mappingsOf,
  parsePortmapConfig,
  selectBackend,
  validAttachments,
} from "../../plugins/portmap/config.ts";

const base = { cniVersion: "1.0.0", name: "mynet", type: "portmap" };
const withMappings = (portMappings: unknown, extra: Record<string, unknown> = {}) => ({
  ...base,
  ...extra,
  runtimeConfig: { portMappings },
});

function parseError(raw: Record<string, unknown>): CniError {
  try {
    parsePortmapConfig(raw);
  } catch (e) {
    assert.instance(e, CniError);
    return e as CniError;
  }
  throw new Error("expected a config error");
}

test("defaults: no mappings, snat and mark unset (true and 13 at use)", () => {
  const c = parsePortmapConfig({ ...base });
  assert.equal(mappingsOf(c), []);
  assert.is(c.snat, undefined);
  assert.is(c.markMasqBit, undefined);
});

test("mappings: protocol lower-cased, missing protocol is tcp, hostIP canonical", () => {
  const c = parsePortmapConfig(
    withMappings([
      { hostPort: 8080, containerPort: 80, protocol: "TCP" },
      { hostPort: 53, containerPort: 53 },
      { hostPort: 9000, containerPort: 90, protocol: "udp", hostIP: "FD00:0::0001" },
      { hostPort: 9001, containerPort: 91, protocol: "sctp", hostIP: "" },
    ]),
  );
  assert.equal(
    mappingsOf(c).map((m) => [m.protocol, m.hostIP]),
    [
      ["tcp", undefined],
      ["tcp", undefined],
      ["udp", "fd00::1"],
      ["sctp", undefined],
    ],
  );
});

test("capitalised keys as containerd's CRI sends them are accepted (Go json is case-insensitive)", () => {
  const c = parsePortmapConfig({
    ...base,
    RuntimeConfig: { PortMappings: [{ HostPort: 8080, ContainerPort: 80, Protocol: "tcp", HostIP: "10.0.0.1" }] },
    SNAT: false,
  });
  assert.equal(mappingsOf(c), [{ hostPort: 8080, containerPort: 80, protocol: "tcp", hostIP: "10.0.0.1" }]);
  assert.is(c.snat, false);
});

test("bad input names the field", () => {
  const cases: [unknown, RegExp][] = [
    [[{ hostPort: 0, containerPort: 80, protocol: "tcp" }], /portMappings\.0\.hostPort: must be between 1 and 65535/],
    [
      [{ hostPort: 80, containerPort: 65536, protocol: "tcp" }],
      /portMappings\.0\.containerPort: must be between 1 and 65535/,
    ],
    [[{ hostPort: 80.5, containerPort: 80 }], /portMappings\.0\.hostPort: must be an integer/],
    [[{ hostPort: "80", containerPort: 80 }], /portMappings\.0\.hostPort: must be a number/],
    [
      [{ hostPort: 80, containerPort: 80, protocol: "icmp" }],
      /portMappings\.0\.protocol: must be one of tcp, udp, sctp/,
    ],
    [[{ hostPort: 80, containerPort: 80, hostIP: "10.0.0.300" }], /portMappings\.0\.hostIP: invalid IP address/],
    [
      [
        { hostPort: 80, containerPort: 80 },
        { hostPort: 80, containerPort: 81, protocol: "tcp" },
      ],
      /portMappings\.1: duplicate of portMappings\.0/,
    ],
  ];
  for (const [pm, re] of cases) {
    const e = parseError(withMappings(pm));
    assert.is(e.code, 7);
    assert.match(e.message, re);
  }
  // Same port on another protocol or another hostIP is not a duplicate.
  parsePortmapConfig(
    withMappings([
      { hostPort: 80, containerPort: 80 },
      { hostPort: 80, containerPort: 80, protocol: "udp" },
      { hostPort: 80, containerPort: 81, hostIP: "10.0.0.1" },
    ]),
  );
});

test("markMasqBit and externalSetMarkChain", () => {
  assert.match(parseError({ ...base, markMasqBit: 32 }).message, /markMasqBit: must be between 0 and 31/);
  assert.match(
    parseError({ ...base, markMasqBit: 1, externalSetMarkChain: "KUBE-MARK-MASQ" }).message,
    /externalSetMarkChain: cannot specify both/,
  );
  assert.match(parseError({ ...base, externalSetMarkChain: "bad chain" }).message, /externalSetMarkChain/);
  parsePortmapConfig({ ...base, markMasqBit: null, externalSetMarkChain: "KUBE-MARK-MASQ" });
});

test("backend options are classified as the reference does", () => {
  assert.match(
    parseError({ ...base, backend: "iptables", conditionsV4: ["aaa", "bbbb"], conditionsV6: ["ccc"] }).message,
    /iptables backend was requested but configuration contains nftables-specific options \[conditionsV4 conditionsV6\]/,
  );
  assert.match(
    parseError({ ...base, backend: "nftables", externalSetMarkChain: "KUBE-MARK-MASQ", conditionsV4: ["-a", "b"] })
      .message,
    /\[externalSetMarkChain conditionsV4\]/,
  );
  assert.match(parseError({ ...base, backend: "pf" }).message, /backend/);
  assert.match(parseError({ ...base, conditionsV4: ["-m", "x\n-A INPUT"] }).message, /conditionsV4\.1/);
});

/** selectBackend with PATH set to `path`, reporting a conflict instead of throwing. */
function backendWithPath(c: ReturnType<typeof parsePortmapConfig>, path: string) {
  const saved = process.env.PATH;
  process.env.PATH = path;
  try {
    return selectBackend(c, defaultBackend);
  } catch (e) {
    return (e as Error).message.startsWith("iptables backend was selected") ? "iptables-conflict" : "other";
  } finally {
    process.env.PATH = saved;
  }
}

test("auto backend: iptables when iptables-restore is on PATH, else nftables when only nft is", () => {
  const c = parsePortmapConfig({ ...base });
  assert.is(backendWithPath(c, process.env.PATH!), "iptables");
  // With neither tool the reference falls back to iptables; nft-only options then conflict.
  assert.is(backendWithPath(c, "/nonexistent"), "iptables");
  assert.is(
    backendWithPath(parsePortmapConfig({ ...base, conditionsV4: ["ip saddr 1.2.3.4"] }), "/nonexistent"),
    "iptables-conflict",
  );
  assert.is(
    selectBackend(parsePortmapConfig({ ...base, backend: "nftables" }), () => "iptables"),
    "nftables",
  );
});

test("container addresses: first of each family, skipping host-side interfaces", () => {
  const prev = {
    cniVersion: "1.0.0",
    interfaces: [{ name: "host" }, { name: "container", sandbox: "netns" }],
    ips: [
      { address: "10.0.0.1/24", interface: 0 },
      { address: "2001:db8:1::2/64", interface: 1 },
      { address: "10.0.0.2/24", interface: 1 },
      { address: "10.0.0.3/24", interface: 1 },
    ],
  };
  const a = containerAddresses(prev, "container");
  assert.is(`${formatIP(a.v4!.ip)}/${a.v4!.prefix}`, "10.0.0.2/24");
  assert.is(`${formatIP(a.v6!.ip)}/${a.v6!.prefix}`, "2001:db8:1::2/64");
  // Without an interface index the address is taken.
  assert.is(
    formatIP(containerAddresses({ cniVersion: "1.0.0", ips: [{ address: "10.0.0.9/24" }] }, "eth0").v4!.ip),
    "10.0.0.9",
  );
});

test("hostIP of the other family excludes a mapping; unspecified means any address", () => {
  const c = parsePortmapConfig(
    withMappings([
      { hostPort: 1, containerPort: 1, hostIP: "192.168.0.2" },
      { hostPort: 2, containerPort: 2, hostIP: "0.0.0.0" },
      { hostPort: 3, containerPort: 3, hostIP: "2001:db8:a::1" },
      { hostPort: 4, containerPort: 4, hostIP: "::" },
      { hostPort: 5, containerPort: 5 },
    ]),
  );
  assert.equal(
    mappingsForFamily(mappingsOf(c), false).map((m) => [m.hostPort, m.matchDst]),
    [
      [1, "192.168.0.2"],
      [2, undefined],
      [5, undefined],
    ],
  );
  assert.equal(
    mappingsForFamily(mappingsOf(c), true).map((m) => [m.hostPort, m.matchDst]),
    [
      [3, "2001:db8:a::1"],
      [4, undefined],
      [5, undefined],
    ],
  );
});

test("chain names and comments match the reference", () => {
  assert.is(chainNameFor("DN-", "mynet", "abc123"), "CNI-DN-70a29d9dc18bc4d652ea5");
  assert.is(chainNameFor("SN-", "mynet", "abc123"), "CNI-SN-70a29d9dc18bc4d652ea5");
  assert.is(dnatComment("mynet", "abc123"), 'dnat name: "mynet" id: "abc123"');
  assert.equal(parseDnatComment('dnat name: "mynet" id: "abc123"'), { network: "mynet", containerId: "abc123" });
  assert.is(dnatComment("n", "x".repeat(300)).length, 256);
});

test("GC attachments: valid-attachments, falling back to libcni's older key", () => {
  assert.equal([...validAttachments({ "cni.dev/valid-attachments": [{ containerID: "a", ifname: "eth0" }] })], ["a"]);
  assert.equal([...validAttachments({ "cni.dev/attachments": [{ containerID: "b", ifname: "eth0" }] })], ["b"]);
  assert.equal([...validAttachments({})], []);
});

test("addresses: canonical text and networks as iptables prints them", () => {
  assert.is(canonicalIp("FD00:0022:0000:0000:0000:0000:0000:0002"), "fd00:22::2");
  assert.is(canonicalIp("::ffff:10.1.2.3"), "10.1.2.3");
  assert.is(canonicalIp("10.0.0.256"), undefined);
  assert.is(formatNetwork(parseCIDR("10.22.0.2/24")!), "10.22.0.0/24");
  assert.is(formatNetwork(parseCIDR("fd00:22::2/64")!), "fd00:22::/64");
  assert.is(formatNetwork(parseCIDR("10.22.1.130/25")!), "10.22.1.128/25");
  assert.is(formatNetwork(addressOrCidr("10.22.0.2")!), "10.22.0.2/32");
  assert.is(formatNetwork(addressOrCidr("fd00::1")!), "fd00::1/128");
});

test.run();
