import { test } from "uvu";
import * as assert from "uvu/assert";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Sandbox, sh } from "../helpers/sandbox.ts";
import { libcniClient, ourCnitool, runClient, writeNetconf, type ClientEnv } from "../helpers/libcni.ts";

// A loopback-only network driven by real CNI clients, as a runtime drives /opt/cni/bin: the Go
// client built on Debian's libcni, and our own cnitool. Both must bring lo up in a fresh netns,
// keep libcni's result cache, CHECK and DEL through it, and understand each other's cache.

const CLIENTS: { name: string; path: () => string; versions: string[] }[] = [
  // Debian's libcni (1.1.x) decodes results up to 1.0.0, so it cannot ADD a 1.1.0 list.
  { name: "libcni", path: libcniClient, versions: ["0.3.1", "0.4.0", "1.0.0"] },
  { name: "cnitool", path: ourCnitool, versions: ["0.3.1", "0.4.0", "1.0.0", "1.1.0"] },
];

const loList = (cniVersion: string, name = "lo-net") => ({ cniVersion, name, plugins: [{ type: "loopback" }] });

function loUp(ns: string): boolean {
  const [link] = JSON.parse(sh(["ip", "-n", ns, "-j", "link", "show", "dev", "lo"]).stdout) as { flags: string[] }[];
  return link!.flags.includes("UP");
}

/** upstream cnitool's container ID for a netns path. */
const containerIdFor = (netnsPath: string) => "cnitool-" + createHash("sha512").update(netnsPath).digest("hex").slice(0, 20);

function setup(sb: Sandbox, files: Record<string, unknown>): ClientEnv {
  return { netconfPath: writeNetconf(sb, files), cacheDir: join(sb.tmp, "cache") };
}

function cacheFiles(env: ClientEnv): string[] {
  const dir = join(env.cacheDir, "results");
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}

function inSandbox(name: string, fn: (sb: Sandbox) => void) {
  test(name, () => {
    const sb = new Sandbox("lcli");
    try {
      fn(sb);
    } finally {
      sb.cleanup();
    }
  });
}

for (const client of CLIENTS) {
  for (const version of client.versions) {
    inSandbox(`${client.name} ${version}: ADD brings lo up, CHECK follows it, DEL sets it down and clears the cache`, (sb) => {
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
    });
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

  inSandbox(`${client.name}: a single-plugin .conf is loaded as a one-plugin list; CNI_CONTAINERID and CNI_IFNAME are honoured`, (sb) => {
    const ctr = sb.addContainer();
    const env: ClientEnv = { ...setup(sb, { "20-lo.conf": { cniVersion: "0.4.0", name: "lo-single", type: "loopback" } }), containerId: "my-ctr", ifname: "net1" };
    const add = runClient(sb, client.path(), ["add", "lo-single", ctr.path], env);
    assert.is(add.code, 0, add.stderr);
    assert.ok(loUp(ctr.name));
    assert.equal(cacheFiles(env), ["lo-single-my-ctr-net1"]);
    const del = runClient(sb, client.path(), ["del", "lo-single", ctr.path], env);
    assert.is(del.code, 0, del.stderr);
    assert.equal(cacheFiles(env), []);
  });

  inSandbox(`${client.name}: CNI_ARGS and CAP_ARGS are recorded in the cache as libcni does`, (sb) => {
    const ctr = sb.addContainer();
    const list = { cniVersion: "1.0.0", name: "lo-caps", plugins: [{ type: "loopback", capabilities: { portMappings: true } }] };
    const mappings = { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }] };
    const env: ClientEnv = { ...setup(sb, { "10-caps.conflist": list }), cniArgs: "IgnoreUnknown=1;K8S_POD_NAME=web", capArgs: mappings };
    const add = runClient(sb, client.path(), ["add", "lo-caps", ctr.path], env);
    assert.is(add.code, 0, add.stderr);
    const [file] = cacheFiles(env);
    const cached = JSON.parse(readFileSync(join(env.cacheDir, "results", file!), "utf8"));
    assert.equal(cached.cniArgs, [["IgnoreUnknown", "1"], ["K8S_POD_NAME", "web"]]);
    assert.equal(cached.capabilityArgs, mappings);
    assert.equal(JSON.parse(Buffer.from(cached.config, "base64").toString("utf8")).name, "lo-caps");
    assert.is(runClient(sb, client.path(), ["del", "lo-caps", ctr.path], env).code, 0);
  });

  inSandbox(`${client.name}: STATUS and GC on a 1.1.0 list; STATUS refused for a 1.0.0 list`, (sb) => {
    const env = setup(sb, { "10-lo.conflist": loList("1.1.0"), "20-old.conflist": loList("1.0.0", "lo-old") });
    const status = runClient(sb, client.path(), ["status", "lo-net"], env);
    assert.is(status.code, 0, status.stderr);
    const gc = runClient(sb, client.path(), ["gc", "lo-net"], env);
    assert.is(gc.code, 0, gc.stderr);
    const old = runClient(sb, client.path(), ["status", "lo-old"], env);
    assert.is.not(old.code, 0);
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
