import { test } from "uvu";
import * as assert from "uvu/assert";
import { copyFileSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BIN, cniEnv, sh, sandboxed } from "../helpers/sandbox.ts";
import { runPlugin } from "../helpers/plugin-run.ts";

const inSandbox = sandboxed(test, "inst");

// scripts/install.sh: what lands in the plugin directory, and that each executable stands alone.

const INSTALL = join(import.meta.dirname, "..", "..", "scripts", "install.sh");
const CONF = join(import.meta.dirname, "..", "..", "conf");

const pluginNames = () =>
  readdirSync(BIN)
    .filter((n) => n !== "tscni" && statSync(join(BIN, n)).ino === statSync(join(BIN, "tscni")).ino)
    .sort();

inSandbox(
  "install.sh installs every plugin, cnitool and tscni-agent as hard links of one file, and the example configs on request",
  (sb) => {
    const dir = join(sb.tmp, "opt-cni-bin");
    const confDir = join(sb.tmp, "net.d");
    // An operator's own file of the same name is kept.
    mkdirSync(confDir);
    writeFileSync(join(confDir, "99-loopback.conflist"), "mine");
    sh(["bash", INSTALL, "--no-deps", "--from", BIN, "--conf", "--conf-dir", confDir, dir]);

    const names = readdirSync(dir).sort();
    assert.equal(names, pluginNames());
    for (const n of ["loopback", "bridge", "host-local", "portmap", "cnitool", "tscni-agent"])
      assert.ok(names.includes(n), n);
    const inodes = new Set(names.map((n) => statSync(join(dir, n)).ino));
    assert.is(inodes.size, 1, "one file on disk");
    assert.is(statSync(join(dir, "loopback")).mode & 0o777, 0o755);
    for (const n of names.filter((n) => n !== "cnitool" && n !== "tscni-agent")) {
      const r = sh([join(dir, n)], { env: { CNI_COMMAND: "VERSION" } });
      assert.ok(JSON.parse(r.stdout).supportedVersions.length > 0, n);
    }

    const confs = readdirSync(CONF)
      .filter((f) => f.endsWith(".conflist"))
      .sort();
    assert.equal(readdirSync(confDir).sort(), confs);
    assert.is(readFileSync(join(confDir, "99-loopback.conflist"), "utf8"), "mine");
    for (const f of confs.filter((f) => f !== "99-loopback.conflist")) {
      assert.is(readFileSync(join(confDir, f), "utf8"), readFileSync(join(CONF, f), "utf8"));
    }

    // Installing again over a live directory replaces the files (by rename) and still works.
    sh(["bash", INSTALL, "--no-deps", "--from", BIN, "--copies", dir]);
    assert.is(
      new Set(readdirSync(dir).map((n) => statSync(join(dir, n)).ino)).size,
      names.length,
      "--copies: independent files",
    );
  },
);

inSandbox("one executable copied alone, under a plugin's name, is a working plugin", (sb) => {
  const alone = join(sb.tmp, "alone");
  mkdirSync(alone);
  copyFileSync(join(BIN, "loopback"), join(alone, "loopback"));
  sh(["chmod", "0755", join(alone, "loopback")]);
  const ctr = sb.addContainer();
  const r = runPlugin(sb, join(alone, "loopback"), cniEnv("ADD", { CNI_NETNS: ctr.path, CNI_PATH: alone }), {
    cniVersion: "1.0.0",
    name: "n",
    type: "loopback",
  });
  assert.is(r.code, 0, r.stdout + r.stderr);
  assert.is(r.json.interfaces[0].name, "lo");
});

test("the example configurations are valid network configuration lists", () => {
  for (const f of readdirSync(CONF).filter((f) => f.endsWith(".conflist"))) {
    const list = JSON.parse(readFileSync(join(CONF, f), "utf8"));
    assert.type(list.name, "string", f);
    assert.match(list.cniVersion, /^\d+\.\d+\.\d+$/, f);
    assert.ok(Array.isArray(list.plugins) && list.plugins.length > 0, f);
    for (const p of list.plugins) assert.type(p.type, "string", f);
  }
});

test.run();
