import { test } from "uvu";
import * as assert from "uvu/assert";
import { parseCniArgs } from "../../lib/cni/args.ts";
import { BaseConfig, parseWith } from "../../lib/cni/config.ts";
import { readEnv, validateContainerId, validateIfname, validateNetworkName } from "../../lib/cni/env.ts";
import { asCniError, CniError, Code } from "../../lib/cni/errors.ts";
import { atLeast, compareVersions, resultFamily, SUPPORTED_VERSIONS } from "../../lib/cni/versions.ts";
import * as z from "../../lib/cni/zod.ts";

// The CNI contract's input side: environment variables, CNI_ARGS, names, config validation,
// error objects and version arithmetic.

function cniError(fn: () => unknown): CniError {
  try {
    fn();
  } catch (e) {
    assert.instance(e, CniError);
    return e as CniError;
  }
  assert.unreachable("expected a CniError");
  throw new Error("unreachable");
}

const full = {
  CNI_COMMAND: "ADD",
  CNI_CONTAINERID: "ctr1",
  CNI_NETNS: "/var/run/netns/x",
  CNI_IFNAME: "eth0",
  CNI_PATH: "/opt/cni/bin",
};

// environment

test("readEnv: a complete ADD environment parses; CNI_PATH splits on ':' and drops empty parts", () => {
  const env = readEnv({ ...full, CNI_PATH: "/a::/b:", CNI_ARGS: "K=V" });
  assert.equal(env, {
    command: "ADD",
    containerId: "ctr1",
    netns: "/var/run/netns/x",
    ifname: "eth0",
    args: "K=V",
    path: ["/a", "/b"],
  });
});

test("readEnv: every missing variable is listed at once, code 4", () => {
  const e = cniError(() => readEnv({ CNI_COMMAND: "ADD" }));
  assert.is(e.code, Code.InvalidEnv);
  assert.match(e.message, /^required env variables \[.*\] missing$/);
  for (const v of ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"]) assert.ok(e.message.includes(v), `${v} listed`);
});

test("readEnv: empty counts as missing", () => {
  const e = cniError(() => readEnv({ ...full, CNI_NETNS: "" }));
  assert.is(e.code, Code.InvalidEnv);
  assert.match(e.message, /\[CNI_NETNS\]/);
});

test("readEnv: per-verb requirements (DEL needs no netns, GC needs CNI_PATH, STATUS and VERSION need nothing)", () => {
  assert.is(readEnv({ CNI_COMMAND: "DEL", CNI_CONTAINERID: "c", CNI_IFNAME: "eth0" }).netns, "");
  const chk = cniError(() => readEnv({ CNI_COMMAND: "CHECK", CNI_CONTAINERID: "c", CNI_IFNAME: "eth0" }));
  assert.match(chk.message, /CNI_NETNS/);
  const gc = cniError(() => readEnv({ CNI_COMMAND: "GC" }));
  assert.is(gc.code, Code.InvalidEnv);
  assert.match(gc.message, /\[CNI_PATH\]/);
  assert.is(readEnv({ CNI_COMMAND: "GC", CNI_PATH: "/x" }).command, "GC");
  assert.is(readEnv({ CNI_COMMAND: "STATUS" }).command, "STATUS");
  assert.is(readEnv({ CNI_COMMAND: "VERSION" }).command, "VERSION");
});

test("readEnv: GC and STATUS do not validate the attachment variables libcni leaves empty", () => {
  assert.is(readEnv({ CNI_COMMAND: "GC", CNI_PATH: "/x", CNI_CONTAINERID: "", CNI_IFNAME: "" }).command, "GC");
  assert.is(readEnv({ CNI_COMMAND: "STATUS", CNI_CONTAINERID: "-bad-", CNI_IFNAME: "a/b" }).command, "STATUS");
});

test("readEnv: unknown or lower-case CNI_COMMAND is code 4", () => {
  for (const cmd of ["FOO", "add", ""]) {
    const e = cniError(() => readEnv({ ...full, CNI_COMMAND: cmd }));
    assert.is(e.code, Code.InvalidEnv);
    assert.match(e.message, /unknown CNI_COMMAND/);
  }
});

test("readEnv: the container ID and ifname are validated for ADD/DEL/CHECK", () => {
  assert.is(cniError(() => readEnv({ ...full, CNI_CONTAINERID: "-x" })).code, Code.InvalidEnv);
  assert.is(cniError(() => readEnv({ ...full, CNI_COMMAND: "DEL", CNI_IFNAME: "a b" })).code, Code.InvalidEnv);
  assert.is(
    cniError(() => readEnv({ ...full, CNI_COMMAND: "CHECK", CNI_IFNAME: "0123456789abcdef" })).code,
    Code.InvalidEnv,
  );
});

// container ID

test("container IDs: [a-zA-Z0-9][a-zA-Z0-9_.-]*", () => {
  for (const ok of ["a", "0", "ctr1", "A.b_c-D", "cnitool-0123456789abcdef0123", "x".repeat(64)])
    validateContainerId(ok);
  for (const bad of ["", "-a", ".a", "_a", "a/b", "a b", "a:b", "a\nb", "é", "a;b", "../x"]) {
    const e = cniError(() => validateContainerId(bad));
    assert.is(e.code, Code.InvalidEnv, JSON.stringify(bad));
    assert.is(e.message, "invalid characters in containerID");
    assert.is(e.details, bad);
  }
});

// interface names

test("ifname: at most 15 bytes (bytes, not characters)", () => {
  validateIfname("a".repeat(15), "CNI_IFNAME");
  assert.match(cniError(() => validateIfname("a".repeat(16), "CNI_IFNAME")).message, /too long/);
  // 8 two-byte characters: 8 characters but 16 bytes.
  assert.match(cniError(() => validateIfname("é".repeat(8), "CNI_IFNAME")).message, /too long/);
  validateIfname("é".repeat(7), "CNI_IFNAME");
});

test("ifname: not empty, '.', '..'; no '/', ':' or whitespace; the error names the field", () => {
  for (const bad of ["", ".", "..", "a/b", "/", "a:b", "a b", "a\tb", "a\nb", " eth0"]) {
    const e = cniError(() => validateIfname(bad, "CNI_IFNAME"));
    assert.is(e.code, Code.InvalidEnv, JSON.stringify(bad));
    assert.match(e.message, /^CNI_IFNAME: /);
  }
  for (const ok of ["eth0", "net1", "a.b", "...", "veth-x_y", "lo"]) validateIfname(ok, "CNI_IFNAME");
});

test("ifname: a config field gets the caller's code and field name", () => {
  const e = cniError(() => validateIfname("a/b", "bridge", Code.InvalidConfig));
  assert.is(e.code, Code.InvalidConfig);
  assert.match(e.message, /^bridge: /);
});

// network names

test("network names: missing or non-string is code 7 'missing network name'", () => {
  for (const bad of [undefined, "", 5, null, ["x"]]) {
    const e = cniError(() => validateNetworkName(bad));
    assert.is(e.code, Code.InvalidConfig);
    assert.is(e.message, "missing network name");
  }
});

test("network names: no '/', no '..', same character rule as container IDs; code 7", () => {
  for (const bad of ["a/b", "..", "../etc", "a..b", "-net", ".net", "my net", "net:1"]) {
    const e = cniError(() => validateNetworkName(bad));
    assert.is(e.code, Code.InvalidConfig, bad);
    assert.is(e.message, "invalid characters found in network name");
    assert.is(e.details, bad);
  }
  for (const ok of ["mynet", "cni-loopback", "net.1_a-b", "0"]) validateNetworkName(ok);
});

// CNI_ARGS

test("CNI_ARGS: empty is nothing; known keys are returned", () => {
  assert.equal(parseCniArgs("", ["IP"]), {});
  assert.equal(parseCniArgs("IP=10.0.0.5", ["IP", "MAC"]), { IP: "10.0.0.5" });
  assert.equal(parseCniArgs("IP=10.0.0.5;MAC=aa:bb:cc:dd:ee:ff", ["IP", "MAC"]), {
    IP: "10.0.0.5",
    MAC: "aa:bb:cc:dd:ee:ff",
  });
});

test("CNI_ARGS: unknown keys fail unless IgnoreUnknown is true, wherever it stands", () => {
  const e = cniError(() => parseCniArgs("K8S_POD_NAME=x;IP=10.0.0.5", ["IP"]));
  assert.match(e.message, /unknown args/);
  assert.match(e.message, /K8S_POD_NAME=x/);
  for (const s of [
    "IgnoreUnknown=1;K8S_POD_NAME=x;IP=1.2.3.4",
    "K8S_POD_NAME=x;IP=1.2.3.4;IgnoreUnknown=true",
    "IgnoreUnknown=TRUE;IP=1.2.3.4;K=v",
  ]) {
    assert.equal(parseCniArgs(s, ["IP"]), { IP: "1.2.3.4" }, s);
  }
  for (const s of ["IgnoreUnknown=0;K=v", "IgnoreUnknown=false;K=v"]) {
    assert.match(cniError(() => parseCniArgs(s, ["IP"])).message, /unknown args/, s);
  }
});

test("CNI_ARGS: keys are case-sensitive", () => {
  assert.match(cniError(() => parseCniArgs("ip=10.0.0.5", ["IP"])).message, /unknown args/);
});

test("CNI_ARGS: IgnoreUnknown needs a boolean", () => {
  assert.match(cniError(() => parseCniArgs("IgnoreUnknown=yes", ["IP"])).message, /IgnoreUnknown/);
});

test("CNI_ARGS: every pair needs exactly one '='", () => {
  for (const s of ["IP", "IP=1=2", "IP=1;", ";IP=1", "IP=1;;MAC=x"]) {
    assert.match(cniError(() => parseCniArgs(s, ["IP", "MAC"])).message, /invalid pair/, s);
  }
});

test("CNI_ARGS: empty values are values", () => {
  assert.equal(parseCniArgs("IP=", ["IP"]), { IP: "" });
});

// config validation and errors

test("parseWith: the error names the offending field, code 7 by default", () => {
  const e = cniError(() => parseWith(BaseConfig, { name: 5 }));
  assert.is(e.code, Code.InvalidConfig);
  assert.match(e.message, /name/);
  const Ext = z.extend(BaseConfig, { mtu: z.optional(z.number().check(z.int(), z.positive())) });
  const e2 = cniError(() => parseWith(Ext, { name: "n", mtu: -1 }));
  assert.match(e2.message, /mtu/);
  const e3 = cniError(() => parseWith(Ext, { name: "n", ipam: { type: 3 } }, Code.DecodingFailure));
  assert.is(e3.code, Code.DecodingFailure);
  assert.match(e3.message, /ipam\.type/);
});

test("BaseConfig keeps unknown keys and defaults cniVersion to 0.1.0", () => {
  const c = parseWith(BaseConfig, { name: "n", type: "loopback", custom: { a: 1 } });
  assert.is(c.cniVersion, "0.1.0");
  assert.equal((c as Record<string, unknown>).custom, { a: 1 });
});

test("error objects carry cniVersion, code, msg, details", () => {
  const e = new CniError(Code.InvalidConfig, "bad", "more");
  assert.equal(e.toJSON("0.4.0"), { cniVersion: "0.4.0", code: 7, msg: "bad", details: "more" });
  assert.equal(new CniError(Code.TryAgainLater, "busy").toJSON("1.1.0"), {
    cniVersion: "1.1.0",
    code: 11,
    msg: "busy",
    details: "",
  });
});

test("untyped failures become code 999; CniErrors pass through", () => {
  assert.is(asCniError(new Error("boom")).code, 999);
  assert.is(asCniError(new Error("boom")).message, "boom");
  assert.is(asCniError("text").code, 999);
  const typed = new CniError(Code.NotAvailable, "down");
  assert.is(asCniError(typed), typed);
});

test("spec error codes", () => {
  assert.equal(
    [
      Code.IncompatibleVersion,
      Code.InvalidEnv,
      Code.IOFailure,
      Code.DecodingFailure,
      Code.InvalidConfig,
      Code.TryAgainLater,
      Code.NotAvailable,
      Code.LimitedConnectivity,
    ],
    [1, 4, 5, 6, 7, 11, 50, 51],
  );
});

// versions

test("supported versions: 0.1.0 through 1.1.0", () => {
  assert.equal([...SUPPORTED_VERSIONS], ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]);
});

test("version arithmetic: numeric, missing is 0.1.0", () => {
  assert.ok(compareVersions("0.10.0", "0.4.0") > 0);
  assert.ok(compareVersions("1.0.0", "0.4.0") > 0);
  assert.is(compareVersions("", "0.1.0"), 0);
  assert.ok(atLeast("0.4.0", "0.4.0"));
  assert.not.ok(atLeast("0.3.1", "0.4.0"));
  assert.ok(atLeast("1.1.0", "0.4.0"));
});

test("result families", () => {
  assert.equal(
    SUPPORTED_VERSIONS.map((v) => resultFamily(v)),
    ["legacy", "legacy", "v04", "v04", "v04", "v1", "v1"],
  );
});

test.run();
