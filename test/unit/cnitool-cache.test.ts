import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync, chmodSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  cachedAttachments,
  cacheFilePath,
  encodeCacheEntry,
  readCachedResult,
  removeCachedResult,
  writeCachedResult,
} from "../../lib/libcni/cache.ts";
import { convertResult, decodePluginResult } from "../../lib/libcni/results.ts";
import type { RuntimeConf } from "../../lib/libcni/runtime.ts";

// The result cache must be libcni's, byte for byte, so runtimes and cnitool can share it.

const listBytes = Buffer.from('{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"loopback"}]}\n');
const list = { name: "net", bytes: listBytes };
const rt: RuntimeConf = {
  containerId: "cnitool-81e3a71f81544407538e",
  netns: "/var/run/netns/demo",
  ifName: "eth0",
  args: [
    ["IgnoreUnknown", "1"],
    ["K8S_POD_NAME", "p"],
  ],
  capabilityArgs: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }] },
};
const result = {
  cniVersion: "1.0.0",
  interfaces: [{ name: "lo", mac: "00:00:00:00:00:00", sandbox: "/var/run/netns/demo" }],
  ips: [{ interface: 0, address: "127.0.0.1/8" }],
};

function withCache(fn: (dir: string) => void | Promise<void>) {
  return async () => {
    const dir = mkdtempSync(join(tmpdir(), "cnitool-cache-"));
    try {
      await fn(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

test("the entry is libcni's cachedInfo: field order, base64 config, sorted result keys", () => {
  // Field order and encodings of libcni's cachedInfo struct (api.go), as json.Marshal writes it.
  const expected =
    '{"kind":"cniCacheV1","containerId":"cnitool-81e3a71f81544407538e",' +
    `"config":"${listBytes.toString("base64")}",` +
    '"ifName":"eth0","networkName":"net","netns":"/var/run/netns/demo",' +
    '"cniArgs":[["IgnoreUnknown","1"],["K8S_POD_NAME","p"]],' +
    '"capabilityArgs":{"portMappings":[{"containerPort":80,"hostPort":8080,"protocol":"tcp"}]},' +
    '"result":{"cniVersion":"1.0.0","interfaces":[{"mac":"00:00:00:00:00:00","name":"lo","sandbox":"/var/run/netns/demo"}],"ips":[{"address":"127.0.0.1/8","interface":0}]}}';
  assert.is(encodeCacheEntry(list, rt, result), expected);
});

test("empty netns, CNI_ARGS and capability arguments are omitted, as omitempty does", () => {
  const bare = encodeCacheEntry(list, { ...rt, netns: "", args: [], capabilityArgs: {} }, result);
  const o = JSON.parse(bare);
  assert.equal(Object.keys(o), ["kind", "containerId", "config", "ifName", "networkName", "result"]);
  assert.equal(Object.keys(JSON.parse(encodeCacheEntry(list, { ...rt, capabilityArgs: undefined }, result))), [
    "kind",
    "containerId",
    "config",
    "ifName",
    "networkName",
    "netns",
    "cniArgs",
    "result",
  ]);
});

test(
  "the entry lives at results/<network>-<containerID>-<ifname>, directory 0700, file 0600",
  withCache((dir) => {
    const cacheDir = join(dir, "cni");
    writeCachedResult(cacheDir, list, rt, result);
    const file = join(cacheDir, "results", "net-cnitool-81e3a71f81544407538e-eth0");
    assert.is(cacheFilePath(cacheDir, "net", rt), file);
    assert.is(statSync(file).mode & 0o777, 0o600);
    assert.is(statSync(join(cacheDir, "results")).mode & 0o777, 0o700);
    assert.is(statSync(cacheDir).mode & 0o777, 0o700);
    assert.is(readFileSync(file, "utf8"), encodeCacheEntry(list, rt, result));
    chmodSync(file, 0o644);
    writeCachedResult(cacheDir, list, rt, result);
    assert.is(statSync(file).mode & 0o777, 0o600, "a rewritten entry is 0600 again");
  }),
);

test(
  "reading back: the stored result; nothing when there is no entry; a bare result from an old cache",
  withCache((dir) => {
    assert.is(readCachedResult(dir, "net", rt), undefined);
    writeCachedResult(dir, list, rt, result);
    assert.equal(readCachedResult(dir, "net", rt), result);
    writeFileSync(cacheFilePath(dir, "net", rt), JSON.stringify({ cniVersion: "0.4.0", ips: [] }));
    assert.equal(readCachedResult(dir, "net", rt), { cniVersion: "0.4.0", ips: [] });
    writeFileSync(cacheFilePath(dir, "net", rt), "{garbage");
    assert.throws(() => readCachedResult(dir, "net", rt), /failed to read cached result for network "net"/);
    removeCachedResult(dir, "net", rt);
    assert.not.ok(existsSync(cacheFilePath(dir, "net", rt)));
    removeCachedResult(dir, "net", rt); // already gone: fine
  }),
);

test("a cache path needs all three parts", () => {
  assert.throws(() => cacheFilePath("/c", "", rt), /cache file path requires network name/);
  assert.throws(() => cacheFilePath("/c", "n", { containerId: "", ifName: "eth0" }), /container ID/);
});

test(
  "attachments are listed from valid cniCacheV1 entries only, in filename order",
  withCache((dir) => {
    assert.equal(cachedAttachments(dir), [], "no results directory is an empty cache");
    writeCachedResult(dir, { name: "net", bytes: listBytes }, { ...rt, containerId: "b" }, result);
    writeCachedResult(
      dir,
      { name: "net", bytes: listBytes },
      { ...rt, containerId: "a", args: [], capabilityArgs: undefined },
      result,
    );
    writeCachedResult(dir, { name: "other", bytes: listBytes }, rt, result);
    mkdirSync(join(dir, "results"), { recursive: true });
    writeFileSync(join(dir, "results", "junk"), "not json");
    writeFileSync(join(dir, "results", "legacy"), JSON.stringify({ cniVersion: "0.4.0" }));
    const got = cachedAttachments(dir)!;
    assert.equal(
      got.map((a) => [a.network, a.containerId, a.ifName]),
      [
        ["net", "a", "eth0"],
        ["net", "b", "eth0"],
        ["other", rt.containerId, "eth0"],
      ],
    );
    assert.equal(got[1]!.cniArgs, rt.args);
    assert.equal(got[1]!.capabilityArgs, rt.capabilityArgs);
    assert.is(got[1]!.netns, "/var/run/netns/demo");
  }),
);

test("a plugin's result is decoded in its own version, or in the request's when it names none", async () => {
  const v1 = await decodePluginResult(
    JSON.stringify({ cniVersion: "1.0.0", ips: [{ address: "10.0.0.2/24", extra: 1 }], unknown: true }),
    "1.0.0",
  );
  assert.equal(v1, { cniVersion: "1.0.0", ips: [{ address: "10.0.0.2/24" }] });
  const assumed = await decodePluginResult(JSON.stringify({ ips: [{ address: "10.0.0.2/24" }] }), "0.4.0");
  assert.equal(assumed, { cniVersion: "0.4.0", ips: [{ version: "4", address: "10.0.0.2/24" }], dns: {} });
  // A 0.2.0 result without an address (loopback) is still a result: Go prints {"cniVersion","dns":{}}.
  assert.equal(
    await decodePluginResult(JSON.stringify({ cniVersion: "0.2.0", interfaces: [{ name: "lo" }] }), "0.2.0"),
    { cniVersion: "0.2.0", dns: {} },
  );
  try {
    await decodePluginResult("", "1.0.0");
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, /failed to unmarshal raw result/);
  }
  try {
    await decodePluginResult('{"cniVersion":"7.0.0"}', "1.0.0");
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, /unsupported CNI result version "7.0.0"/);
  }
});

test("a cached result is converted to the list's version before plugins see it", async () => {
  const v04 = await convertResult(result, "0.4.0");
  assert.equal(v04, {
    cniVersion: "0.4.0",
    interfaces: result.interfaces,
    ips: [{ version: "4", interface: 0, address: "127.0.0.1/8" }],
    dns: {},
  });
  assert.equal(await convertResult(v04, "1.0.0"), result);
  try {
    await convertResult({ cniVersion: "1.0.0", interfaces: [{ name: "lo" }] }, "0.2.0");
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, /failed to convert cached result to config version "0.2.0"/);
  }
});

test.run();
