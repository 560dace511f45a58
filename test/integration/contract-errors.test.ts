import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BIN, type Sandbox, cniEnv, sh, sandboxed } from "../helpers/sandbox.ts";
import { runPlugin } from "../helpers/plugin-run.ts";
import { fileTree } from "../helpers/node-state.ts";

// The CNI contract's error side, through the compiled `loopback` executable in a sandbox: each bad
// input gets the spec's error code as one error object on stdout, exit status 1, and leaves
// nothing behind (lo untouched, no new links, no new files).

const LOOPBACK = join(BIN, "loopback");
const good = { cniVersion: "1.0.0", name: "lo-net", type: "loopback" };

/** Every case here has one container beside the node. */
const withContainer = (name: string, fn: (sb: Sandbox, ctr: { name: string; path: string }) => void) =>
  sandboxed(test, "contr")(name, (sb) => fn(sb, sb.addContainer()));

/** Everything a loopback call could change: lo in the container, links in the node, files. */
function snapshot(sb: Sandbox, ctr: string) {
  const links = (ns: string) =>
    (
      JSON.parse(sh(["ip", "-n", ns, "-j", "addr", "show"]).stdout) as {
        ifname: string;
        flags: string[];
        addr_info: { local: string }[];
      }[]
    ).map((l) => `${l.ifname} ${l.flags.includes("UP") ? "up" : "down"} ${l.addr_info.map((a) => a.local).join(",")}`);
  return { container: links(ctr), node: links(sb.node), files: fileTree(sb.tmp), varLibCni: fileTree("/var/lib/cni") };
}

interface ErrorCase {
  env: Record<string, string>;
  stdin: string;
}

/** Runs a failing call and checks the error object, the exit status and that nothing changed. */
function expectError(sb: Sandbox, ctr: { name: string }, c: ErrorCase, code: number | "any", msg?: RegExp) {
  const before = snapshot(sb, ctr.name);
  const r = runPlugin(sb, LOOPBACK, c.env, c.stdin);
  assert.is(r.code, 1, `exit status for ${r.stdout}`);
  assert.ok(r.json, `an error object on stdout, got ${JSON.stringify(r.stdout)}`);
  assert.is(r.stdout.trim().split("\n").length, 1, "nothing else on stdout");
  assert.equal(Object.keys(r.json).sort(), ["cniVersion", "code", "details", "msg"]);
  if (code === "any") assert.type(r.json.code, "number");
  else assert.is(r.json.code, code, r.stdout);
  if (msg) assert.match(r.json.msg, msg);
  assert.equal(snapshot(sb, ctr.name), before, "nothing left behind");
  return r.json;
}

const add = (netns: string, extra: Record<string, string> = {}) => cniEnv("ADD", { CNI_NETNS: netns, ...extra });

withContainer("malformed JSON is code 6 for every verb", (sb, ctr) => {
  for (const cmd of ["ADD", "DEL", "CHECK"]) {
    expectError(
      sb,
      ctr,
      { env: cniEnv(cmd, { CNI_NETNS: ctr.path }), stdin: '{"cniVersion": "1.0.0", "name": ' },
      6,
      /unmarshall network config/,
    );
  }
  for (const stdin of ["", "[]", '"text"', "42", "{'name': 'x'}"]) {
    expectError(sb, ctr, { env: add(ctr.path), stdin }, 6);
  }
});

withContainer("missing variables are code 4 and all listed", (sb, ctr) => {
  const e = expectError(
    sb,
    ctr,
    { env: { CNI_COMMAND: "ADD" }, stdin: JSON.stringify(good) },
    4,
    /^required env variables/,
  );
  for (const v of ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"]) assert.ok(e.msg.includes(v), v);
  expectError(sb, ctr, { env: cniEnv("CHECK"), stdin: JSON.stringify(good) }, 4, /CNI_NETNS/);
  expectError(
    sb,
    ctr,
    { env: { CNI_COMMAND: "GC" }, stdin: JSON.stringify({ ...good, cniVersion: "1.1.0" }) },
    4,
    /CNI_PATH/,
  );
  // The environment is checked before stdin is read, as in the reference.
  expectError(sb, ctr, { env: { CNI_COMMAND: "ADD" }, stdin: "not json" }, 4);
});

withContainer("unknown CNI_COMMAND is code 4", (sb, ctr) => {
  expectError(
    sb,
    ctr,
    { env: { ...add(ctr.path), CNI_COMMAND: "UPDATE" }, stdin: JSON.stringify(good) },
    4,
    /unknown CNI_COMMAND: UPDATE/,
  );
});

withContainer("bad container IDs are code 4, details name the ID", (sb, ctr) => {
  for (const id of ["-leading-dash", "has/slash", "has space", "semi;colon", "../etc"]) {
    const e = expectError(
      sb,
      ctr,
      { env: add(ctr.path, { CNI_CONTAINERID: id }), stdin: JSON.stringify(good) },
      4,
      /invalid characters in containerID/,
    );
    assert.is(e.details, id);
  }
});

withContainer("bad interface names are code 4", (sb, ctr) => {
  for (const ifname of ["0123456789abcdef", "a/b", "a b", ".", "..", "eth:0"]) {
    expectError(sb, ctr, { env: add(ctr.path, { CNI_IFNAME: ifname }), stdin: JSON.stringify(good) }, 4, /CNI_IFNAME/);
    expectError(
      sb,
      ctr,
      { env: cniEnv("DEL", { CNI_NETNS: ctr.path, CNI_IFNAME: ifname }), stdin: JSON.stringify(good) },
      4,
      /CNI_IFNAME/,
    );
  }
});

withContainer("bad or missing network names are code 7", (sb, ctr) => {
  for (const name of ["a/b", "..", "../../etc/passwd", "a..b", "-net", "with space"]) {
    const e = expectError(
      sb,
      ctr,
      { env: add(ctr.path), stdin: JSON.stringify({ ...good, name }) },
      7,
      /invalid characters found in network name/,
    );
    assert.is(e.details, name);
  }
  const { name: _n, ...nameless } = good;
  expectError(sb, ctr, { env: add(ctr.path), stdin: JSON.stringify(nameless) }, 7, /missing network name/);
  expectError(sb, ctr, { env: add(ctr.path), stdin: JSON.stringify({ ...good, name: "" }) }, 7, /missing network name/);
  // The name is checked before the version.
  expectError(sb, ctr, { env: add(ctr.path), stdin: JSON.stringify({ ...good, name: "a/b", cniVersion: "9.9.9" }) }, 7);
});

withContainer(
  "unknown cniVersion is code 1 with the supported list in details; a non-string version is code 6",
  (sb, ctr) => {
    for (const v of ["9.9.9", "0.4", "1.1", "v1.0.0"]) {
      const e = expectError(
        sb,
        ctr,
        { env: add(ctr.path), stdin: JSON.stringify({ ...good, cniVersion: v }) },
        1,
        /incompatible CNI versions/,
      );
      assert.is(
        e.details,
        `config is "${v}", plugin supports ["0.1.0" "0.2.0" "0.3.0" "0.3.1" "0.4.0" "1.0.0" "1.1.0"]`,
      );
    }
    expectError(sb, ctr, { env: add(ctr.path), stdin: JSON.stringify({ ...good, cniVersion: 1 }) }, 6);
  },
);

withContainer("a config without cniVersion is 0.1.0: ADD works, CHECK is refused with code 1", (sb, ctr) => {
  const { cniVersion: _v, ...unversioned } = good;
  expectError(
    sb,
    ctr,
    { env: cniEnv("CHECK", { CNI_NETNS: ctr.path }), stdin: JSON.stringify(unversioned) },
    1,
    /does not allow CHECK/,
  );
  const r = runPlugin(sb, LOOPBACK, add(ctr.path), unversioned);
  assert.is(r.code, 0, r.stdout);
  assert.is(r.json.cniVersion, "0.1.0");
  assert.equal(r.json.ip4, { ip: "127.0.0.1/8" });
  // libcni passes a conflist's missing version as "": the reference reads that as 0.1.0 too.
  const empty = runPlugin(sb, LOOPBACK, add(ctr.path), { ...unversioned, cniVersion: "" });
  assert.is(empty.code, 0, empty.stdout);
  assert.is(empty.json.cniVersion, "0.1.0");
});

withContainer("the error object carries the request's cniVersion once it is known", (sb, ctr) => {
  const e = expectError(
    sb,
    ctr,
    { env: cniEnv("CHECK", { CNI_NETNS: ctr.path }), stdin: JSON.stringify({ ...good, cniVersion: "0.3.1" }) },
    1,
  );
  assert.is(e.cniVersion, "0.3.1");
});

withContainer(
  "CNI_NETNS that is not a network namespace is refused for ADD and CHECK (regular file, directory, missing path); DEL succeeds without entering it",
  (sb, ctr) => {
    const file = join(sb.tmp, "not-a-netns");
    writeFileSync(file, "");
    const dir = join(sb.tmp, "a-directory");
    mkdirSync(dir);
    const stale = [file, dir, "/proc/self/status", "/proc/self/ns/mnt"];
    for (const netns of stale.slice(0, 3)) {
      for (const cmd of ["ADD", "CHECK"]) {
        const e = expectError(sb, ctr, { env: cniEnv(cmd, { CNI_NETNS: netns }), stdin: JSON.stringify(good) }, 4);
        assert.match(e.msg, /CNI_NETNS/);
      }
    }
    // A namespace file of another type (here the plugin's own mount namespace) cannot be entered
    // as a network namespace: an error, as with the reference (which answers 999 for all verbs).
    for (const cmd of ["ADD", "CHECK"]) {
      expectError(
        sb,
        ctr,
        { env: cniEnv(cmd, { CNI_NETNS: "/proc/self/ns/mnt" }), stdin: JSON.stringify(good) },
        "any",
      );
    }
    for (const cmd of ["ADD", "CHECK"]) {
      expectError(
        sb,
        ctr,
        { env: cniEnv(cmd, { CNI_NETNS: join(sb.tmp, "no-such-netns") }), stdin: JSON.stringify(good) },
        4,
        /does not exist/,
      );
    }
    // DEL of a container whose pin went stale: nothing in it to undo, the node side is released.
    for (const netns of stale) {
      const r = runPlugin(sb, LOOPBACK, cniEnv("DEL", { CNI_NETNS: netns }), JSON.stringify(good));
      assert.is(r.code, 0, `DEL with ${netns}: ${r.stdout}`);
      assert.is(r.stdout, "");
    }
    assert.is(statSync(file).size, 0);
  },
);

withContainer(
  "CNI_NETNS naming the plugin's own (node) namespace is code 8, and the node's lo is not touched",
  (sb, ctr) => {
    // lo down in the node makes any change visible.
    sb.inNode(["ip", "link", "set", "lo", "down"]);
    try {
      for (const netns of [`/var/run/netns/${sb.node}`, "/proc/self/ns/net", "/proc/thread-self/ns/net"]) {
        for (const cmd of ["ADD", "CHECK", "DEL"]) {
          expectError(
            sb,
            ctr,
            { env: cniEnv(cmd, { CNI_NETNS: netns }), stdin: JSON.stringify(good) },
            8,
            /should not be the same/,
          );
        }
      }
    } finally {
      sb.inNode(["ip", "link", "set", "lo", "up"]);
    }
  },
);

withContainer("oversized stdin (64 MiB) is refused with a bounded, clear error", (sb, ctr) => {
  const before = snapshot(sb, ctr.name);
  const big = JSON.stringify({ ...good, padding: "x".repeat(64 * 1024 * 1024) });
  // The plugin stops reading at its limit, so our write may hit EPIPE: that is expected.
  const r = runPlugin(sb, LOOPBACK, add(ctr.path), big, { maxBuffer: 1024 * 1024, returnErrors: true });
  assert.ok(!r.error || r.error.code === "EPIPE", String(r.error));
  assert.is(r.code, 1);
  const e = JSON.parse(r.stdout);
  assert.is(e.code, 5);
  assert.match(e.msg, /exceeds \d+ bytes/);
  assert.ok(r.stdout.length < 1024, "the error does not echo the input");
  assert.equal(snapshot(sb, ctr.name), before, "nothing left behind");
});

withContainer(
  "logFile: errors are also appended to the file the config names; stdout keeps only the error object",
  (sb, ctr) => {
    const log = join(sb.tmp, "loopback.log");
    const env = cniEnv("ADD", { CNI_NETNS: ctr.path });
    const r = runPlugin(sb, LOOPBACK, env, { ...good, cniVersion: "9.9.9", logFile: log });
    assert.is(r.code, 1);
    assert.is(r.json.code, 1);
    assert.ok(existsSync(log), "log file written");
    const lines = readFileSync(log, "utf8").trim().split("\n");
    assert.is(lines.length, 1);
    assert.match(lines[0]!, /incompatible CNI versions/);
    assert.match(r.stderr, /incompatible CNI versions/);
    // An unwritable logFile never turns a result into a failure.
    const ok = runPlugin(sb, LOOPBACK, env, { ...good, logFile: "/proc/no/such/dir/log" });
    assert.is(ok.code, 0, ok.stdout);
  },
);

withContainer("CNI_ARGS is ignored by loopback, even unknown keys without IgnoreUnknown", (sb, ctr) => {
  const r = runPlugin(sb, LOOPBACK, add(ctr.path, { CNI_ARGS: "K8S_POD_NAME=x;FOO=bar" }), good);
  assert.is(r.code, 0, r.stdout);
});

test.run();
