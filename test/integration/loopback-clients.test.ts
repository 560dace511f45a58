import { test } from "uvu";
import * as assert from "uvu/assert";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type Sandbox, sh, sandboxed } from "../helpers/sandbox.ts";
import { libcniClient, ourCnitool, runClient, writeNetconf, type ClientEnv } from "../helpers/libcni.ts";

const inSandbox = sandboxed(test, "lcli");

// A loopback-only network driven by real CNI clients, as a runtime drives /opt/cni/bin: the Go
// client built on Debian's libcni, and our own cnitool. Both must bring lo up in a fresh netns,
// keep libcni's result cache, CHECK and DEL through it, and understand each other's cache.

const CLIENTS: { name: string; path: () => string; versions: string[]; oldStatus: "success" | "refused" }[] = [
  // Debian's libcni (1.1.x) decodes results up to 1.0.0, so it cannot ADD a 1.1.0 list. STATUS
  // on a list older than 1.1.0: libcni answers success without running anything; our cnitool
  // refuses it, as it refuses CHECK below 0.4.0 (its documented choice).
  { name: "libcni", path: libcniClient, versions: ["0.3.1", "0.4.0", "1.0.0"], oldStatus: "success" },
  { name: "cnitool", path: ourCnitool, versions: ["0.3.1", "0.4.0", "1.0.0", "1.1.0"], oldStatus: "refused" },
];

const loList = (cniVersion: string, name = "lo-net") => ({ cniVersion, name, plugins: [{ type: "loopback" }] });

function loUp(ns: string): boolean {
  const [link] = JSON.parse(sh(["ip", "-n", ns, "-j", "link", "show", "dev", "lo"]).stdout) as { flags: string[] }[];
  return link!.flags.includes("UP");
}

/** upstream cnitool's container ID for a netns path. */
const containerIdFor = (netnsPath: string) =>
  `cnitool-${createHash("sha512").update(netnsPath).digest("hex").slice(0, 20)}`;

function setup(sb: Sandbox, files: Record<string, unknown>): ClientEnv {
  return { netconfPath: writeNetconf(sb, files), cacheDir: join(sb.tmp, "cache") };
}

function cacheFiles(env: ClientEnv): string[] {
  const dir = join(env.cacheDir, "results");
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}

for (const client of CLIENTS) {
  for (const version of client.versions) {
    inSandbox(
      `${client.name} ${version}: ADD brings lo up, CHECK follows it, DEL sets it down and clears the cache`,
      (sb) => {
        const ctr = sb.addContainer();
        const env = setup(sb, { "10-lo.conflist": loList(version) });
        const exe = client.path();
        assert.not.ok(loUp(ctr.name));

        const add = runClient(sb, exe, ["add", "lo-net", ctr.path], env);
        assert.is(add.code, 0, add.stderr);
        assert.ok(loUp(ctr.name), "lo is up");
        assert.is(add.json.cniVersion, version);
        assert.equal(add.json.interfaces, [{ name: "lo", mac: "00:00:00:00:00:00", sandbox: ctr.path }]);
        assert.equal(
          add.json.ips.map((ip: { address: string }) => ip.address),
          ["127.0.0.1/8", "::1/128"],
        );

        const id = containerIdFor(ctr.path);
        assert.equal(cacheFiles(env), [`lo-net-${id}-eth0`]);
        const cached = JSON.parse(readFileSync(join(env.cacheDir, "results", `lo-net-${id}-eth0`), "utf8"));
        assert.is(cached.kind, "cniCacheV1");
        assert.is(cached.containerId, id);
        assert.is(cached.networkName, "lo-net");
        assert.is(cached.ifName, "eth0");
        assert.is(cached.result.cniVersion, version);

        const check = runClient(sb, exe, ["check", "lo-net", ctr.path], env);
        if (version === "0.3.1") {
          // CHECK does not exist before 0.4.0: the client refuses it without running the plugin.
          assert.is(check.code, 1, check.stderr);
        } else {
          assert.is(check.code, 0, check.stderr);
          sh(["ip", "-n", ctr.name, "link", "set", "lo", "down"]);
          const bad = runClient(sb, exe, ["check", "lo-net", ctr.path], env);
          assert.is(bad.code, 1);
          assert.match(bad.stderr, /loopback interface is down/);
          sh(["ip", "-n", ctr.name, "link", "set", "lo", "up"]);
        }

        for (let i = 0; i < 2; i++) {
          const del = runClient(sb, exe, ["del", "lo-net", ctr.path], env);
          assert.is(del.code, 0, del.stderr);
          assert.not.ok(loUp(ctr.name), "lo is down");
          assert.equal(cacheFiles(env), [], "cache entry removed");
        }
        sh(["ip", "netns", "del", ctr.name]);
        const gone = runClient(sb, exe, ["del", "lo-net", ctr.path], env);
        assert.is(gone.code, 0, gone.stderr);
      },
    );
  }

  inSandbox(`${client.name}: a plugin's CNI error reaches the client with its code and nothing is cached`, (sb) => {
    const ctr = sb.addContainer();
    const env = setup(sb, { "10-lo.conflist": loList("9.9.9") });
    const r = runClient(sb, client.path(), ["add", "lo-net", ctr.path], env);
    assert.is(r.code, 1);
    assert.is(r.cniCode, 1, r.stderr);
    assert.match(r.stderr, /incompatible CNI versions/);
    assert.not.ok(loUp(ctr.name));
    assert.equal(cacheFiles(env), []);
  });

  inSandbox(
    `${client.name}: a single-plugin .conf is loaded as a one-plugin list; CNI_CONTAINERID and CNI_IFNAME are honoured`,
    (sb) => {
      const ctr = sb.addContainer();
      const env: ClientEnv = {
        ...setup(sb, { "20-lo.conf": { cniVersion: "0.4.0", name: "lo-single", type: "loopback" } }),
        containerId: "my-ctr",
        ifname: "net1",
      };
      const add = runClient(sb, client.path(), ["add", "lo-single", ctr.path], env);
      assert.is(add.code, 0, add.stderr);
      assert.ok(loUp(ctr.name));
      assert.equal(cacheFiles(env), ["lo-single-my-ctr-net1"]);
      const del = runClient(sb, client.path(), ["del", "lo-single", ctr.path], env);
      assert.is(del.code, 0, del.stderr);
      assert.equal(cacheFiles(env), []);
    },
  );

  inSandbox(`${client.name}: CNI_ARGS and CAP_ARGS are recorded in the cache as libcni does`, (sb) => {
    const ctr = sb.addContainer();
    const list = {
      cniVersion: "1.0.0",
      name: "lo-caps",
      plugins: [{ type: "loopback", capabilities: { portMappings: true } }],
    };
    const mappings = { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }] };
    const env: ClientEnv = {
      ...setup(sb, { "10-caps.conflist": list }),
      cniArgs: "IgnoreUnknown=1;K8S_POD_NAME=web",
      capArgs: mappings,
    };
    const add = runClient(sb, client.path(), ["add", "lo-caps", ctr.path], env);
    assert.is(add.code, 0, add.stderr);
    const [file] = cacheFiles(env);
    const cached = JSON.parse(readFileSync(join(env.cacheDir, "results", file!), "utf8"));
    assert.equal(cached.cniArgs, [
      ["IgnoreUnknown", "1"],
      ["K8S_POD_NAME", "web"],
    ]);
    assert.equal(cached.capabilityArgs, mappings);
    assert.equal(JSON.parse(Buffer.from(cached.config, "base64").toString("utf8")).name, "lo-caps");
    assert.is(runClient(sb, client.path(), ["del", "lo-caps", ctr.path], env).code, 0);
  });

  inSandbox(`${client.name}: STATUS and GC run the plugins of a 1.1.0 list, never those of an older list`, (sb) => {
    const missing = (cniVersion: string, name: string) => ({
      cniVersion,
      name,
      plugins: [{ type: "loopback" }, { type: "no-such-plugin" }],
    });
    const env = setup(sb, {
      "10-lo.conflist": loList("1.1.0"),
      "20-new.conflist": missing("1.1.0", "new-missing"),
      "30-old.conflist": missing("1.0.0", "old-missing"),
    });
    // An existing (empty) result cache, as on any node that has run a pod.
    mkdirSync(join(env.cacheDir, "results"), { recursive: true });
    for (const verb of ["status", "gc"]) {
      const ok = runClient(sb, client.path(), [verb, "lo-net"], env);
      assert.is(ok.code, 0, `${verb}: ${ok.stderr}`);
      // The missing plugin is looked for (and not found) only when the verb exists for the list.
      const bad = runClient(sb, client.path(), [verb, "new-missing"], env);
      assert.is(bad.code, 1, `${verb}: ${bad.stderr}`);
      assert.match(bad.stderr, /no-such-plugin/);
      const old = runClient(sb, client.path(), [verb, "old-missing"], env);
      assert.not.match(old.stderr, /no-such-plugin/, `${verb}: no plugin looked for`);
      if (verb === "status" && client.oldStatus === "refused") {
        assert.is(old.code, 1);
        assert.match(old.stderr, /does not support the STATUS command/);
      } else {
        assert.is(old.code, 0, `${verb}: ${old.stderr}`);
      }
    }
  });

  inSandbox(`${client.name}: GC deletes the network's stale cached attachments and keeps other networks'`, (sb) => {
    const gone = sb.addContainer();
    const alive = sb.addContainer();
    const other = sb.addContainer();
    const env = setup(sb, { "10-lo.conflist": loList("1.0.0"), "20-other.conflist": loList("1.0.0", "lo-other") });
    for (const [net, ctr] of [
      ["lo-net", gone],
      ["lo-net", alive],
      ["lo-other", other],
    ] as const) {
      assert.is(runClient(sb, client.path(), ["add", net, ctr.path], env).code, 0);
    }
    sh(["ip", "netns", "del", gone.name]);
    const gc = runClient(sb, client.path(), ["gc", "lo-net"], env);
    assert.is(gc.code, 0, gc.stderr);
    const entry = (net: string, ctr: { path: string }) => `${net}-${containerIdFor(ctr.path)}-eth0`;
    const left = cacheFiles(env);
    assert.not.ok(left.includes(entry("lo-net", gone)), "the attachment whose netns is gone was deleted");
    assert.ok(left.includes(entry("lo-other", other)), "another network's attachment is kept");
    assert.ok(loUp(other.name));
    if (client.name === "cnitool") {
      // Our cnitool counts attachments whose netns still exists as valid; upstream cnitool
      // (and so this libcni client) declares none valid and deletes them all.
      assert.ok(left.includes(entry("lo-net", alive)), "cnitool keeps the live attachment");
      assert.ok(loUp(alive.name));
    } else {
      assert.not.ok(left.includes(entry("lo-net", alive)), "libcni deletes every attachment of the network");
    }
  });

  inSandbox(`${client.name}: version <plugin> reports the supported versions`, (sb) => {
    const env = setup(sb, {});
    const r = runClient(sb, client.path(), ["version", "loopback"], env);
    assert.is(r.code, 0, r.stderr);
    assert.equal(r.json.supportedVersions, ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]);
  });
}

inSandbox("our cnitool and libcni share the result cache: ADD by one, CHECK and DEL by the other", (sb) => {
  for (const [adder, remover] of [
    [ourCnitool, libcniClient],
    [libcniClient, ourCnitool],
  ] as const) {
    const ctr = sb.addContainer();
    const env = setup(sb, { "10-lo.conflist": loList("1.0.0") });
    assert.is(runClient(sb, adder(), ["add", "lo-net", ctr.path], env).code, 0);
    assert.ok(loUp(ctr.name));
    const check = runClient(sb, remover(), ["check", "lo-net", ctr.path], env);
    assert.is(check.code, 0, check.stderr);
    const del = runClient(sb, remover(), ["del", "lo-net", ctr.path], env);
    assert.is(del.code, 0, del.stderr);
    assert.not.ok(loUp(ctr.name));
    assert.equal(cacheFiles(env), []);
  }
});

test.run();
