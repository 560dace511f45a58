import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadNetwork, loadNetworkConf, networkConfFromBytes } from "../../lib/libcni/conf.ts";

// Network configuration loading as libcni does it: which file wins, how versions are selected,
// what is refused and with which words.

function confDir(files: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), "cnitool-conf-"));
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(join(dir, name, ".."), { recursive: true });
    writeFileSync(join(dir, name), typeof content === "string" ? content : JSON.stringify(content));
  }
  return dir;
}

function withDir(files: Record<string, unknown>, fn: (dir: string) => void) {
  const dir = confDir(files);
  try {
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const list = (name: string, extra: Record<string, unknown> = {}) => ({
  cniVersion: "1.0.0",
  name,
  plugins: [{ type: "loopback" }],
  ...extra,
});
const parse = (o: unknown) => networkConfFromBytes(Buffer.from(JSON.stringify(o)));

test("a .conflist is preferred to a .conf of the same name", () => {
  withDir(
    {
      "00-single.conf": { cniVersion: "0.4.0", name: "net", type: "single" },
      "50-list.conflist": list("net", { plugins: [{ type: "fromlist" }] }),
    },
    (dir) => {
      const l = loadNetworkConf(dir, "net");
      assert.equal(
        l.plugins.map((p) => p.type),
        ["fromlist"],
      );
    },
  );
});

test("conflists are searched in filename order and the first name match wins", () => {
  withDir(
    {
      "20-b.conflist": list("net", { plugins: [{ type: "second" }] }),
      "10-a.conflist": list("net", { plugins: [{ type: "first" }] }),
    },
    (dir) => {
      assert.equal(loadNetworkConf(dir, "net").plugins[0]!.type, "first");
    },
  );
});

test("the list keeps the file's exact bytes for the cache", () => {
  const text = '{ "cniVersion": "1.0.0", "name": "net",\n  "plugins": [ { "type": "loopback" } ] }\n';
  withDir({ "10.conflist": text }, (dir) => {
    assert.is(loadNetworkConf(dir, "net").bytes.toString(), text);
  });
});

test("a single-plugin .conf/.json is up-converted to a one-plugin list, with Go's sorted bytes", () => {
  withDir({ "10-x.json": { type: "loopback", name: "single", cniVersion: "0.3.1", b: "<&>" } }, (dir) => {
    const l = loadNetworkConf(dir, "single");
    assert.is(l.name, "single");
    assert.is(l.cniVersion, "0.3.1");
    assert.equal(
      l.plugins.map((p) => p.type),
      ["loopback"],
    );
    assert.is(
      l.bytes.toString(),
      '{"cniVersion":"0.3.1","name":"single","plugins":[{"b":"\\u003c\\u0026\\u003e","cniVersion":"0.3.1","name":"single","type":"loopback"}]}',
    );
  });
});

test("not found, and no configuration at all, are told apart", () => {
  withDir({ "10.conflist": list("other") }, (dir) => {
    assert.throws(
      () => loadNetworkConf(dir, "net"),
      (e: Error) => e.message === `no net configuration with name "net" in ${dir}`,
    );
  });
  withDir({}, (dir) => {
    assert.throws(
      () => loadNetworkConf(dir, "net"),
      (e: Error) => e.message === `no net configurations found in ${dir}`,
    );
  });
  assert.throws(
    () => loadNetworkConf("/nonexistent-cnitool-dir", "net"),
    /no net configurations found in \/nonexistent-cnitool-dir/,
  );
});

test("a broken conflist stops the search, as in libcni", () => {
  withDir({ "05-broken.conflist": "{not json", "10.conflist": list("net") }, (dir) => {
    assert.throws(() => loadNetworkConf(dir, "net"), /error parsing configuration list/);
  });
});

test("plugins in <dir>/<name>/*.conf are appended unless loadOnlyInlinedPlugins", () => {
  const files = {
    "10.conflist": list("net"),
    "net/20-extra.conf": { type: "extra" },
    "net/10-first.conf": { type: "first" },
    "net/ignored.json": { type: "no" },
  };
  withDir(files, (dir) => {
    assert.equal(
      loadNetworkConf(dir, "net").plugins.map((p) => p.type),
      ["loopback", "first", "extra"],
    );
  });
  withDir({ ...files, "10.conflist": list("net", { loadOnlyInlinedPlugins: true }) }, (dir) => {
    assert.equal(
      loadNetworkConf(dir, "net").plugins.map((p) => p.type),
      ["loopback"],
    );
  });
  withDir({ "10.conflist": { cniVersion: "1.0.0", name: "net" }, "net/10.conf": { type: "only" } }, (dir) => {
    assert.equal(
      loadNetworkConf(dir, "net").plugins.map((p) => p.type),
      ["only"],
    );
  });
  withDir({ "10.conflist": { cniVersion: "1.0.0", name: "net" } }, (dir) => {
    assert.throws(() => loadNetworkConf(dir, "net"), /no plugin configs found/);
  });
});

test("a path to a file is loaded directly", () => {
  withDir(
    { "a/x.conflist": list("fromfile"), "b/y.conf": { cniVersion: "1.0.0", name: "single", type: "loopback" } },
    (dir) => {
      assert.is(loadNetwork(join(dir, "a/x.conflist"), "/nonexistent").name, "fromfile");
      const l = loadNetwork(join(dir, "b/y.conf"), "/nonexistent");
      assert.is(l.name, "single");
      assert.is(l.plugins.length, 1);
    },
  );
});

test("loadNetwork names the network and the directory when it fails", () => {
  withDir({}, (dir) => {
    assert.throws(
      () => loadNetwork("net", dir),
      (e: Error) => e.message === `loading network "net" from ${dir}: no net configurations found in ${dir}`,
    );
  });
});

test("cniVersions: the highest version this implementation knows wins, cniVersion included", () => {
  assert.is(parse(list("n", { cniVersion: "0.4.0", cniVersions: ["0.3.1", "1.0.0", "2.0.0"] })).cniVersion, "1.0.0");
  assert.is(parse(list("n", { cniVersion: "1.1.0", cniVersions: ["0.3.1", "1.0.0"] })).cniVersion, "1.1.0");
  assert.is(parse(list("n", { cniVersion: undefined, cniVersions: ["0.10.0", "0.4.0"] })).cniVersion, "0.10.0");
  assert.is(parse(list("n", { cniVersion: "3.0.0", cniVersions: ["4.0.0"] })).cniVersion, "3.0.0");
  assert.throws(() => parse(list("n", { cniVersions: ["one"] })), /invalid cniVersions entry one at index 0/);
  assert.throws(() => parse(list("n", { cniVersions: "1.0.0" })), /invalid type for cniVersions/);
  assert.is(parse({ name: "n", plugins: [{ type: "t" }] }).cniVersion, "");
});

test("disableCheck / disableGC accept booleans and the strings true/false in any case", () => {
  const l = parse(list("n", { disableCheck: "TRUE", disableGC: true }));
  assert.ok(l.disableCheck);
  assert.ok(l.disableGC);
  assert.not.ok(parse(list("n", { disableCheck: "false" })).disableCheck);
  assert.throws(() => parse(list("n", { disableCheck: "yes" })), /invalid value "yes" for disableCheck/);
  assert.throws(() => parse(list("n", { disableGC: 1 })), /invalid type float64 for disableGC/);
});

test("malformed lists are refused with libcni's words", () => {
  assert.throws(
    () => parse({ cniVersion: "1.0.0", plugins: [{ type: "t" }] }),
    /error parsing configuration list: no name/,
  );
  assert.throws(() => parse({ name: 5, plugins: [] }), /invalid name type float64/);
  assert.throws(() => parse({ name: "n", cniVersion: 1 }), /invalid cniVersion type float64/);
  assert.throws(() => parse({ name: "n", plugins: [] }), /no plugins in list/);
  assert.throws(() => parse({ name: "n", plugins: {} }), /invalid 'plugins' type map\[string\]interface \{\}/);
  assert.throws(() => parse([1]), /cannot unmarshal array/);
  assert.throws(
    () => parse({ name: "n", plugins: [{ type: "a" }, { name: "x" }] }),
    (e: Error) => e.message === "failed to parse plugin config 1: error parsing configuration: missing 'type'",
  );
  assert.throws(
    () => parse({ name: "n", plugins: [{ type: "a", capabilities: { mac: "yes" } }] }),
    /capabilities of type bool/,
  );
});

test("a plugin's capabilities are read as booleans", () => {
  const l = parse({ name: "n", plugins: [{ type: "portmap", capabilities: { portMappings: true, ips: false } }] });
  assert.equal(l.plugins[0]!.capabilities, { portMappings: true, ips: false });
});

test.run();
