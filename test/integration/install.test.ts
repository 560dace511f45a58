import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BIN, cniEnv, sh, sandboxed } from "../helpers/sandbox.ts";
import { runPlugin } from "../helpers/plugin-run.ts";

const inSandbox = sandboxed(test, "inst");

// scripts/install.sh: what lands in the plugin directory, and that each executable stands alone.

const INSTALL = join(import.meta.dirname, "..", "..", "scripts", "install.sh");
const CONF = join(import.meta.dirname, "..", "..", "conf");
const OVERLAY_CONF = "10-tscni-flannel.conflist";

const pluginNames = () =>
  readdirSync(BIN)
    .filter((n) => n !== "tscni" && statSync(join(BIN, n)).ino === statSync(join(BIN, "tscni")).ino)
    .sort();

inSandbox(
  "install.sh installs every plugin, cnitool and tscni-agent as hard links of one file, and the single-node example configs on request",
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

    // Every example but the overlay's: without an agent writing subnet.env its flannel plugin
    // fails every ADD, so it has no place on a node that is not part of the overlay.
    const confs = readdirSync(CONF)
      .filter((f) => f.endsWith(".conflist") && f !== OVERLAY_CONF)
      .sort();
    assert.ok(confs.length > 3, "the single-node examples");
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

inSandbox("install.sh --overlay installs the overlay's conflist alone (no bridge example sorting before it)", (sb) => {
  const dir = join(sb.tmp, "bin");
  const confDir = join(sb.tmp, "net.d");
  sh(["bash", INSTALL, "--no-deps", "--from", BIN, "--conf", "--overlay", "--conf-dir", confDir, dir]);
  assert.equal(readdirSync(confDir), [OVERLAY_CONF]);
  assert.is(readFileSync(join(confDir, OVERLAY_CONF), "utf8"), readFileSync(join(CONF, OVERLAY_CONF), "utf8"));
});

inSandbox(
  "install.sh --conf-file replaces the named config by rename and leaves no temporary file; a bad name is refused",
  (sb) => {
    const dir = join(sb.tmp, "bin");
    const confDir = join(sb.tmp, "net.d");
    mkdirSync(confDir);
    const src = join(sb.tmp, "10-site.conflist");
    writeFileSync(src, '{"cniVersion":"1.0.0","name":"site","plugins":[{"type":"loopback"}]}');
    writeFileSync(join(confDir, "10-site.conflist"), "the old version");
    const before = statSync(join(confDir, "10-site.conflist")).ino;
    sh(["bash", INSTALL, "--no-deps", "--from", BIN, "--conf-file", src, "--conf-dir", confDir, dir]);
    assert.equal(readdirSync(confDir), ["10-site.conflist"], "only the config, no temporary file");
    assert.is(readFileSync(join(confDir, "10-site.conflist"), "utf8"), readFileSync(src, "utf8"));
    // A new inode: renamed over the old file, never rewritten in place where a runtime may read it.
    assert.is.not(statSync(join(confDir, "10-site.conflist")).ino, before);
    assert.is(statSync(join(confDir, "10-site.conflist")).mode & 0o777, 0o644);
    assert.ok(existsSync(join(dir, "bridge")), "the executables as well");

    writeFileSync(join(sb.tmp, "site.txt"), "{}");
    const r = sh(["bash", INSTALL, "--no-deps", "--from", BIN, "--conf-file", join(sb.tmp, "site.txt"), dir], {
      allowFailure: true,
    });
    assert.is(r.code, 2);
    assert.match(r.stderr, /\.conflist, \.conf or \.json/);
  },
);

inSandbox(
  "install.sh replaces an executable that is running (no ETXTBSY, the running one keeps working)",
  async (sb) => {
    const dir = join(sb.tmp, "bin");
    sh(["bash", INSTALL, "--no-deps", "--from", BIN, "--copies", dir]);
    // A long-lived process executing the installed dhcp file: its daemon on a socket in our temp dir.
    const socket = join(sb.tmp, "dhcp.sock");
    const daemon = spawn(join(dir, "dhcp"), ["daemon", "-socketpath", socket], { stdio: "ignore" });
    try {
      for (let i = 0; i < 100 && !existsSync(socket); i++) await new Promise((r) => setTimeout(r, 100));
      assert.ok(existsSync(socket), "the daemon is up");
      const old = statSync(join(dir, "dhcp")).ino;
      const r = sh(["bash", INSTALL, "--no-deps", "--from", BIN, "--copies", dir], { allowFailure: true });
      assert.is(r.code, 0, r.stderr);
      assert.is.not(statSync(join(dir, "dhcp")).ino, old, "replaced by a new file");
      assert.is(daemon.exitCode, null, "the running daemon was not disturbed");
      const v = sh([join(dir, "dhcp")], { env: { CNI_COMMAND: "VERSION" } });
      assert.ok(JSON.parse(v.stdout).supportedVersions.length > 0);
    } finally {
      daemon.kill("SIGKILL");
    }
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
