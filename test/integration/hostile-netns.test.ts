import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { sh, sandboxed } from "../helpers/sandbox.ts";
import { client, nodeState, reservationFiles, standardNet } from "../helpers/reliability.ts";
import { CRASH, PLUGIN_NAMES, addEnv, baseConfig, pool, residue, runNamedAsync, tripwire } from "../helpers/hostile.ts";

const inSandbox = sandboxed(test, "reliab");

/**
 * CNI_NETNS that is not a container's network namespace: a regular file, a directory, a device, a
 * FIFO, a namespace of another kind, and above all the node's own network namespace under any name
 * (/proc/self/ns/net as the plugin sees it, the node's /var/run/netns entry, a symlink to it). Each
 * is refused for ADD and CHECK by every plugin before any tool runs, and the node's own namespace
 * for DEL too, so a plugin never configures or tears down the node as if it were a container. DEL
 * with a path that holds no namespace (a stale pin) releases the node side without entering it.
 */

inSandbox(
  "CNI_NETNS that is not a container network namespace: refused by every plugin for ADD and CHECK (the node itself for DEL too), before any effect",
  async (sb) => {
    const ctr = sb.addContainer();
    const file = join(sb.tmp, "not-a-netns");
    writeFileSync(file, "");
    const dir = join(sb.tmp, "a-directory");
    mkdirSync(dir);
    const fifo = join(sb.tmp, "a-fifo");
    sh(["mkfifo", fifo]);
    const nodeLink = join(sb.tmp, "node-netns-link");
    symlinkSync(`/var/run/netns/${sb.node}`, nodeLink);
    const paths: [string, string, RegExp, "stale" | "node"][] = [
      ["a regular file", file, /not a network namespace/, "stale"],
      ["a directory", dir, /not a network namespace/, "stale"],
      ["/dev/null", "/dev/null", /not a network namespace/, "stale"],
      ["a FIFO", fifo, /not a network namespace/, "stale"],
      ["the node itself (/proc/self/ns/net)", "/proc/self/ns/net", /should not be the same/, "node"],
      ["the node itself (its netns entry)", `/var/run/netns/${sb.node}`, /should not be the same/, "node"],
      ["the node itself (a symlink to it)", nodeLink, /should not be the same/, "node"],
      ["the node itself (/proc/thread-self/ns/net)", "/proc/thread-self/ns/net", /should not be the same/, "node"],
      ["a mount namespace", "/proc/self/ns/mnt", /not a network namespace/, "stale"],
    ];
    const trip = tripwire(sb);
    const before = residue(sb);

    const runs: { tag: string; why: RegExp; run: () => ReturnType<typeof runNamedAsync> }[] = [];
    for (const plugin of PLUGIN_NAMES) {
      for (const command of ["ADD", "CHECK", "DEL"]) {
        for (const [what, path, why, kind] of paths) {
          if (command === "DEL" && kind === "stale") continue;
          const config = baseConfig(plugin, sb.tmp, ctr.path);
          runs.push({
            tag: `${plugin} ${command} with ${what}`,
            why,
            run: () => runNamedAsync(sb, plugin, { ...addEnv(path), CNI_COMMAND: command }, config, trip.path),
          });
        }
      }
    }
    const results = await pool(
      runs.map((r) => r.run),
      4,
    );
    const problems: string[] = [];
    results.forEach((r, i) => {
      const { tag, why } = runs[i]!;
      if (r.code !== 1 || !r.json) problems.push(`${tag}: exit ${r.code} ${r.stdout}`);
      else if (![4, 8].includes(r.json.code) || !why.test(r.json.msg))
        problems.push(`${tag}: code ${r.json.code}: ${r.json.msg}`);
      else if (CRASH.test(r.stderr)) problems.push(`${tag}: ${r.stderr}`);
    });
    assert.equal(problems, [], `${problems.length} of ${runs.length} not refused properly`);
    assert.equal(trip.calls(), [], "no tool ran");
    const after = residue(sb);
    assert.equal(after.links, before.links);
    assert.equal(after.files, before.files);
    assert.fixture(after.iptables, before.iptables);
    assert.fixture(after.nft, before.nft);

    // DEL with a path that holds no namespace succeeds without entering or changing it.
    const stale = paths.filter(([, , , kind]) => kind === "stale");
    const dels = await pool(
      PLUGIN_NAMES.flatMap((plugin) =>
        stale.map(
          ([, path]) =>
            () =>
              runNamedAsync(sb, plugin, { ...addEnv(path), CNI_COMMAND: "DEL" }, baseConfig(plugin, sb.tmp, ctr.path)),
        ),
      ),
      4,
    );
    const delProblems = dels.flatMap((r, i) =>
      r.code === 0 && r.stdout === ""
        ? []
        : [
            `${PLUGIN_NAMES[Math.floor(i / stale.length)]} DEL with ${stale[i % stale.length]![0]}: exit ${r.code} ${r.stdout}`,
          ],
    );
    assert.equal(delProblems, []);
    const afterDel = residue(sb);
    assert.equal(afterDel.links, before.links);
    assert.equal(afterDel.files, before.files);
    assert.fixture(afterDel.iptables, before.iptables);
  },
);

inSandbox(
  "CNI_NETNS that does not exist: ADD and CHECK refuse it; DEL of a gone namespace cleans the node side",
  async (sb) => {
    const missing = "/var/run/netns/tc-reliab-no-such-ns";
    for (const plugin of PLUGIN_NAMES) {
      for (const command of ["ADD", "CHECK"]) {
        const r = await runNamedAsync(
          sb,
          plugin,
          { ...addEnv(missing), CNI_COMMAND: command },
          baseConfig(plugin, sb.tmp, missing),
        );
        assert.is(r.code, 1, `${plugin} ${command}`);
        assert.is(r.json?.code, 4, `${plugin} ${command}: ${r.stdout}`);
        assert.match(r.json.msg, /does not exist/);
      }
    }
    // A real attachment whose namespace then vanishes: DEL still releases what the node holds.
    const ctr = sb.addContainer();
    const config = baseConfig("bridge", sb.tmp, ctr.path);
    const add = await runNamedAsync(sb, "bridge", addEnv(ctr.path), config);
    assert.is(add.code, 0, add.stdout);
    sh(["ip", "netns", "del", ctr.name]);
    const del = await runNamedAsync(sb, "bridge", { ...addEnv(ctr.path), CNI_COMMAND: "DEL" }, config);
    assert.is(del.code, 0, del.stdout);
    assert.not.match(residue(sb).iptables, /CNI-[0-9a-f]{24}/, "masquerade removed");
    assert.not.ok(
      residue(sb).links.some((l) => l.includes(" veth")),
      "the node end went with the namespace",
    );
  },
);

inSandbox(
  "DEL with a stale CNI_NETNS (the pin unmounted, an empty file left): the node side is released, ADD and CHECK still refuse it",
  async (sb) => {
    const net = standardNet(sb);
    const ctr = sb.addContainer();
    // A warm-up attachment, so the bridge and the shared chains (portmap's, firewall's) are in the baseline.
    const warm = await client(net, "add", "warm", ctr.path);
    assert.is(warm.code, 0, warm.stderr);
    const warmFw = { ...baseConfig("firewall", sb.tmp, ctr.path), prevResult: JSON.parse(warm.stdout) };
    for (const command of ["ADD", "DEL"])
      assert.is(
        (
          await runNamedAsync(
            sb,
            "firewall",
            { ...addEnv(ctr.path, { CNI_CONTAINERID: "warm" }), CNI_COMMAND: command },
            warmFw,
          )
        ).code,
        0,
      );
    assert.is((await client(net, "del", "warm", ctr.path)).code, 0);
    const baseline = nodeState(net);

    const add = await client(net, "add", "stale", ctr.path);
    assert.is(add.code, 0, add.stderr);
    const result = JSON.parse(add.stdout);
    const fwConfig = { ...baseConfig("firewall", sb.tmp, ctr.path), prevResult: result };
    const fw = await runNamedAsync(sb, "firewall", addEnv(ctr.path, { CNI_CONTAINERID: "stale" }), fwConfig);
    assert.is(fw.code, 0, fw.stdout);
    assert.equal(reservationFiles(net.dataDir).length, 1);
    assert.match(nodeState(net).iptables, /CNI-DN-/, "port mapping programmed");
    const fwRules = nodeState(net).iptables;

    // The namespace goes away under the pin: the path is an empty regular file now.
    sh(["umount", ctr.path]);
    for (const command of ["ADD", "CHECK"]) {
      const r = await runNamedAsync(
        sb,
        "bridge",
        { ...addEnv(ctr.path, { CNI_CONTAINERID: "stale" }), CNI_COMMAND: command },
        { ...baseConfig("bridge", sb.tmp, ctr.path), prevResult: result },
      );
      assert.is(r.json?.code, 4, `${command}: ${r.stdout}`);
      assert.match(r.json.msg, /is not a network namespace/);
    }
    const fwDel = await runNamedAsync(
      sb,
      "firewall",
      { ...addEnv(ctr.path, { CNI_CONTAINERID: "stale" }), CNI_COMMAND: "DEL" },
      fwConfig,
    );
    assert.is(fwDel.code, 0, fwDel.stdout);
    assert.not.equal(nodeState(net).iptables, fwRules, "firewall rules removed");
    const del = await client(net, "del", "stale", ctr.path);
    assert.is(del.code, 0, del.stderr);
    const after = nodeState(net);
    assert.equal(after.reservations, baseline.reservations, "reservation released");
    assert.fixture(after.iptables, baseline.iptables);
    assert.fixture(after.nft, baseline.nft);
    assert.equal(after.links, baseline.links, "no veth left");
  },
);

test.run();
