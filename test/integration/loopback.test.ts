import { test } from "uvu";
import * as assert from "uvu/assert";
import { join } from "node:path";
import { BIN, REF_BIN, cniEnv, sh, sandboxed } from "../helpers/sandbox.ts";
import { runPlugin } from "../helpers/plugin-run.ts";

const inSandbox = sandboxed(test, "loop");

// The loopback plugin, run as the compiled executable inside a sandbox node namespace, the way a
// runtime would run it: ADD/CHECK/DEL per spec version, and against the reference plugin.

const LOOPBACK = join(BIN, "loopback");
const VERSIONS = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
const conf = (cniVersion: string, extra: Record<string, unknown> = {}) => ({
  cniVersion,
  name: "lo-net",
  type: "loopback",
  ...extra,
});

interface LoState {
  up: boolean;
  addrs: string[];
}

/** lo's admin state and addresses, read from outside with `ip -n`. */
function lo(ns: string): LoState {
  const [link] = JSON.parse(sh(["ip", "-n", ns, "-j", "addr", "show", "dev", "lo"]).stdout) as {
    flags: string[];
    addr_info: { local: string; prefixlen: number }[];
  }[];
  return { up: link!.flags.includes("UP"), addrs: link!.addr_info.map((a) => `${a.local}/${a.prefixlen}`).sort() };
}

/** The result shape the spec gives each version for lo's two addresses. */
function expectedResult(version: string, sandbox: string) {
  if (version === "0.1.0" || version === "0.2.0") {
    return { cniVersion: version, ip4: { ip: "127.0.0.1/8" }, ip6: { ip: "::1/128" }, dns: {} };
  }
  const v04 = version.startsWith("0.");
  const ips = [
    { ...(v04 ? { version: "4" } : {}), interface: 0, address: "127.0.0.1/8" },
    { ...(v04 ? { version: "6" } : {}), interface: 0, address: "::1/128" },
  ];
  return {
    cniVersion: version,
    interfaces: [{ name: "lo", mac: "00:00:00:00:00:00", sandbox }],
    ips,
    ...(v04 ? { dns: {} } : {}),
  };
}

test("VERSION answers every supported version without reading stdin or needing other variables", () => {
  const r = sh([LOOPBACK], { env: { CNI_COMMAND: "VERSION" }, input: "this is not JSON" });
  assert.is(r.code, 0);
  assert.equal(JSON.parse(r.stdout), { cniVersion: "1.1.0", supportedVersions: VERSIONS });
  assert.is(r.stdout.trim().split("\n").length, 1);
});

test("without CNI_COMMAND: the about text on stderr, nothing on stdout, exit 0", () => {
  const r = sh([LOOPBACK], { env: {} });
  assert.is(r.code, 0);
  assert.is(r.stdout, "");
  assert.match(r.stderr, /^CNI loopback plugin /);
  assert.match(
    r.stderr,
    /CNI protocol versions supported: 0\.1\.0, 0\.2\.0, 0\.3\.0, 0\.3\.1, 0\.4\.0, 1\.0\.0, 1\.1\.0/,
  );
});

for (const version of VERSIONS) {
  inSandbox(`ADD ${version}: lo comes up in a fresh netns; result in the ${version} shape`, (sb) => {
    const ctr = sb.addContainer();
    assert.equal(lo(ctr.name), { up: false, addrs: [] });
    const r = runPlugin(sb, LOOPBACK, cniEnv("ADD", { CNI_NETNS: ctr.path }), conf(version));
    assert.is(r.code, 0, r.stdout + r.stderr);
    assert.equal(r.json, expectedResult(version, ctr.path));
    assert.is(r.stdout.trim().split("\n").length, 1, "one JSON document on stdout");
    assert.equal(lo(ctr.name), { up: true, addrs: ["127.0.0.1/8", "::1/128"] });
    // Set up only lo: no other link appeared in the container, none in the node.
    assert.is(JSON.parse(sh(["ip", "-n", ctr.name, "-j", "link", "show"]).stdout).length, 1);
  });
}

inSandbox("ADD ignores CNI_IFNAME: it always works on lo", (sb) => {
  const ctr = sb.addContainer();
  const r = runPlugin(sb, LOOPBACK, cniEnv("ADD", { CNI_NETNS: ctr.path, CNI_IFNAME: "net7" }), conf("1.0.0"));
  assert.is(r.code, 0, r.stdout);
  assert.is(r.json.interfaces[0].name, "lo");
  assert.ok(lo(ctr.name).up);
});

inSandbox("ADD with a prevResult passes it through, converted to the request version, and still sets lo up", (sb) => {
  const ctr = sb.addContainer();
  const prev = {
    cniVersion: "1.0.0",
    interfaces: [{ name: "eth0", mac: "0a:58:0a:16:00:05", sandbox: ctr.path }],
    ips: [{ interface: 0, address: "10.22.0.5/16", gateway: "10.22.0.1" }],
    routes: [{ dst: "0.0.0.0/0", gw: "10.22.0.1" }],
  };
  const same = runPlugin(sb, LOOPBACK, cniEnv("ADD", { CNI_NETNS: ctr.path }), conf("1.0.0", { prevResult: prev }));
  assert.is(same.code, 0, same.stdout);
  assert.equal(same.json, prev);
  assert.ok(lo(ctr.name).up);

  const old = runPlugin(
    sb,
    LOOPBACK,
    cniEnv("ADD", { CNI_NETNS: ctr.path }),
    conf("0.4.0", { prevResult: { ...prev, cniVersion: "0.4.0", ips: [{ version: "4", ...prev.ips[0] }] } }),
  );
  assert.is(old.code, 0, old.stdout);
  assert.equal(old.json.ips, [{ version: "4", interface: 0, address: "10.22.0.5/16", gateway: "10.22.0.1" }]);
});

inSandbox("ADD with a malformed prevResult is a decoding failure and leaves lo down", (sb) => {
  const ctr = sb.addContainer();
  const r = runPlugin(
    sb,
    LOOPBACK,
    cniEnv("ADD", { CNI_NETNS: ctr.path }),
    conf("1.0.0", { prevResult: { ips: "10.0.0.1" } }),
  );
  assert.is(r.code, 1);
  assert.is(r.json.code, 6);
  // The reference parses prevResult before touching the netns; lo must not have changed.
  assert.equal(lo(ctr.name), { up: false, addrs: [] }, "nothing left behind");
});

for (const version of ["0.4.0", "1.0.0", "1.1.0"]) {
  inSandbox(`CHECK ${version}: passes while lo is up, fails once it is set down`, (sb) => {
    const ctr = sb.addContainer();
    const add = runPlugin(sb, LOOPBACK, cniEnv("ADD", { CNI_NETNS: ctr.path }), conf(version));
    assert.is(add.code, 0, add.stdout);
    const ok = runPlugin(
      sb,
      LOOPBACK,
      cniEnv("CHECK", { CNI_NETNS: ctr.path }),
      conf(version, { prevResult: add.json }),
    );
    assert.is(ok.code, 0, ok.stdout);
    assert.is(ok.stdout, "", "CHECK prints nothing on success");
    sh(["ip", "-n", ctr.name, "link", "set", "lo", "down"]);
    const bad = runPlugin(
      sb,
      LOOPBACK,
      cniEnv("CHECK", { CNI_NETNS: ctr.path }),
      conf(version, { prevResult: add.json }),
    );
    assert.is(bad.code, 1);
    assert.is(bad.json.msg, "loopback interface is down");
    assert.is(bad.json.cniVersion, version);
    assert.not.ok(lo(ctr.name).up, "CHECK changed nothing");
  });
}

for (const version of ["0.1.0", "0.2.0", "0.3.0", "0.3.1"]) {
  inSandbox(`CHECK is refused for ${version} with code 1, before touching anything`, (sb) => {
    const ctr = sb.addContainer();
    const r = runPlugin(sb, LOOPBACK, cniEnv("CHECK", { CNI_NETNS: ctr.path }), conf(version));
    assert.is(r.code, 1);
    assert.is(r.json.code, 1);
    assert.match(r.json.msg, /does not allow CHECK/);
  });
}

inSandbox("DEL sets lo down, and succeeds again when repeated", (sb) => {
  const ctr = sb.addContainer();
  assert.is(runPlugin(sb, LOOPBACK, cniEnv("ADD", { CNI_NETNS: ctr.path }), conf("1.0.0")).code, 0);
  for (let i = 0; i < 2; i++) {
    const r = runPlugin(sb, LOOPBACK, cniEnv("DEL", { CNI_NETNS: ctr.path }), conf("1.0.0"));
    assert.is(r.code, 0, r.stdout);
    assert.is(r.stdout, "", "DEL prints nothing on success");
    assert.not.ok(lo(ctr.name).up);
  }
  // ::1 goes away with lo down; 127.0.0.1 stays (kernel behaviour, as with the reference).
  assert.equal(lo(ctr.name).addrs, ["127.0.0.1/8"]);
});

inSandbox("DEL succeeds when the netns is gone and when CNI_NETNS is empty", (sb) => {
  const ctr = sb.addContainer();
  assert.is(runPlugin(sb, LOOPBACK, cniEnv("ADD", { CNI_NETNS: ctr.path }), conf("0.4.0")).code, 0);
  sh(["ip", "netns", "del", ctr.name]);
  const gone = runPlugin(sb, LOOPBACK, cniEnv("DEL", { CNI_NETNS: ctr.path }), conf("0.4.0"));
  assert.is(gone.code, 0, gone.stdout);
  const empty = runPlugin(sb, LOOPBACK, cniEnv("DEL", { CNI_NETNS: "" }), conf("0.4.0"));
  assert.is(empty.code, 0, empty.stdout);
  const unset = runPlugin(
    sb,
    LOOPBACK,
    { CNI_COMMAND: "DEL", CNI_CONTAINERID: "ctr1", CNI_IFNAME: "eth0" },
    conf("0.4.0"),
  );
  assert.is(unset.code, 0, unset.stdout);
});

inSandbox("GC and STATUS (1.1.0) succeed with no output; older configs are refused with code 1", (sb) => {
  const gc = runPlugin(
    sb,
    LOOPBACK,
    { CNI_COMMAND: "GC", CNI_PATH: BIN },
    conf("1.1.0", { "cni.dev/valid-attachments": [] }),
  );
  assert.is(gc.code, 0, gc.stdout);
  assert.is(gc.stdout, "");
  const status = runPlugin(sb, LOOPBACK, { CNI_COMMAND: "STATUS", CNI_PATH: BIN }, conf("1.1.0"));
  assert.is(status.code, 0, status.stdout);
  assert.is(status.stdout, "");
  for (const cmd of ["GC", "STATUS"]) {
    const old = runPlugin(sb, LOOPBACK, { CNI_COMMAND: cmd, CNI_PATH: BIN }, conf("1.0.0"));
    assert.is(old.json?.code, 1, `${cmd}: ${old.stdout}`);
  }
});

inSandbox("same lo state and addresses as the reference loopback plugin, in both directions", (sb) => {
  const ours = sb.addContainer();
  const ref = sb.addContainer();
  const a = runPlugin(sb, LOOPBACK, cniEnv("ADD", { CNI_NETNS: ours.path }), conf("1.0.0"));
  const b = runPlugin(sb, join(REF_BIN, "loopback"), cniEnv("ADD", { CNI_NETNS: ref.path }), conf("1.0.0"));
  assert.is(a.code, 0, a.stdout);
  assert.is(b.code, 0, b.stdout);
  assert.equal(lo(ours.name), lo(ref.name));
  // Same content; the reference (cni lib 1.0) also prints an empty "dns": {} for 1.x.
  const { dns: _dns, ...refResult } = b.json;
  assert.equal(a.json, { ...refResult, interfaces: [{ ...refResult.interfaces[0], sandbox: ours.path }] });
  // A DEL by either implementation undoes an ADD by the other.
  assert.is(runPlugin(sb, join(REF_BIN, "loopback"), cniEnv("DEL", { CNI_NETNS: ours.path }), conf("1.0.0")).code, 0);
  assert.is(runPlugin(sb, LOOPBACK, cniEnv("DEL", { CNI_NETNS: ref.path }), conf("1.0.0")).code, 0);
  assert.not.ok(lo(ours.name).up);
  assert.not.ok(lo(ref.name).up);
});

test.run();
