import { test } from "uvu";
import * as assert from "uvu/assert";
import { CniError } from "../../lib/cni/errors.ts";
import { parseWith } from "../../lib/cni/config.ts";
import {
  buildBackup,
  checkAllowlist,
  linkCommands,
  linkMismatches,
  mergeBackups,
  renderBackup,
  resolveSettings,
  sameSysctlValue,
  sysctlPath,
  TuningConfig,
  withMac,
} from "../../plugins/tuning/tuning.ts";
import { parseUnicastMac } from "../../lib/net/mac.ts";
import { lineOf } from "../../lib/kernel/link.ts";

const conf = (extra: Record<string, unknown>) =>
  parseWith(TuningConfig, { cniVersion: "1.0.0", name: "n", type: "tuning", ...extra });
const errorMatching = (re: RegExp) => (e: unknown) => e instanceof CniError && re.test(e.message);

test("sysctl keys: dots or slashes, IFNAME substituted as a whole component", () => {
  assert.is(sysctlPath("net.core.somaxconn", "eth0"), "net/core/somaxconn");
  assert.is(sysctlPath("net/ipv4/conf/eth0.100/rp_filter", "eth0"), "net/ipv4/conf/eth0.100/rp_filter");
  assert.is(sysctlPath("net.ipv4.conf.eth0/100.rp_filter", "eth0"), "net/ipv4/conf/eth0.100/rp_filter");
  // A dotted CNI_IFNAME stays one component (substituted after splitting, not before).
  assert.is(sysctlPath("net.ipv4.conf.IFNAME.arp_filter", "eth0.5"), "net/ipv4/conf/eth0.5/arp_filter");
  assert.is(sysctlPath("net/ipv6/conf/IFNAME/disable_ipv6", "net1"), "net/ipv6/conf/net1/disable_ipv6");
});

test("sysctl keys that could leave /proc/sys/net are refused, naming the field", () => {
  for (const key of [
    "net.ipv4.conf.eth0...kernel.hostname",
    "net/../kernel/hostname",
    "kernel.hostname",
    "vm.swappiness",
    "/proc/sys/net/core/somaxconn",
    "net",
    "net.",
    "net//core",
    "net.core.somaxconn ",
    "net.core.\nsomaxconn",
    ".net.core",
  ]) {
    assert.throws(
      () => sysctlPath(key, "eth0", "sysctl"),
      errorMatching(/^invalid network config: sysctl: invalid net sysctl key/),
      key,
    );
  }
  assert.throws(() => sysctlPath("net/IFNAME/x", "..", "args.cni.sysctl"), errorMatching(/args\.cni\.sysctl/));
});

test("MAC: the usual spellings, lowercased; multicast and all-zero refused naming the field", () => {
  assert.is(parseUnicastMac("C2:B0:57:49:47:F1", "mac"), "c2:b0:57:49:47:f1");
  assert.is(parseUnicastMac("c2-b0-57-49-47-f1", "mac"), "c2:b0:57:49:47:f1");
  assert.is(parseUnicastMac("c2b0.5749.47f1", "mac"), "c2:b0:57:49:47:f1");
  assert.throws(
    () => parseUnicastMac("01:00:5e:00:00:01", "runtimeConfig.mac"),
    errorMatching(/^invalid network config: runtimeConfig\.mac: .*not unicast/),
  );
  assert.throws(() => parseUnicastMac("ff:ff:ff:ff:ff:ff", "mac"), errorMatching(/not unicast/));
  assert.throws(() => parseUnicastMac("00:00:00:00:00:00", "mac"), errorMatching(/all zeros/));
  assert.throws(() => parseUnicastMac("c2:b0:57:49:47", "mac"), errorMatching(/invalid MAC/));
  assert.throws(() => parseUnicastMac("c2:b0-57:49:47:f1", "mac"), errorMatching(/invalid MAC/));
});

test("negative MTU or txQLen is a config error naming the field", () => {
  assert.throws(() => conf({ mtu: -1 }), errorMatching(/^invalid network config: mtu: must not be negative/));
  assert.throws(() => conf({ args: { cni: { mtu: -5 } } }), errorMatching(/^invalid network config: args\.cni\.mtu:/));
  assert.throws(() => conf({ txQLen: -1 }), errorMatching(/txQLen/));
  assert.throws(() => conf({ mtu: 1.5 }), errorMatching(/mtu/));
  assert.throws(() => conf({ sysctl: { "net.core.somaxconn": 5 } }), errorMatching(/sysctl\.net\.core\.somaxconn/));
});

test("MAC precedence is the reference's: config < CNI_ARGS < runtimeConfig < args.cni", () => {
  const base = { mac: "02:00:00:00:00:01" };
  assert.is(resolveSettings(conf(base), "", "eth0").mac, "02:00:00:00:00:01");
  assert.is(
    resolveSettings(conf(base), "IgnoreUnknown=1;MAC=02:00:00:00:00:02;K8S_POD_NAME=x", "eth0").mac,
    "02:00:00:00:00:02",
  );
  const rc = { ...base, runtimeConfig: { mac: "02:00:00:00:00:03" } };
  assert.is(resolveSettings(conf(rc), "MAC=02:00:00:00:00:02", "eth0").mac, "02:00:00:00:00:03");
  assert.is(
    resolveSettings(conf({ ...rc, args: { cni: { mac: "02:00:00:00:00:04" } } }), "MAC=02:00:00:00:00:02", "eth0").mac,
    "02:00:00:00:00:04",
  );
  assert.throws(() => resolveSettings(conf({}), "K8S_POD_NAME=x", "eth0"), errorMatching(/CNI_ARGS: unknown args/));
  assert.throws(
    () => resolveSettings(conf({}), "MAC=03:00:00:00:00:01", "eth0"),
    errorMatching(/CNI_ARGS MAC: .*not unicast/),
  );
});

test("args.cni overrides attributes and adds or replaces sysctls", () => {
  const s = resolveSettings(
    conf({
      mtu: 1400,
      promisc: true,
      sysctl: { "net.core.somaxconn": "500", "net.ipv4.conf.IFNAME.arp_filter": "1" },
      args: { cni: { mtu: 1300, promisc: false, allmulti: true, txQLen: 0, sysctl: { "net.core.somaxconn": "600" } } },
    }),
    "",
    "eth0",
  );
  assert.is(s.mtu, 1300);
  assert.is(s.promisc, false);
  assert.is(s.allmulti, true);
  assert.is(s.txQLen, 0);
  assert.equal(
    s.sysctls.map((x) => [x.path, x.value]),
    [
      ["net/ipv4/conf/eth0/arp_filter", "1"],
      ["net/core/somaxconn", "600"],
    ],
  );
  assert.is(resolveSettings(conf({ mtu: 0 }), "", "eth0").mtu, undefined);
});

test("two spellings of one sysctl are refused as duplicates", () => {
  assert.throws(
    () => resolveSettings(conf({ sysctl: { "net.core.somaxconn": "1", "net/core/somaxconn": "2" } }), "", "eth0"),
    errorMatching(/duplicated sysctl keys/),
  );
  assert.throws(
    () =>
      resolveSettings(
        conf({ sysctl: { "net.ipv4.conf.IFNAME.arp_filter": "1", "net.ipv4.conf.eth0.arp_filter": "1" } }),
        "",
        "eth0",
      ),
    errorMatching(/duplicated/),
  );
  assert.throws(
    () => resolveSettings(conf({ sysctl: { "net.core.somaxconn": "1\n2" } }), "", "eth0"),
    errorMatching(/control characters/),
  );
});

test("the saved-originals file is byte for byte the reference's (Go MarshalIndent, one space)", () => {
  const link = { address: "6a:3d:6e:09:1f:87", mtu: 1500, flags: ["BROADCAST", "MULTICAST", "UP"], txqlen: 1000 };
  const b = buildBackup({ mac: "c2:b0:57:49:47:f1", mtu: 1400, promisc: true, allmulti: true }, link, [], []);
  // Captured from Debian's tuning 1.1.1 for the same change.
  assert.is(
    renderBackup(b),
    '{\n "mac": "6a:3d:6e:09:1f:87",\n "promisc": false,\n "mtu": 1500,\n "allmulti": false\n}',
  );
  const withSysctl = buildBackup(
    { txQLen: 5 },
    link,
    [{ key: "net.core.somaxconn", path: "net/core/somaxconn", value: "9" }],
    ["4096"],
  );
  assert.is(renderBackup(withSysctl), '{\n "txQLen": 1000,\n "sysctl": {\n  "net/core/somaxconn": "4096"\n }\n}');
  // Write-only keys have no original to save.
  assert.equal(buildBackup({}, undefined, [{ key: "k", path: "net/ipv4/route/flush", value: "1" }], [undefined]), {});
});

test("a repeated ADD keeps the originals already saved", () => {
  const merged = mergeBackups(
    { mac: "02:00:00:00:00:01", sysctl: { "net/core/somaxconn": "4096" } },
    { mac: "02:00:00:00:00:09", mtu: 1500, sysctl: { "net/core/somaxconn": "500", "net/x/y": "1" } },
  );
  assert.equal(merged, {
    mac: "02:00:00:00:00:01",
    mtu: 1500,
    sysctl: { "net/core/somaxconn": "4096", "net/x/y": "1" },
  });
});

test("link commands: one line per attribute, in the reference's order", () => {
  const cmds = linkCommands("eth0", {
    txQLen: 10,
    mtu: 1400,
    allmulti: false,
    promisc: true,
    mac: "02:00:00:00:00:01",
  });
  assert.equal(
    cmds.map((c) => c.field),
    ["mac", "promisc", "mtu", "allmulti", "txQLen"],
  );
  assert.equal(lineOf(cmds[3]!.op), ["link", "set", "eth0", "allmulticast", "off"]);
  assert.equal(linkCommands("eth0", {}), []);
});

test("CHECK compares link attributes and sysctl values by their words", () => {
  const link = { address: "02:00:00:00:00:01", mtu: 1400, flags: ["PROMISC", "UP"], txqlen: 10 };
  assert.equal(linkMismatches("eth0", { mac: "02:00:00:00:00:01", mtu: 1400, promisc: true, txQLen: 10 }, link), []);
  assert.is(linkMismatches("eth0", { mtu: 1500, allmulti: true }, link).length, 2);
  assert.ok(sameSysctlValue("4096\t87380\t6291456", "4096 87380 6291456"));
  assert.not.ok(sameSysctlValue("1", "0"));
});

test("the prevResult carries the new MAC on the container interface only", () => {
  const r = withMac(
    {
      cniVersion: "1.0.0",
      interfaces: [
        { name: "eth0", mac: "aa:aa:aa:aa:aa:aa" },
        { name: "eth0", mac: "bb:bb:bb:bb:bb:bb", sandbox: "/var/run/netns/x" },
      ],
    },
    "eth0",
    "02:00:00:00:00:01",
  );
  assert.equal(
    r.interfaces!.map((i) => i.mac),
    ["aa:aa:aa:aa:aa:aa", "02:00:00:00:00:01"],
  );
});

test("the allow-list: every key must match one expression", () => {
  const list = "^net\\.core\\.somaxconn$\n\n^net\\.ipv4\\.conf\\.IFNAME\\.[a-z_]*$\n";
  checkAllowlist(["net.core.somaxconn", "net.ipv4.conf.IFNAME.arp_filter"], list);
  assert.throws(
    () => checkAllowlist(["net.ipv4.ip_forward"], list),
    errorMatching(/Sysctl net\.ipv4\.ip_forward is not allowed/),
  );
  assert.throws(() => checkAllowlist(["net.core.somaxconn"], "(unclosed"), errorMatching(/invalid regular expression/));
});

test.run();
