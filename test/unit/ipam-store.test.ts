import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import {
  existsSync,
  linkSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { asCniError, type CniError, Code } from "../../lib/cni/errors.ts";
import { allocateAll } from "../../plugins/host-local/allocator.ts";
import { formatIP, parseIP } from "../../lib/ip/address.ts";
import { canonicalizeRangeSet } from "../../plugins/host-local/range.ts";
import { DiskStore } from "../../plugins/host-local/store.ts";
import { lockExclusive } from "../../lib/kernel/flock.ts";

const SETS = [canonicalizeRangeSet([{ subnet: "10.5.0.0/24" }]), canonicalizeRangeSet([{ subnet: "fd00:5::/64" }])];

function fresh() {
  const dataDir = mkdtempSync(join(tmpdir(), "tscni-ipam-store-"));
  const store = DiskStore.open(dataDir, "net", { create: true })!;
  return {
    dataDir,
    store,
    dir: join(dataDir, "net"),
    cleanup: () => rmSync(dataDir, { recursive: true, force: true }),
  };
}

const add = (store: DiskStore, id: string, ifname = "eth0") =>
  store.locked((tx) => allocateAll(SETS, [], id, tx.forAttachment(id, ifname)).map((a) => a.ip));
const held = (store: DiskStore, id: string, ifname = "eth0") => store.locked((tx) => tx.heldBy(id, ifname).sort());
const reservations = (dir: string) =>
  readdirSync(dir)
    .filter((n) => parseIP(n))
    .sort();

test("on-disk format is the reference's: <ip> holds '<id>\\r\\n<ifname>', last_reserved_ip.N, lock", async () => {
  const { store, dir, dataDir, cleanup } = fresh();
  try {
    await add(store, "abc");
    assert.equal(readdirSync(dir).sort(), [
      "10.5.0.2",
      "fd00:5::2",
      "last_reserved_ip.0",
      "last_reserved_ip.1",
      "lock",
    ]);
    assert.is(readFileSync(join(dir, "10.5.0.2"), "latin1"), "abc\r\neth0");
    assert.is(readFileSync(join(dir, "last_reserved_ip.1"), "latin1"), "fd00:5::2");
    // No temp file is left anywhere, and our private index lives outside the network directory.
    assert.equal(
      readdirSync(join(dataDir, ".tscni", "net")).filter((n) => n.includes("tmp")),
      [],
    );
  } finally {
    cleanup();
  }
});

test("release by attachment; legacy container-ID-only files are released when nothing else matches", async () => {
  const { store, dir, cleanup } = fresh();
  try {
    await add(store, "a");
    await add(store, "a", "eth1");
    await add(store, "b");
    await store.locked((tx) => tx.releaseAttachment("a", "eth0"));
    assert.equal(await held(store, "a", "eth1"), ["10.5.0.3", "fd00:5::3"]);
    assert.equal(await held(store, "b"), ["10.5.0.4", "fd00:5::4"]);
    writeFileSync(join(dir, "10.5.0.99"), "old\n"); // written by a very old plugin
    assert.equal(await held(store, "old"), ["10.5.0.99"]);
    await store.locked((tx) => tx.releaseAttachment("old", "eth0"));
    assert.not.ok(existsSync(join(dir, "10.5.0.99")));
    await store.locked((tx) => tx.releaseAttachment("nobody", "eth0")); // nothing held: fine
  } finally {
    cleanup();
  }
});

test("reservations made behind our back are found, however soon after our own change", async () => {
  const { store, dir, cleanup } = fresh();
  try {
    for (let i = 0; i < 30; i++) {
      await add(store, `ours${i}`);
      writeFileSync(join(dir, `10.5.0.${200 + i}`), `ref${i}\r\neth0`);
      assert.equal(await held(store, `ref${i}`), [`10.5.0.${200 + i}`], `round ${i}`);
    }
  } finally {
    cleanup();
  }
});

test("lookups use the index, not a scan: a change with a forged stamp goes unseen", async () => {
  const { store, dir, dataDir, cleanup } = fresh();
  try {
    await add(store, "a");
    writeFileSync(join(dir, "10.5.0.250"), "sneaky\r\neth0");
    // Put back the exact mtime we stamped (GNU touch takes nanoseconds), as if nothing had changed.
    const stamped = BigInt(
      readFileSync(join(dataDir, ".tscni", "net", "state"), "utf8")
        .trim()
        .split(" | ")[2]!,
    );
    const sec = stamped / 1_000_000_000n;
    const ns = String(stamped % 1_000_000_000n).padStart(9, "0");
    assert.is(spawnSync("touch", ["-m", "-d", `@${sec}.${ns}`, dir]).status, 0);
    assert.equal(await held(store, "sneaky"), []);
    // The same kind of change without the forgery is seen.
    writeFileSync(join(dir, "10.5.0.251"), "seen\r\neth0");
    assert.equal(await held(store, "seen"), ["10.5.0.251"]);
    assert.equal(await held(store, "sneaky"), ["10.5.0.250"], "and the rebuild picks up the earlier one too");
  } finally {
    cleanup();
  }
});

test("reservations released behind our back are not reported", async () => {
  const { store, dir, cleanup } = fresh();
  try {
    await add(store, "a");
    rmSync(join(dir, "10.5.0.2"));
    writeFileSync(join(dir, "10.5.0.2"), "b\r\neth0"); // and taken by someone else
    assert.equal(await held(store, "a"), ["fd00:5::2"]);
    assert.equal(await held(store, "b"), ["10.5.0.2"]);
  } finally {
    cleanup();
  }
});

test("a temp file left by a killed writer is discarded without touching the reservation it became", async () => {
  const { store, dir, dataDir, cleanup } = fresh();
  try {
    await add(store, "a");
    const tmp = join(dataDir, ".tscni", "net", "tmp.reservation");
    linkSync(join(dir, "10.5.0.2"), tmp); // killed between link(2) and unlink(2)
    await add(store, "b");
    assert.not.ok(existsSync(tmp));
    assert.is(readFileSync(join(dir, "10.5.0.2"), "latin1"), "a\r\neth0");
    assert.is(readFileSync(join(dir, "10.5.0.3"), "latin1"), "b\r\neth0");
  } finally {
    cleanup();
  }
});

test("the store follows no symlink: network directory, address files, lock", async () => {
  const { dataDir, dir, store, cleanup } = fresh();
  const outside = mkdtempSync(join(tmpdir(), "tscni-ipam-outside-"));
  try {
    symlinkSync(outside, join(dataDir, "escape"));
    assert.throws(() => DiskStore.open(dataDir, "escape", { create: true }), /not a directory/);
    assert.throws(() => DiskStore.open(dataDir, "escape", { create: false }), /not a directory/);
    assert.throws(() => DiskStore.open(dataDir, "..", { create: true }), /escape/);
    // A symlink planted at an address name counts as taken and its target is never written.
    writeFileSync(join(outside, "victim"), "keep");
    symlinkSync(join(outside, "victim"), join(dir, "10.5.0.2"));
    assert.equal((await add(store, "a")).map(formatIP), ["10.5.0.3", "fd00:5::2"]);
    assert.is(readFileSync(join(outside, "victim"), "utf8"), "keep");
    const other = DiskStore.open(dataDir, "n2", { create: true })!;
    symlinkSync(join(outside, "victim"), join(dataDir, "n2", "lock"));
    const err = await other.locked(() => undefined).catch((e: unknown) => e);
    // A kernel-layer error, which reaches the runtime as an I/O failure.
    const cni = asCniError(err);
    assert.ok(cni.code === Code.IOFailure && cni.message.includes("lock"), String(err));
  } finally {
    cleanup();
    rmSync(outside, { recursive: true, force: true });
  }
});

test("GC releases every reservation of an attachment not in the valid list, empty ones too", async () => {
  const { store, dir, cleanup } = fresh();
  try {
    await add(store, "keep");
    await add(store, "gone");
    writeFileSync(join(dir, "10.5.0.77"), ""); // an older plugin killed between create and write
    writeFileSync(join(dir, "10.5.0.78"), "legacy");
    writeFileSync(join(dir, "notes.txt"), "not a reservation");
    const released = await store.locked((tx) =>
      tx.collectGarbage([
        { containerID: "keep", ifname: "eth0" },
        { containerID: "legacy", ifname: "eth0" },
      ]),
    );
    assert.equal(released.sort(), ["10.5.0.3", "10.5.0.77", "fd00:5::3"]);
    assert.equal(reservations(dir), ["10.5.0.2", "10.5.0.78", "fd00:5::2"]);
    assert.ok(existsSync(join(dir, "notes.txt")));
    assert.equal(await held(store, "gone"), []);
    await store.locked((tx) => tx.collectGarbage([]));
    assert.equal(reservations(dir), []);
  } finally {
    cleanup();
  }
});

test("STATUS: usable dataDir (even not yet created) passes; a file or a symlinked network dir give code 50", () => {
  const { dataDir, cleanup } = fresh();
  try {
    DiskStore.checkUsable(join(dataDir, "not", "yet"), "net");
    DiskStore.checkUsable(dataDir, "net");
    writeFileSync(join(dataDir, "file"), "");
    assert.throws(
      () => DiskStore.checkUsable(join(dataDir, "file"), "net"),
      (e: CniError) => e.code === 50,
    );
    assert.throws(
      () => DiskStore.checkUsable(join(dataDir, "file", "sub"), "net"),
      (e: CniError) => e.code === 50,
    );
    symlinkSync(tmpdir(), join(dataDir, "linked"));
    assert.throws(
      () => DiskStore.checkUsable(dataDir, "linked"),
      (e: CniError) => e.code === 50 && e.message.includes("linked"),
    );
  } finally {
    cleanup();
  }
});

test("the lock is a real flock(2): while we hold it, util-linux flock -n cannot take it", async () => {
  const { dir, cleanup } = fresh();
  try {
    const path = join(dir, "lock");
    const held = await lockExclusive(path);
    assert.is(spawnSync("flock", ["-n", "-x", path, "true"]).status, 1);
    held.release();
    assert.is(spawnSync("flock", ["-n", "-x", path, "true"]).status, 0);
  } finally {
    cleanup();
  }
});

test.run();
