import { test } from "uvu";
import * as assert from "uvu/assert";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { BIN, type Sandbox, sh, withSandbox } from "../helpers/sandbox.ts";
import { HNET, addEnv, baseConfig, runNamed } from "../helpers/hostile.ts";
import { runPlugin } from "../helpers/plugin-run.ts";

/**
 * Symlinks planted in plugin state: dataDir itself, the network's directory, a reservation, the
 * round-robin marker, the lock, the private index, and tuning's saved-originals file. None is
 * followed: whatever it points at is never created, written, truncated or removed, and the plugin
 * either refuses with a CNI error or carries on without it.
 */

interface Victim {
  path: string;
  content: string;
  mtimeMs: number;
}

/** A file outside the store that a followed symlink would damage. */
function victim(sb: Sandbox, name: string, content: string): Victim {
  const dir = join(sb.tmp, "elsewhere");
  mkdirSync(dir, { recursive: true });
  const path = join(dir, name);
  writeFileSync(path, content);
  return { path, content, mtimeMs: statSync(path).mtimeMs };
}

function untouched(v: Victim, what: string) {
  assert.ok(existsSync(v.path), `${what}: the target still exists`);
  assert.is(readFileSync(v.path, "utf8"), v.content, `${what}: the target's content is unchanged`);
  assert.is(statSync(v.path).mtimeMs, v.mtimeMs, `${what}: the target was not written`);
}

function replaceWithSymlink(path: string, target: string) {
  rmSync(path, { recursive: true, force: true });
  symlinkSync(target, path);
}

const elsewhereEntries = (sb: Sandbox) => readdirSync(join(sb.tmp, "elsewhere")).sort();

function hostLocal(sb: Sandbox, command: string, id: string, dataDir: string, netns: string, cniVersion = "1.0.0") {
  const config: Record<string, any> = { ...baseConfig("host-local", sb.tmp, netns), cniVersion };
  config.ipam.dataDir = dataDir;
  return runNamed(sb, "host-local", { ...addEnv(netns, { CNI_CONTAINERID: id }), CNI_COMMAND: command }, config);
}

/** A sandbox with one container, whose netns path the cases hand the plugins. */
const withContainer = (fn: (sb: Sandbox, netns: string) => void) =>
  withSandbox("reliab", (sb) => fn(sb, sb.addContainer().path));

test("dataDir that is a symlink: refused, nothing created where it points", () =>
  withContainer((sb, netns) => {
    victim(sb, "keep", "x");
    const link = join(sb.tmp, "ipam-link");
    symlinkSync(join(sb.tmp, "elsewhere"), link);
    const r = hostLocal(sb, "ADD", "c1", link, netns);
    assert.is(r.code, 1, r.stdout);
    assert.is(r.json.code, 5, r.stdout);
    assert.match(r.json.msg, /symlink/);
    assert.equal(elsewhereEntries(sb), ["keep"], "nothing created behind the symlink");
    const status = hostLocal(sb, "STATUS", "c1", link, netns, "1.1.0");
    assert.is(status.json?.code, 50, `STATUS calls it unusable: ${status.stdout}`);
  }));

test("the network's directory replaced by a symlink: ADD and DEL refuse it, nothing behind it is touched", () =>
  withContainer((sb, netns) => {
    const dataDir = join(sb.tmp, "ipam");
    assert.is(hostLocal(sb, "ADD", "c1", dataDir, netns).code, 0);
    const v = victim(sb, "10.62.0.3", "c2\r\neth0");
    replaceWithSymlink(join(dataDir, HNET), join(sb.tmp, "elsewhere"));
    for (const [cmd, id] of [
      ["ADD", "c2"],
      ["DEL", "c2"],
    ]) {
      const r = hostLocal(sb, cmd!, id!, dataDir, netns);
      assert.is(r.code, 1, `${cmd}: ${r.stdout}`);
      assert.is(r.json.code, 5);
      assert.match(r.json.msg, /symlink/);
    }
    untouched(v, "reservation-shaped file behind the symlink");
    assert.equal(elsewhereEntries(sb), ["10.62.0.3"]);
  }));

test("a reservation replaced by a symlink: not released through it, not reused, its target untouched", () =>
  withContainer((sb, netns) => {
    const dataDir = join(sb.tmp, "ipam");
    const add = hostLocal(sb, "ADD", "c1", dataDir, netns);
    assert.is(add.json.ips[0].address, "10.62.0.2/24");
    // The target even holds what the reservation held, so a followed read would match the owner.
    const v = victim(sb, "passwd", "c1\r\neth0");
    replaceWithSymlink(join(dataDir, HNET, "10.62.0.2"), v.path);

    const del = hostLocal(sb, "DEL", "c1", dataDir, netns);
    assert.is(del.code, 0, del.stdout);
    untouched(v, "DEL");
    assert.ok(
      lstatSync(join(dataDir, HNET, "10.62.0.2")).isSymbolicLink(),
      "the planted link is left for an operator to look at",
    );

    const next = hostLocal(sb, "ADD", "c2", dataDir, netns);
    assert.is(next.code, 0, next.stdout);
    assert.is.not(next.json.ips[0].address, "10.62.0.2/24", "the address behind a symlink is not handed out");
    untouched(v, "ADD");
  }));

test("last_reserved_ip and the private index replaced by symlinks: ADD carries on without following them", () =>
  withContainer((sb, netns) => {
    const dataDir = join(sb.tmp, "ipam");
    assert.is(hostLocal(sb, "ADD", "c1", dataDir, netns).code, 0);
    const marker = victim(sb, "marker", "10.62.0.200");
    replaceWithSymlink(join(dataDir, HNET, "last_reserved_ip.0"), marker.path);
    const index = join(dataDir, ".tscni", HNET);
    for (const f of readdirSync(index)) replaceWithSymlink(join(index, f), join(sb.tmp, "elsewhere", `index-${f}`));

    const add = hostLocal(sb, "ADD", "c2", dataDir, netns);
    assert.is(add.code, 0, add.stdout);
    assert.is(add.json.ips[0].address, "10.62.0.3/24", "the marker behind the symlink was not read");
    untouched(marker, "last_reserved_ip target");
    assert.equal(elsewhereEntries(sb), ["marker"], "no index file written behind a symlink");
    assert.is(hostLocal(sb, "DEL", "c1", dataDir, netns).code, 0);
    assert.ok(!existsSync(join(dataDir, HNET, "10.62.0.2")), "c1 released through a rebuilt index");
  }));

test("the store lock replaced by a symlink: ADD refuses clearly, the target is not created or truncated", () =>
  withContainer((sb, netns) => {
    const dataDir = join(sb.tmp, "ipam");
    assert.is(hostLocal(sb, "ADD", "c1", dataDir, netns).code, 0);
    const v = victim(sb, "shadow", "secret");
    replaceWithSymlink(join(dataDir, HNET, "lock"), v.path);
    const r = hostLocal(sb, "ADD", "c2", dataDir, netns);
    assert.is(r.code, 1, r.stdout);
    assert.is(r.json.code, 5);
    assert.match(r.json.msg, /lock/);
    untouched(v, "lock target");
    replaceWithSymlink(join(dataDir, HNET, "lock"), join(sb.tmp, "elsewhere", "new-file"));
    assert.is(hostLocal(sb, "ADD", "c2", dataDir, netns).code, 1);
    assert.equal(elsewhereEntries(sb), ["shadow"], "a dangling lock symlink does not create its target");

    // A FIFO in its place must not stall the plugin on open.
    rmSync(join(dataDir, HNET, "lock"));
    sh(["mkfifo", join(dataDir, HNET, "lock")]);
    const fifo = runPlugin(
      sb,
      join(BIN, "host-local"),
      addEnv(netns, { CNI_CONTAINERID: "c3" }),
      baseConfig("host-local", sb.tmp, netns),
      { timeoutMs: 10_000, returnErrors: true },
    );
    assert.is(fifo.error, undefined, "host-local answered instead of waiting on the FIFO");
    assert.is(JSON.parse(fifo.stdout).code, 5, fifo.stdout);
  }));

test("tuning: saved originals and their temp file replaced by symlinks are not followed", () =>
  withContainer((sb, netns) => {
    const ctr = netns.split("/").pop()!;
    sb.inNs(ctr, ["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"]);
    const config = baseConfig("tuning", sb.tmp, netns);
    const env = addEnv(netns, { CNI_CONTAINERID: "t1" });
    const dataDir = config.dataDir as string;
    const temp = victim(sb, "temp-target", "do not overwrite");
    mkdirSync(dataDir, { recursive: true });
    symlinkSync(temp.path, join(dataDir, "t1_eth0.json.tmp"));
    const add = runNamed(sb, "tuning", env, config);
    untouched(temp, "temp file target");
    if (add.code !== 0) assert.is(add.json.code, 5, add.stdout);
    else assert.ok(lstatSync(join(dataDir, "t1_eth0.json")).isFile(), "the saved originals are a regular file");

    // Saved originals replaced by a link to a file of attacker-chosen values: DEL must not apply them.
    const forged = victim(
      sb,
      "forged.json",
      JSON.stringify({ mtu: 9000, sysctl: { "net.ipv4.conf.eth0.rp_filter": "2" } }),
    );
    rmSync(join(dataDir, "t1_eth0.json.tmp"), { force: true });
    if (existsSync(join(dataDir, "t1_eth0.json")))
      renameSync(join(dataDir, "t1_eth0.json"), join(sb.tmp, "saved.json"));
    symlinkSync(forged.path, join(dataDir, "t1_eth0.json"));
    const del = runNamed(sb, "tuning", { ...env, CNI_COMMAND: "DEL" }, config);
    assert.ok(del.code === 0 || [5].includes(del.json?.code), del.stdout);
    untouched(forged, "forged saved originals");
    const mtu = JSON.parse(sb.inNs(ctr, ["ip", "-j", "link", "show", "eth0"]).stdout)[0].mtu;
    assert.is.not(mtu, 9000, "values behind the symlink were not applied");

    // A FIFO planted as the saved originals must not block the plugin on open.
    rmSync(join(dataDir, "t1_eth0.json"), { force: true });
    sh(["mkfifo", join(dataDir, "t1_eth0.json")]);
    const blocked = runPlugin(sb, join(BIN, "tuning"), env, config, { timeoutMs: 10_000, returnErrors: true });
    assert.is(blocked.error, undefined, "tuning answered instead of waiting on the FIFO");
    assert.ok(blocked.code === 0 || JSON.parse(blocked.stdout).code === 5, blocked.stdout);
  }));

test.run();
