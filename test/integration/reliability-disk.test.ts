import { test } from "uvu";
import * as assert from "uvu/assert";
import { closeSync, mkdirSync, openSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { type Sandbox, sh, sandboxed } from "../helpers/sandbox.ts";
import { client, containerLinks, nodeState, standardNet, type Net } from "../helpers/reliability.ts";

const inSandbox = sandboxed(test, "reliab");

/**
 * host-local's dataDir on a full or read-only file system (a small tmpfs mounted under the
 * sandbox): the conflist ADD fails with a clear error, and leaves no reservation, no veth and no
 * rule; once there is room again the same ADD succeeds.
 */

/** A node with the standard conflist whose dataDir is a fresh tmpfs with `options`; one pod has come and gone. */
async function nodeOnTmpfs(sb: Sandbox, options: string, fn: (net: Net, mount: string) => Promise<void>) {
  const mount = join(sb.tmp, "ipam");
  mkdirSync(mount);
  sh(["mount", "-t", "tmpfs", "-o", options, "reliab-ipam", mount]);
  try {
    const net = standardNet(sb, { dataDir: mount });
    const warm = sb.addContainer();
    assert.is((await client(net, "add", "warm", warm.path)).code, 0);
    assert.is((await client(net, "del", "warm", warm.path)).code, 0);
    await fn(net, mount);
  } finally {
    sh(["umount", "-l", mount], { allowFailure: true });
  }
}

async function failsCleanly(net: Net, why: RegExp) {
  const baseline = nodeState(net);
  const ctr = net.sb.addContainer();
  const add = await client(net, "add", "c1", ctr.path);
  assert.is(add.code, 1, add.stdout);
  assert.match(add.stderr, why);
  assert.match(add.stderr, /\(CNI error code 5\)/, "an I/O failure");
  assert.not.match(add.stderr, /\n\s+at .+:\d+:\d+/, "no stack trace");
  const after = nodeState(net);
  assert.equal(after.reservations, baseline.reservations, "no partial reservation");
  assert.equal(after.links, baseline.links, "no veth left");
  assert.fixture(after.iptables, baseline.iptables, "no rule left");
  assert.fixture(after.nft, baseline.nft, "no nft rule left");
  assert.equal(containerLinks(net.sb, ctr.name), ["lo -"]);
  return ctr;
}

async function succeedsAgain(net: Net, ctr: { path: string }) {
  const add = await client(net, "add", "c1", ctr.path);
  assert.is(add.code, 0, `with room again: ${add.stderr}`);
  assert.is((await client(net, "del", "c1", ctr.path)).code, 0);
}

inSandbox("disk full (no free blocks): ADD fails clearly and leaves nothing; with room again it succeeds", (sb) =>
  nodeOnTmpfs(sb, "size=256k,mode=0755", async (net, mount) => {
    const filler = join(mount, "filler");
    const fd = openSync(filler, "w");
    try {
      const chunk = Buffer.alloc(4096, 1);
      for (;;) writeSync(fd, chunk);
    } catch (e) {
      assert.is((e as NodeJS.ErrnoException).code, "ENOSPC");
    } finally {
      closeSync(fd);
    }
    const ctr = await failsCleanly(net, /no space left on device/i);
    rmSync(filler);
    await succeedsAgain(net, ctr);
  }),
);

inSandbox("no inodes left: ADD fails clearly and leaves nothing; with inodes again it succeeds", (sb) =>
  nodeOnTmpfs(sb, "size=1m,nr_inodes=48,mode=0755", async (net, mount) => {
    const fill = join(mount, "fill");
    mkdirSync(fill);
    try {
      for (let i = 0; ; i++) writeFileSync(join(fill, String(i)), "");
    } catch (e) {
      assert.is((e as NodeJS.ErrnoException).code, "ENOSPC");
    }
    const ctr = await failsCleanly(net, /no space left on device/i);
    rmSync(fill, { recursive: true });
    await succeedsAgain(net, ctr);
  }),
);

inSandbox("read-only dataDir: ADD fails clearly and leaves nothing; read-write again it succeeds", (sb) =>
  nodeOnTmpfs(sb, "size=1m,mode=0755", async (net, mount) => {
    sh(["mount", "-o", "remount,ro", mount]);
    const ctr = await failsCleanly(net, /read-only file system/i);
    sh(["mount", "-o", "remount,rw", mount]);
    await succeedsAgain(net, ctr);
  }),
);

test.run();
