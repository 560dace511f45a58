import { test } from "uvu";
import * as assert from "uvu/assert";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BIN, type Sandbox, sh, sandboxed } from "../helpers/sandbox.ts";
import { ourCnitool, writeNetconf } from "../helpers/libcni.ts";

const inSandbox = sandboxed(test, "cnitool");

// Our cnitool driving real chains inside a sandbox node namespace: the loopback plugin of the build
// under test, plus a recording fixture plugin that logs every request it gets (verb, CNI_* variables
// and stdin) and passes prevResult on with an interface of its own. The records show what a libcni
// runtime would have handed each plugin: order, prevResult, runtimeConfig, cached state.

const RECORDER = `#!${process.execPath}
const fs = require("node:fs");
const stdin = fs.readFileSync(0, "utf8");
const cmd = process.env.CNI_COMMAND;
if (cmd === "VERSION") {
  process.stdout.write(JSON.stringify({ cniVersion: "1.1.0", supportedVersions: ["0.3.1", "0.4.0", "1.0.0", "1.1.0"] }));
  process.exit(0);
}
const conf = JSON.parse(stdin);
const env = {};
for (const k of ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH"]) env[k] = process.env[k];
fs.appendFileSync(conf.record, JSON.stringify({ tag: conf.tag, cmd, env, conf }) + "\\n");
if (conf.failOn === cmd) {
  process.stdout.write(JSON.stringify({ cniVersion: conf.cniVersion, code: conf.failCode, msg: "boom from " + conf.tag, details: "on purpose" }));
  process.exit(1);
}
if (cmd === "ADD") {
  const prev = conf.prevResult || { cniVersion: conf.cniVersion };
  const interfaces = (prev.interfaces || []).concat([{ name: "fake-" + conf.tag }]);
  process.stdout.write(JSON.stringify({ ...prev, cniVersion: conf.cniVersion, interfaces }));
}
`;

interface Record_ {
  tag: string;
  cmd: string;
  env: Record<string, string>;
  conf: any;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  json: any;
  cniCode?: number;
}

class Fixture {
  readonly pluginDir: string;
  readonly recordFile: string;
  readonly netconfPath: string;
  readonly cacheDir: string;
  readonly env: Record<string, string>;

  constructor(
    readonly sb: Sandbox,
    files: Record<string, unknown>,
  ) {
    this.pluginDir = join(sb.tmp, "plugins");
    mkdirSync(this.pluginDir, { recursive: true });
    writeFileSync(join(this.pluginDir, "recorder"), RECORDER);
    chmodSync(join(this.pluginDir, "recorder"), 0o755);
    this.recordFile = join(sb.tmp, "records.jsonl");
    this.netconfPath = writeNetconf(sb, files);
    this.cacheDir = join(sb.tmp, "cache");
    this.env = {
      PATH: process.env.PATH!,
      CNI_PATH: `${BIN}:${this.pluginDir}`,
      NETCONFPATH: this.netconfPath,
      CNI_CACHE_DIR: this.cacheDir,
    };
  }

  /** Runs our cnitool in the node namespace; `vars` adds to (or, with "", blanks) the environment. */
  run(argv: string[], vars: Record<string, string> = {}): Run {
    const res = this.sb.inNode([ourCnitool(), ...argv], { env: { ...this.env, ...vars }, allowFailure: true });
    let json: any;
    try {
      json = res.stdout.trim() ? JSON.parse(res.stdout) : undefined;
    } catch {
      json = undefined;
    }
    const m = /\(CNI error code (\d+)\)\n$/.exec(res.stderr);
    return { ...res, json, cniCode: m ? Number(m[1]) : undefined };
  }

  /** Records since the last call. */
  records(): Record_[] {
    if (!existsSync(this.recordFile)) return [];
    const lines = readFileSync(this.recordFile, "utf8").split("\n").filter(Boolean);
    writeFileSync(this.recordFile, "");
    return lines.map((l) => JSON.parse(l));
  }

  cacheFiles(): string[] {
    const dir = join(this.cacheDir, "results");
    return existsSync(dir) ? readdirSync(dir).sort() : [];
  }

  cacheEntry(name: string): any {
    return JSON.parse(readFileSync(join(this.cacheDir, "results", name), "utf8"));
  }
}

const recorder = (sb: Sandbox, tag: string, extra: Record<string, unknown> = {}) => ({
  type: "recorder",
  tag,
  record: join(sb.tmp, "records.jsonl"),
  ...extra,
});

function loUp(ns: string): boolean {
  const [link] = JSON.parse(sh(["ip", "-n", ns, "-j", "link", "show", "dev", "lo"]).stdout) as { flags: string[] }[];
  return link!.flags.includes("UP");
}

inSandbox(
  "loopback-only conflist: ADD brings lo up and caches the result 0600 in a 0700 directory; CHECK passes; DEL sets lo down and drops the entry",
  (sb) => {
    const ctr = sb.addContainer();
    const f = new Fixture(sb, {
      "10-lo.conflist": { cniVersion: "1.0.0", name: "lo-net", plugins: [{ type: "loopback" }] },
    });
    const add = f.run(["add", "lo-net", ctr.path]);
    assert.is(add.code, 0, add.stderr);
    assert.ok(loUp(ctr.name));
    assert.equal(add.json, {
      cniVersion: "1.0.0",
      interfaces: [{ name: "lo", mac: "00:00:00:00:00:00", sandbox: ctr.path }],
      ips: [
        { interface: 0, address: "127.0.0.1/8" },
        { interface: 0, address: "::1/128" },
      ],
    });
    const [entry] = f.cacheFiles();
    assert.match(entry!, /^lo-net-cnitool-[0-9a-f]{20}-eth0$/);
    assert.is(statSync(join(f.cacheDir, "results", entry!)).mode & 0o777, 0o600);
    assert.is(statSync(join(f.cacheDir, "results")).mode & 0o777, 0o700);
    const cached = f.cacheEntry(entry!);
    assert.equal(cached.result, add.json);
    assert.is(cached.netns, ctr.path);
    assert.is(
      Buffer.from(cached.config, "base64").toString(),
      readFileSync(join(f.netconfPath, "10-lo.conflist"), "utf8"),
    );

    const check = f.run(["check", "lo-net", ctr.path]);
    assert.is(check.code, 0, check.stderr);
    assert.is(check.stdout, "");

    const del = f.run(["del", "lo-net", ctr.path]);
    assert.is(del.code, 0, del.stderr);
    assert.not.ok(loUp(ctr.name));
    assert.equal(f.cacheFiles(), []);
  },
);

inSandbox(
  "a chain threads prevResult forward, injects only declared capabilities, CHECKs with the cached result and DELs in reverse",
  (sb) => {
    const ctr = sb.addContainer();
    const list = {
      cniVersion: "1.0.0",
      name: "chain",
      plugins: [
        { type: "loopback" },
        recorder(sb, "a", { capabilities: { portMappings: true, mac: false } }),
        recorder(sb, "b", { cniVersion: "0.1.0", name: "ignored" }),
      ],
    };
    const f = new Fixture(sb, { "10-chain.conflist": list });
    const capArgs = {
      portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }],
      mac: "c2:11:22:33:44:55",
      bandwidth: { ingressRate: 1 },
    };
    const extra = { CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAME=web", CAP_ARGS: JSON.stringify(capArgs) };

    const add = f.run(["add", "chain", ctr.path], extra);
    assert.is(add.code, 0, add.stderr);
    assert.ok(loUp(ctr.name), "loopback ran first");
    const loResult = {
      cniVersion: "1.0.0",
      interfaces: [{ name: "lo", mac: "00:00:00:00:00:00", sandbox: ctr.path }],
      ips: add.json.ips,
    };
    const [a, b, ...none] = f.records();
    assert.equal(none, []);
    assert.is(a!.tag, "a");
    assert.is(a!.cmd, "ADD");
    assert.equal(a!.conf.prevResult, loResult, "a gets loopback's result");
    assert.equal(
      a!.conf.runtimeConfig,
      { portMappings: capArgs.portMappings },
      "only the declared, supplied capability",
    );
    assert.is(b!.tag, "b");
    assert.equal(
      b!.conf.prevResult.interfaces.map((i: { name: string }) => i.name),
      ["lo", "fake-a"],
      "b gets a's result",
    );
    assert.not.ok("runtimeConfig" in b!.conf);
    assert.is(b!.conf.name, "chain", "the list's name wins over the entry's");
    assert.is(b!.conf.cniVersion, "1.0.0", "the list's version wins over the entry's");
    for (const r of [a!, b!]) {
      assert.match(r.env.CNI_CONTAINERID!, /^cnitool-[0-9a-f]{20}$/);
      assert.is(r.env.CNI_NETNS, ctr.path);
      assert.is(r.env.CNI_IFNAME, "eth0");
      assert.is(r.env.CNI_ARGS, "IgnoreUnknown=1;K8S_POD_NAME=web");
      assert.is(r.env.CNI_PATH, f.env.CNI_PATH);
    }
    assert.equal(
      add.json.interfaces.map((i: { name: string }) => i.name),
      ["lo", "fake-a", "fake-b"],
      "the last plugin's result is printed",
    );
    const [entry] = f.cacheFiles();
    assert.equal(f.cacheEntry(entry!).result, add.json);

    const check = f.run(["check", "chain", ctr.path], extra);
    assert.is(check.code, 0, check.stderr);
    const checks = f.records();
    assert.equal(
      checks.map((r) => `${r.cmd} ${r.tag}`),
      ["CHECK a", "CHECK b"],
    );
    for (const r of checks) assert.equal(r.conf.prevResult, add.json, "CHECK gets the cached final result");

    const del = f.run(["del", "chain", ctr.path], extra);
    assert.is(del.code, 0, del.stderr);
    const dels = f.records();
    assert.equal(
      dels.map((r) => `${r.cmd} ${r.tag}`),
      ["DEL b", "DEL a"],
      "reverse order",
    );
    for (const r of dels) assert.equal(r.conf.prevResult, add.json);
    assert.equal(dels[1]!.conf.runtimeConfig, { portMappings: capArgs.portMappings });
    assert.not.ok(loUp(ctr.name), "loopback ran last");
    assert.equal(f.cacheFiles(), []);

    const again = f.run(["del", "chain", ctr.path], extra);
    assert.is(again.code, 0, again.stderr);
    assert.not.ok("prevResult" in f.records()[0]!.conf, "no cache entry: no prevResult");
  },
);

inSandbox("DEL: no prevResult before 0.4.0; an unreadable cache entry is dropped and DEL goes on", (sb) => {
  const ctr = sb.addContainer();
  const f = new Fixture(sb, {
    "10-old.conflist": { cniVersion: "0.3.1", name: "old", plugins: [recorder(sb, "old")] },
    "20-new.conflist": { cniVersion: "0.4.0", name: "new", plugins: [recorder(sb, "new")] },
  });
  assert.is(f.run(["add", "old", ctr.path]).code, 0);
  assert.is(f.run(["del", "old", ctr.path]).code, 0);
  const [, oldDel] = f.records();
  assert.is(oldDel!.cmd, "DEL");
  assert.not.ok("prevResult" in oldDel!.conf);
  assert.equal(f.cacheFiles(), []);

  assert.is(f.run(["add", "new", ctr.path]).code, 0);
  const [entry] = f.cacheFiles();
  writeFileSync(join(f.cacheDir, "results", entry!), "{broken");
  f.records();
  const del = f.run(["del", "new", ctr.path]);
  assert.is(del.code, 0, del.stderr);
  const [newDel] = f.records();
  assert.not.ok("prevResult" in newDel!.conf);
  assert.equal(f.cacheFiles(), []);
});

inSandbox(
  "a plugin's error stops the chain and reaches stderr with its CNI code; a failed ADD caches nothing",
  (sb) => {
    const ctr = sb.addContainer();
    const f = new Fixture(sb, {
      "10-failadd.conflist": {
        cniVersion: "1.0.0",
        name: "failadd",
        plugins: [recorder(sb, "a"), recorder(sb, "b", { failOn: "ADD", failCode: 7 }), recorder(sb, "c")],
      },
      "20-faildel.conflist": {
        cniVersion: "1.0.0",
        name: "faildel",
        plugins: [recorder(sb, "a"), recorder(sb, "b", { failOn: "DEL", failCode: 11 })],
      },
    });
    const add = f.run(["add", "failadd", ctr.path]);
    assert.is(add.code, 1);
    assert.is(add.stdout, "");
    assert.is(add.stderr, 'cnitool: plugin type="recorder" failed (add): boom from b; on purpose (CNI error code 7)\n');
    assert.equal(
      f.records().map((r) => r.tag),
      ["a", "b"],
    );
    assert.equal(f.cacheFiles(), []);

    assert.is(f.run(["add", "faildel", ctr.path]).code, 0);
    f.records();
    const del = f.run(["del", "faildel", ctr.path]);
    assert.is(del.code, 1);
    assert.is(del.cniCode, 11, del.stderr);
    assert.match(del.stderr, /failed \(delete\): boom from b/);
    assert.equal(
      f.records().map((r) => `${r.cmd} ${r.tag}`),
      ["DEL b"],
      "the first DEL error aborts",
    );
    assert.equal(f.cacheFiles().length, 1, "the entry stays for a retry");
  },
);

inSandbox("bad input: exit status and message, nothing run, nothing cached", (sb) => {
  const ctr = sb.addContainer();
  const f = new Fixture(sb, {
    "10-rec.conflist": { cniVersion: "1.0.0", name: "rec", plugins: [recorder(sb, "r")] },
    "20-badname.conflist": { cniVersion: "1.0.0", name: "bad name", plugins: [recorder(sb, "r")] },
  });
  // A list that fails to parse stops libcni's directory search, so it lives elsewhere, named by path.
  const notype = join(
    writeNetconf(
      sb,
      { "notype.conflist": { cniVersion: "1.0.0", name: "notype", plugins: [{ tag: "x" }] } },
      "broken.d",
    ),
    "notype.conflist",
  );
  const cases: { argv: string[]; vars?: Record<string, string>; code: number; stderr: RegExp; cni?: number }[] = [
    {
      argv: ["add", "missing", ctr.path],
      code: 1,
      stderr: /cnitool: loading network "missing" from .*: no net configuration with name "missing"/,
    },
    {
      argv: ["add", "rec", ctr.path],
      vars: { CAP_ARGS: '{"portMappings": [' },
      code: 1,
      stderr: /CAP_ARGS is not a JSON object/,
    },
    {
      argv: ["add", "rec", ctr.path],
      vars: { CAP_ARGS: "[1]" },
      code: 1,
      stderr: /CAP_ARGS is not a JSON object: got an array/,
    },
    {
      argv: ["add", "rec", ctr.path],
      vars: { CNI_ARGS: "novalue" },
      code: 1,
      stderr: /CNI_ARGS: "novalue" is not of the form KEY=VALUE/,
    },
    {
      argv: ["add", "rec", ctr.path],
      vars: { CNI_IFNAME: "much-too-long-ifname" },
      code: 1,
      stderr: /interface name is too long/,
      cni: 4,
    },
    { argv: ["add", "rec", ctr.path], vars: { CNI_IFNAME: "a/b" }, code: 1, stderr: /CNI_IFNAME/, cni: 4 },
    {
      argv: ["add", "rec", ctr.path],
      vars: { CNI_CONTAINERID: "../escape" },
      code: 1,
      stderr: /invalid characters in containerID/,
      cni: 4,
    },
    {
      argv: ["del", "rec", ctr.path],
      vars: { CNI_CONTAINERID: "../escape" },
      code: 1,
      stderr: /invalid characters in containerID/,
      cni: 4,
    },
    { argv: ["add", "bad name", ctr.path], code: 1, stderr: /invalid characters found in network name/, cni: 7 },
    {
      argv: ["add", notype, ctr.path],
      code: 1,
      stderr: /loading .*notype.conflist: failed to parse plugin config 0: error parsing configuration: missing 'type'/,
    },
    { argv: ["add", "rec", ctr.path], vars: { CNI_PATH: "" }, code: 1, stderr: /CNI_PATH is not set/ },
    {
      argv: ["add", "rec", ctr.path],
      vars: { CNI_PATH: f.netconfPath },
      code: 1,
      stderr: /failed to find plugin "recorder"/,
    },
    { argv: ["check", "rec"], code: 2, stderr: /check needs exactly two arguments[\s\S]*usage:/ },
    { argv: ["frob", "rec", ctr.path], code: 2, stderr: /unknown command "frob"/ },
    { argv: [], code: 2, stderr: /no command given/ },
  ];
  for (const c of cases) {
    const what = `${c.argv.join(" ")} ${JSON.stringify(c.vars ?? {})}`;
    const res = f.run(c.argv, c.vars);
    assert.is(res.code, c.code, `${what}: ${res.stderr}`);
    assert.match(res.stderr, c.stderr, what);
    if (c.code === 1) assert.match(res.stderr, /^cnitool: /);
    assert.is(res.cniCode, c.cni, what);
    assert.is(res.stdout, "");
    assert.equal(f.records(), [], `${what}: no plugin ran`);
    assert.equal(f.cacheFiles(), []);
  }
  assert.not.ok(existsSync(join(f.cacheDir, "escape-eth0")));
});

inSandbox("CHECK is refused before 0.4.0 and skipped with disableCheck", (sb) => {
  const ctr = sb.addContainer();
  const f = new Fixture(sb, {
    "10-old.conflist": { cniVersion: "0.3.1", name: "old", plugins: [recorder(sb, "r")] },
    "20-off.conflist": {
      cniVersion: "1.0.0",
      name: "off",
      disableCheck: "true",
      plugins: [recorder(sb, "r", { failOn: "CHECK", failCode: 5 })],
    },
  });
  const old = f.run(["check", "old", ctr.path]);
  assert.is(old.code, 1);
  assert.match(old.stderr, /configuration version "0.3.1" does not support the CHECK command/);
  const off = f.run(["check", "off", ctr.path]);
  assert.is(off.code, 0, off.stderr);
  assert.equal(f.records(), []);
});

inSandbox(
  "GC: stale attachments (netns gone) get a full DEL with their cached arguments; plugins get GC with the live ones",
  (sb) => {
    const live = sb.addContainer();
    const stale = sb.addContainer();
    const f = new Fixture(sb, {
      "10-gc.conflist": { cniVersion: "1.1.0", name: "gcnet", plugins: [recorder(sb, "a"), recorder(sb, "b")] },
      "20-other.conflist": { cniVersion: "1.1.0", name: "other", plugins: [recorder(sb, "o")] },
    });
    assert.is(f.run(["add", "gcnet", live.path]).code, 0);
    assert.is(f.run(["add", "gcnet", stale.path], { CNI_ARGS: "K8S_POD_NAME=stale", CAP_ARGS: '{"x":1}' }).code, 0);
    assert.is(f.run(["add", "other", stale.path]).code, 0);
    const ids = Object.fromEntries(f.records().map((r) => [r.env.CNI_NETNS, r.env.CNI_CONTAINERID]));
    sh(["ip", "netns", "del", stale.name]);

    const gc = f.run(["gc", "gcnet"]);
    assert.is(gc.code, 0, gc.stderr);
    const recs = f.records();
    assert.equal(
      recs.map((r) => `${r.cmd} ${r.tag}`),
      ["DEL b", "DEL a", "GC a", "GC b"],
    );
    for (const r of recs.slice(0, 2)) {
      assert.is(r.env.CNI_CONTAINERID, ids[stale.path]);
      assert.is(r.env.CNI_NETNS, stale.path);
      assert.is(r.env.CNI_ARGS, "K8S_POD_NAME=stale", "cached CNI_ARGS are replayed");
    }
    for (const r of recs.slice(2)) {
      const valid = [{ containerID: ids[live.path], ifname: "eth0" }];
      assert.equal(r.conf["cni.dev/valid-attachments"], valid);
      assert.equal(r.conf["cni.dev/attachments"], valid);
      assert.equal([r.env.CNI_CONTAINERID, r.env.CNI_NETNS, r.env.CNI_IFNAME, r.env.CNI_ARGS], ["", "", "", ""]);
      assert.not.ok("prevResult" in r.conf);
    }
    assert.equal(
      f.cacheFiles(),
      [`gcnet-${ids[live.path]}-eth0`, `other-${ids[stale.path]}-eth0`].sort(),
      "the stale entry of this network is gone, the other network's is untouched",
    );
  },
);

inSandbox("GC honours disableGC; STATUS asks each plugin (1.1.0 only) and reports the first failure", (sb) => {
  const ctr = sb.addContainer();
  const f = new Fixture(sb, {
    "10-nogc.conflist": { cniVersion: "1.1.0", name: "nogc", disableGC: true, plugins: [recorder(sb, "a")] },
    "20-status.conflist": {
      cniVersion: "1.1.0",
      name: "st",
      plugins: [recorder(sb, "a"), recorder(sb, "b", { failOn: "STATUS", failCode: 50 }), recorder(sb, "c")],
    },
    "30-old.conflist": { cniVersion: "1.0.0", name: "old", plugins: [recorder(sb, "a")] },
  });
  assert.is(f.run(["add", "nogc", ctr.path]).code, 0);
  sh(["ip", "netns", "del", ctr.name]);
  f.records();
  assert.is(f.run(["gc", "nogc"]).code, 0);
  assert.equal(f.records(), []);
  assert.equal(f.cacheFiles().length, 1);

  const st = f.run(["status", "st", ctr.path]);
  assert.is(st.code, 1);
  assert.is(st.cniCode, 50, st.stderr);
  const recs = f.records();
  assert.equal(
    recs.map((r) => `${r.cmd} ${r.tag}`),
    ["STATUS a", "STATUS b"],
  );
  assert.equal(Object.keys(recs[0]!.conf).sort(), ["cniVersion", "name", "record", "tag", "type"]);

  const old = f.run(["status", "old"]);
  assert.is(old.code, 1);
  assert.match(old.stderr, /configuration version "1.0.0" does not support the STATUS command/);
  assert.equal(f.records(), []);
});

inSandbox("version <plugin> asks the plugin; an unknown plugin is an error", (sb) => {
  const f = new Fixture(sb, {});
  const lo = f.run(["version", "loopback"]);
  assert.is(lo.code, 0, lo.stderr);
  assert.equal(lo.json, {
    cniVersion: "1.1.0",
    supportedVersions: ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
  });
  const rec = f.run(["version", "recorder"]);
  assert.equal(rec.json.supportedVersions, ["0.3.1", "0.4.0", "1.0.0", "1.1.0"]);
  const missing = f.run(["version", "nope"]);
  assert.is(missing.code, 1);
  assert.match(missing.stderr, /version of plugin "nope": failed to find plugin "nope"/);
});

inSandbox("a path to a config file works in place of a network name", (sb) => {
  const ctr = sb.addContainer();
  const f = new Fixture(sb, {});
  const dir = writeNetconf(sb, { "lo.conf": { cniVersion: "0.4.0", name: "lo-file", type: "loopback" } }, "elsewhere");
  const add = f.run(["add", join(dir, "lo.conf"), ctr.path]);
  assert.is(add.code, 0, add.stderr);
  assert.ok(loUp(ctr.name));
  assert.equal(
    f.cacheFiles().map((n) => n.split("-cnitool-")[0]),
    ["lo-file"],
  );
  assert.is(f.run(["del", join(dir, "lo.conf"), ctr.path]).code, 0);
  assert.not.ok(loUp(ctr.name));
});

test.run();
