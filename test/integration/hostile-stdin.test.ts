import { test } from "uvu";
import * as assert from "uvu/assert";
import { join } from "node:path";
import { BIN, type Sandbox, sh, sandboxed } from "../helpers/sandbox.ts";
import { startPlugin } from "../helpers/plugin-run.ts";
import { CRASH, PLUGIN_NAMES, addEnv, baseConfig, residue, runNamedAsync, tripwire } from "../helpers/hostile.ts";

const inSandbox = sandboxed(test, "reliab");

/**
 * What arrives on stdin: 64 MiB (read up to a bound, then a clear error; the plugin stops reading,
 * so the writer is cut off long before the end), nesting deep enough to break a recursive parser or
 * printer, and bytes that are not JSON at all. Each run ends with a CNI error, no crash, no effect.
 */

const MIB = 1024 * 1024;

/** Feeds `total` bytes (a JSON prefix, then filler) in 1 MiB chunks until the plugin stops reading. */
function flood(
  sb: Sandbox,
  plugin: string,
  env: Record<string, string>,
  total: number,
): Promise<{ code: number; stdout: string; accepted: number }> {
  const { child, done } = startPlugin(sb, join(BIN, plugin), env, undefined, { openStdin: true });
  let accepted = 0;
  let stopped = false;
  child.stdin!.on("error", () => (stopped = true));
  const chunk = Buffer.alloc(MIB, "x".charCodeAt(0));
  const prefix = Buffer.from(`{"cniVersion":"1.0.0","name":"hnet","type":"${plugin}","pad":"`);
  const feed = async () => {
    for (let sent = 0; sent < total && !stopped; sent += MIB) {
      const part = sent === 0 ? Buffer.concat([prefix, chunk.subarray(prefix.length)]) : chunk;
      const ok = await new Promise<boolean>((resolve) => child.stdin!.write(part, (err) => resolve(!err)));
      if (!ok) break;
      accepted += part.length;
    }
    child.stdin!.end();
  };
  return Promise.all([feed(), done]).then(([, { code, stdout }]) => ({ code, stdout, accepted }));
}

inSandbox("64 MiB on stdin: every plugin stops reading at its bound and answers with a clear error", async (sb) => {
  const ctr = sb.addContainer();
  for (const plugin of PLUGIN_NAMES) {
    const r = await flood(sb, plugin, addEnv(ctr.path), 64 * MIB);
    assert.is(r.code, 1, plugin);
    const err = JSON.parse(r.stdout);
    assert.is(err.code, 5, `${plugin}: ${r.stdout}`);
    assert.match(err.msg, /exceeds \d+ bytes/, plugin);
    assert.ok(
      r.accepted < 16 * MIB,
      `${plugin} read ${r.accepted} bytes: it must stop at its bound, not swallow everything`,
    );
  }
});

inSandbox(
  "deep nesting, huge arrays and non-JSON bytes: a CNI error (or success), never a crash, hang or effect",
  async (sb) => {
    const ctr = sb.addContainer();
    const trip = tripwire(sb);
    const before = residue(sb);
    const deep = (n: number) => "[".repeat(n) + "]".repeat(n);
    const deepObject = (n: number) => `${'{"a":'.repeat(n)}1${"}".repeat(n)}`;
    const bodies: [string, (plugin: string) => string | Buffer][] = [
      ["nothing", () => ""],
      ["whitespace", () => " \n\t "],
      ["a JSON array 1e6 deep", () => deep(1_000_000)],
      [
        "a config with a 100k-deep object under args",
        (p) => `{"cniVersion":"1.0.0","name":"hnet","type":"${p}","args":${deepObject(100_000)}}`,
      ],
      [
        "a config with a 100k-deep prevResult",
        (p) => `{"cniVersion":"1.0.0","name":"hnet","type":"${p}","prevResult":${deepObject(100_000)}}`,
      ],
      [
        "a config with a 100k-deep ipam",
        (p) =>
          `{"cniVersion":"1.0.0","name":"hnet","type":"${p}","ipam":{"type":"host-local","x":${deepObject(100_000)}}}`,
      ],
      [
        "200k port mappings",
        (p) =>
          JSON.stringify({
            ...baseConfig("portmap", sb.tmp, ctr.path),
            type: p,
            runtimeConfig: {
              portMappings: Array.from({ length: 200_000 }, (_, i) => ({
                hostPort: (i % 65535) + 1,
                containerPort: 80,
              })),
            },
          }),
      ],
      ["invalid UTF-8", () => Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d])],
      ["NUL bytes", () => Buffer.from('{"cniVersion":"1.0.0","name":"h\u0000net"}')],
      ["a number", () => "42"],
      ["a string", () => '"bridge"'],
      ["null", () => "null"],
      ["duplicate keys", (p) => `{"cniVersion":"1.0.0","name":"hnet","type":"${p}","name":"../x"}`],
      ["a BOM", (p) => `\ufeff{"cniVersion":"1.0.0","name":"hnet","type":"${p}"}`],
      [
        "__proto__ keys",
        (p) =>
          `{"cniVersion":"1.0.0","name":"hnet","type":"${p}","__proto__":{"isGateway":true,"dataDir":"/"},"constructor":{"prototype":{"x":1}}}`,
      ],
    ];
    const problems: string[] = [];
    for (const plugin of PLUGIN_NAMES) {
      for (const [what, body] of bodies) {
        const r = await runNamedAsync(sb, plugin, addEnv(ctr.path), body(plugin), trip.path);
        const tag = `${plugin} with ${what}`;
        if (r.timedOut) problems.push(`${tag}: hung`);
        else if (r.code === 0 && typeof r.json?.cniVersion === "string" && r.json.code === undefined) {
          // A valid config after all (e.g. a layer-2 bridge: its links are made in-process, no tool
          // to trip): its DEL must take back what it made.
          const del = await runNamedAsync(
            sb,
            plugin,
            { ...addEnv(ctr.path), CNI_COMMAND: "DEL" },
            body(plugin),
            trip.path,
          );
          if (del.code !== 0)
            problems.push(`${tag}: DEL after a successful ADD exit ${del.code}: ${del.stdout.slice(0, 200)}`);
        } else if (r.code !== 1 || !r.json || typeof r.json.code !== "number")
          problems.push(`${tag}: exit ${r.code}: ${r.stdout.slice(0, 200)}`);
        else if (CRASH.test(r.json.msg) || CRASH.test(r.stderr))
          problems.push(`${tag}: crash: ${r.json.msg} ${r.stderr.slice(0, 300)}`);
      }
    }
    assert.equal(problems, []);
    // A bridge a successful ADD created stays after its DEL (as the reference leaves it): not residue.
    for (const l of residue(sb).links)
      if (!before.links.includes(l) && l.endsWith(" bridge")) sb.inNode(["ip", "link", "del", l.split(" ")[0]!]);
    const after = residue(sb);
    assert.equal(after.links, before.links);
    assert.fixture(after.iptables, before.iptables);
    assert.fixture(after.nft, before.nft);
    assert.equal(
      after.files.filter((f) => f !== "tripwire.log"),
      before.files,
      "no file created",
    );
  },
);

inSandbox(
  "config paths that never end (a FIFO, /dev/zero) do not hang a plugin: resolvConf refused, logFile skipped",
  async (sb) => {
    const ctr = sb.addContainer();
    const fifo = join(sb.tmp, "fifo");
    sh(["mkfifo", fifo]);
    for (const resolvConf of [fifo, "/dev/zero"]) {
      const config = baseConfig("host-local", sb.tmp, ctr.path);
      config.ipam.resolvConf = resolvConf;
      const r = await runNamedAsync(sb, "host-local", addEnv(ctr.path), config, process.env.PATH, 10_000);
      assert.not.ok(r.timedOut, `resolvConf ${resolvConf}: answered`);
      assert.is(r.json?.code, 5, r.stdout);
      assert.match(r.json.msg, /resolvConf .*not a regular file/);
    }
    // The log is best effort: a FIFO nobody reads must not keep the answer from the runtime.
    const logged = { ...baseConfig("loopback", sb.tmp, ctr.path), name: "../bad", logFile: fifo };
    const r = await runNamedAsync(sb, "loopback", addEnv(ctr.path), logged, process.env.PATH, 10_000);
    assert.not.ok(r.timedOut, "logFile FIFO: answered");
    assert.is(r.json?.code, 7, r.stdout);
  },
);

inSandbox("answers larger than a pipe buffer reach the runtime whole: a big ADD result, a big error", async (sb) => {
  const ctr = sb.addContainer();
  const search = Array.from({ length: 30_000 }, (_, i) => `s${i}.example`);
  const config = { ...baseConfig("bridge", sb.tmp, ctr.path), dns: { search } };
  const add = await runNamedAsync(sb, "bridge", addEnv(ctr.path), config);
  assert.is(add.code, 0, add.stdout.slice(-200));
  assert.ok(add.json, `the result (${add.stdout.length} bytes) is one complete JSON document`);
  assert.is(add.json.dns.search.length, search.length);
  assert.is((await runNamedAsync(sb, "bridge", { ...addEnv(ctr.path), CNI_COMMAND: "DEL" }, config)).code, 0);

  const sysctl = Object.fromEntries(Array.from({ length: 20_000 }, (_, i) => [`net.k${i}`, i]));
  const bad = await runNamedAsync(sb, "tuning", addEnv(ctr.path), {
    ...baseConfig("tuning", sb.tmp, ctr.path),
    sysctl,
  });
  assert.is(bad.code, 1);
  assert.ok(bad.json, `the error (${bad.stdout.length} bytes) is one complete JSON document`);
  assert.is(bad.json.code, 7);
});

test.run();
