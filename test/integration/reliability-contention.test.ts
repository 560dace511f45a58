import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn } from "node:child_process";
import { mkdirSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { BIN, Sandbox, sandboxed } from "../helpers/sandbox.ts";
import { runPluginAsync, type PluginRun } from "../helpers/plugin-run.ts";
import {
  BRIDGE_NAME,
  NET,
  client,
  clientAsync,
  containerLinks,
  reservationFiles,
  standardNet,
  type Net,
} from "../helpers/reliability.ts";
import { iptablesRules, nodeLinks } from "../helpers/node-state.ts";
import { masqChainName } from "../../lib/net/masquerade/iptables.ts";

const inSandbox = sandboxed(test, "reliab");

/**
 * Contention for the xtables lock. Debian 12's `iptables` is iptables-nft, which takes no
 * user-space lock (the kernel serialises nf_tables transactions), so the lock only matters on nodes
 * whose iptables is the legacy backend: iptables-legacy-restore flocks /run/xtables.lock, or the
 * file XTABLES_LOCKFILE names. The tests give the plugins a PATH whose iptables tools are the legacy
 * ones and a lock file of their own (never the machine's), hold it from another process, and check:
 * held for a while, calls wait and succeed; held past the plugins' bound (10 s), the call fails with
 * CNI code 11 ("try again later") and nothing is left half-programmed. With iptables-nft the lock
 * does not apply and nothing waits for it.
 */

const LEGACY_TOOLS = ["iptables-restore", "iptables-save", "ip6tables-restore", "ip6tables-save"];

/** Whether this kernel and install run legacy iptables at all (probed once, in a throw-away netns). */
function legacyUsable(): boolean {
  const probe = new Sandbox("reliab");
  try {
    return probe.inNode(["iptables-legacy", "-t", "nat", "-S"], { allowFailure: true }).code === 0;
  } catch {
    return false;
  } finally {
    probe.cleanup();
  }
}
const legacyTest = legacyUsable() ? test : test.skip;
const legacyInSandbox = sandboxed(legacyTest, "reliab");

function legacyEnv(sb: Sandbox): Record<string, string> {
  const dir = join(sb.tmp, "legacy-bin");
  mkdirSync(dir, { recursive: true });
  for (const tool of LEGACY_TOOLS) symlinkSync("/usr/sbin/xtables-legacy-multi", join(dir, tool));
  return { PATH: `${dir}:${process.env.PATH}`, XTABLES_LOCKFILE: join(sb.tmp, "xtables.lock") };
}

/** Holds the lock file from another process: `for` seconds, or until release() when omitted. */
async function holdLock(file: string, seconds?: number) {
  // -o: only flock itself holds the lock (not the command), so killing the group releases it.
  const holder = spawn(
    "flock",
    ["-x", "-o", file, "sh", "-c", 'echo held; exec sleep "$1"', "sh", String(seconds ?? 3600)],
    { stdio: ["ignore", "pipe", "ignore"], detached: true },
  );
  const exited = new Promise<void>((resolve) => holder.on("exit", () => resolve()));
  await new Promise<void>((resolve, reject) => {
    holder.stdout!.on("data", (d: Buffer) => String(d).includes("held") && resolve());
    holder.on("exit", (code) => reject(new Error(`flock exited ${code} before holding the lock`)));
  });
  return {
    exited,
    get holding() {
      return holder.exitCode === null && holder.signalCode === null;
    },
    release() {
      try {
        process.kill(-holder.pid!, "SIGKILL");
      } catch {
        // already gone
      }
      return exited;
    },
  };
}

const legacyNat = (sb: Sandbox) => iptablesRules(sb, 4, { program: "iptables-legacy-save", table: "nat" }).join("\n");

const nftNat = (sb: Sandbox) => sb.inNode(["iptables-nft-save", "-t", "nat"]).stdout;

/** A legacy node that has already run one pod: the bridge and the shared chains exist. */
async function legacyNode(sb: Sandbox) {
  const env = legacyEnv(sb);
  const net = standardNet(sb);
  const warm = sb.addContainer();
  const add = await client(net, "add", "warm", warm.path, env);
  assert.is(add.code, 0, add.stderr);
  assert.match(legacyNat(sb), /CNI-HOSTPORT-DNAT/, "the legacy tables are in use");
  assert.is((await client(net, "del", "warm", warm.path, env)).code, 0);
  return { env, net, nat: legacyNat(sb), links: nodeLinks(sb) };
}

legacyInSandbox(
  "legacy iptables, lock held for a few seconds: the conflist ADD waits for it and succeeds",
  async (sb) => {
    const { env, net } = await legacyNode(sb);
    const ctr = sb.addContainer();
    const lock = await holdLock(env.XTABLES_LOCKFILE!, 3);
    const add = await client(net, "add", "c1", ctr.path, env);
    assert.is(add.code, 0, add.stderr);
    assert.not.ok(lock.holding, "ADD could only finish after the holder let go");
    const nat = legacyNat(sb);
    assert.match(nat, new RegExp(`^:${masqChainName(NET, "c1")} `, "m"), "masquerade chain programmed");
    assert.match(nat, /^:CNI-DN-/m, "port mapping chain programmed");
    assert.not.match(nftNat(sb), /CNI-/, "nothing went to the nf_tables backend");
    assert.is((await client(net, "del", "c1", ctr.path, env)).code, 0);
  },
);

legacyInSandbox(
  "legacy iptables, lock held past the bound: bridge and portmap fail with code 11 and leave nothing",
  async (sb) => {
    const node = await legacyNode(sb);
    const { env, net } = node;
    const a = sb.addContainer();
    const b = sb.addContainer();
    const lock = await holdLock(env.XTABLES_LOCKFILE!);
    try {
      // Both wait out the bound at the same time: the whole conflist for a, portmap alone for b.
      const chain = clientAsync(net, "add", "ca", a.path, env).done;
      const portmap = runPortmap(sb, net, b.path, env);
      const [ca, pm] = await Promise.all([chain, portmap]);
      assert.is(ca.code, 1, ca.stdout);
      assert.match(ca.stderr, /\(CNI error code 11\)/, ca.stderr);
      assert.match(ca.stderr, /try again later/, ca.stderr);
      assert.is(pm.code, 1, pm.stdout);
      const err = JSON.parse(pm.stdout);
      assert.is(err.code, 11, pm.stdout);
      assert.match(err.msg, /xtables lock .* try again later/);
      assert.ok(lock.holding, "the lock was held throughout");

      assert.fixture(legacyNat(sb), node.nat, "no rule half-programmed");
      assert.equal(nodeLinks(sb), node.links, "no veth left");
      assert.equal(reservationFiles(net.dataDir), [], "no reservation left");
      assert.equal(containerLinks(sb, a.name), ["lo -"], "nothing left in the container");
    } finally {
      await lock.release();
    }
    const again = await client(net, "add", "ca", a.path, env);
    assert.is(again.code, 0, `once the lock is free, the same ADD succeeds: ${again.stderr}`);
    assert.is((await client(net, "del", "ca", a.path, env)).code, 0);
  },
);

legacyInSandbox(
  "legacy iptables, lock file that cannot be opened: a hard error, not 'try again later', and nothing left",
  async (sb) => {
    const node = await legacyNode(sb);
    const env = { ...node.env, XTABLES_LOCKFILE: join(sb.tmp, "no-such-dir", "xtables.lock") };
    const ctr = sb.addContainer();
    const add = await client(node.net, "add", "c1", ctr.path, env);
    assert.is(add.code, 1);
    assert.match(add.stderr, /can't open lock file/, add.stderr);
    assert.not.match(add.stderr, /\(CNI error code 11\)/, "retrying would not help");
    assert.fixture(legacyNat(sb), node.nat);
    assert.equal(nodeLinks(sb), node.links);
    assert.equal(reservationFiles(node.net.dataDir), []);
    assert.equal(containerLinks(sb, ctr.name), ["lo -"]);
  },
);

inSandbox(
  "iptables-nft (the default here): a held xtables lock does not apply, ADD does not wait for it",
  async (sb) => {
    const net = standardNet(sb);
    const ctr = sb.addContainer();
    const lockFile = join(sb.tmp, "xtables.lock");
    const lock = await holdLock(lockFile);
    try {
      const add = await client(net, "add", "c1", ctr.path, { XTABLES_LOCKFILE: lockFile });
      assert.is(add.code, 0, add.stderr);
      assert.ok(lock.holding, "ADD finished while the lock was still held");
      assert.match(nftNat(sb), /CNI-DN-/);
    } finally {
      await lock.release();
    }
    assert.is((await client(net, "del", "c1", ctr.path)).code, 0);
  },
);

/** portmap alone, as the last plugin of a chain would be called, for a container at 10.61.0.99. */
function runPortmap(sb: Sandbox, net: Net, netns: string, env: Record<string, string>): Promise<PluginRun> {
  const conf = {
    cniVersion: "1.0.0",
    name: NET,
    type: "portmap",
    snat: true,
    runtimeConfig: {
      portMappings: net.client.capArgs && (net.client.capArgs as { portMappings: unknown }).portMappings,
    },
    prevResult: {
      cniVersion: "1.0.0",
      interfaces: [{ name: BRIDGE_NAME }, { name: "veth0" }, { name: "eth0", sandbox: netns }],
      ips: [{ address: "10.61.0.99/16", gateway: "10.61.0.1", interface: 2 }],
    },
  };
  return runPluginAsync(
    sb,
    join(BIN, "portmap"),
    { ...env, CNI_COMMAND: "ADD", CNI_CONTAINERID: "cb", CNI_IFNAME: "eth0", CNI_NETNS: netns, CNI_PATH: BIN },
    conf,
  );
}

test.run();
