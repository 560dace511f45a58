import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CniError } from "../../lib/cni/errors.ts";
import { execPlugin, findPlugin, getVersionInfo, pluginEnv } from "../../lib/cni/invoke.ts";

// How plugin executables are found, run and their failures read, as libcni's invoke package does.
// The "plugins" here are small shell scripts written by the test.

const dir = mkdtempSync(join(tmpdir(), "cnitool-invoke-"));
function script(name: string, body: string, mode = 0o755): string {
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, mode);
  return path;
}

function failure(fn: () => unknown): CniError {
  try {
    fn();
  } catch (e) {
    if (e instanceof CniError) return e;
    throw e;
  }
  throw new Error("expected a failure");
}

test("a plugin is found in the first CNI_PATH directory that has it as a regular file", () => {
  mkdirSync(join(dir, "p1", "tool"), { recursive: true }); // a directory of that name does not count
  mkdirSync(join(dir, "p2"), { recursive: true });
  writeFileSync(join(dir, "p2", "tool"), "");
  assert.is(findPlugin("tool", [join(dir, "p1"), join(dir, "p2")]), join(dir, "p2", "tool"));
  assert.throws(
    () => findPlugin("tool", [join(dir, "p1")]),
    (e: Error) => !(e instanceof CniError) && /failed to find plugin "tool" in path/.test(e.message),
  );
  assert.throws(() => findPlugin("../tool", [dir]), /invalid plugin name/);
  assert.throws(() => findPlugin("", [dir]), /no plugin name provided/);
  assert.throws(() => findPlugin("tool", []), /no paths provided/);
});

test("the plugin environment is ours plus the CNI_* variables of the call, without TSCNI_PLUGIN", () => {
  const env = pluginEnv(
    {
      command: "ADD",
      containerId: "c",
      netns: "/n",
      ifName: "eth0",
      args: [
        ["A", "1"],
        ["B", "2=3"],
      ],
      path: ["/a", "/b"],
    },
    { HOME: "/root", CNI_COMMAND: "stale", TSCNI_PLUGIN: "cnitool" },
  );
  assert.equal(env, {
    HOME: "/root",
    CNI_COMMAND: "ADD",
    CNI_CONTAINERID: "c",
    CNI_NETNS: "/n",
    CNI_ARGS: "A=1;B=2=3",
    CNI_IFNAME: "eth0",
    CNI_PATH: "/a:/b",
  });
  const gc = pluginEnv({ command: "GC", path: ["/a"] }, {});
  assert.equal([gc.CNI_CONTAINERID, gc.CNI_NETNS, gc.CNI_IFNAME, gc.CNI_ARGS], ["", "", "", ""]);
});

test("stdin goes to the plugin and its stdout comes back", () => {
  const cat = script("cat", 'printf "%s|" "$CNI_COMMAND"; cat');
  assert.is(execPlugin(cat, '{"x":1}', { CNI_COMMAND: "ADD" }), 'ADD|{"x":1}');
});

test("a failing plugin's error object keeps its code, msg and details", () => {
  const e = failure(() => execPlugin(script("err", `echo '{"code":7,"msg":"bad","details":"more"}'; exit 1`), "", {}));
  assert.equal([e.code, e.message, e.details], [7, "bad", "more"]);
});

test("failures without an error object get libcni's texts", () => {
  const stderrOnly = failure(() => execPlugin(script("e1", "echo oops >&2; exit 3"), "", {}));
  assert.is(stderrOnly.message, 'netplugin failed: "oops\\n": exit status 3');
  const silent = failure(() => execPlugin(script("e2", "exit 4"), "", {}));
  assert.is(silent.message, "netplugin failed with no error message: exit status 4");
  const garbage = failure(() => execPlugin(script("e3", "echo notjson; exit 1"), "", {}));
  assert.match(garbage.message, /^netplugin failed but error parsing its diagnostic message "notjson\\n": /);
  const noexec = failure(() => execPlugin(script("e4", "exit 0", 0o644), "", {}));
  assert.is(noexec.message, `netplugin failed with no error message: fork/exec ${join(dir, "e4")}: permission denied`);
});

test("an executable still open for writing (text file busy) is retried until it can run", async () => {
  const plugin = script("busy", "echo ran");
  // A helper holds the file open for writing for a moment, as an installer copying it would.
  const holder = spawn(process.execPath, [
    "-e",
    `const fd = require("fs").openSync(${JSON.stringify(plugin)}, "a"); console.log("ready"); setTimeout(() => {}, 1200);`,
  ]);
  await new Promise<void>((resolve) => holder.stdout.once("data", () => resolve()));
  try {
    assert.is(execPlugin(plugin, "", {}), "ran\n");
  } finally {
    holder.kill();
  }
});

test("VERSION: the answer is decoded; a 0.1.0 plugin that does not know the verb supports 0.1.0 only", () => {
  const v = script("v", `echo '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}'`);
  assert.equal(getVersionInfo(v, {}), { cniVersion: "1.0.0", supportedVersions: ["0.4.0", "1.0.0"] });
  const old = script("old", `echo '{"code":4,"msg":"unknown CNI_COMMAND: VERSION"}'; exit 1`);
  assert.equal(getVersionInfo(old, {}).supportedVersions, ["0.1.0"]);
  const v020 = script("v020", `echo '{"cniVersion":"0.2.0"}'`);
  assert.equal(getVersionInfo(v020, {}).supportedVersions, ["0.1.0", "0.2.0"]);
  assert.throws(
    () => getVersionInfo(script("bad", `echo '{"cniVersion":"1.0.0"}'`), {}),
    /missing field supportedVersions/,
  );
  const seen = join(dir, "probe.seen");
  const probe = script(
    "probe",
    `echo "$CNI_COMMAND $CNI_NETNS $CNI_IFNAME $CNI_PATH" > ${seen}; cat >> ${seen}; echo '{"cniVersion":"1.1.0","supportedVersions":["1.1.0"]}'`,
  );
  getVersionInfo(probe, {});
  assert.is(readFileSync(seen, "utf8"), 'VERSION dummy dummy dummy\n{"cniVersion":"1.1.0"}');
});

test.after(() => rmSync(dir, { recursive: true, force: true }));

test.run();
