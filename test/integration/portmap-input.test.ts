import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { cniEnv, type Sandbox } from "../helpers/sandbox.ts";
import { PORTMAP, attach, inTopology, portmapConfig, runPortmap, snapshot } from "../helpers/portmap-net.ts";

const good = { hostPort: 8080, containerPort: 80, protocol: "tcp" };

test("bad input: a CNI error naming the field, and nothing programmed (both backends)", () =>
  inTopology((sb) => {
    const a = attach(sb, "ctr-a");
    const before = snapshot(sb);
    const cases: [string, unknown, RegExp][] = [
      ["hostPort 0", [good, { hostPort: 0, containerPort: 80, protocol: "tcp" }], /portMappings\.1\.hostPort/],
      ["hostPort 65536", [{ hostPort: 65536, containerPort: 80, protocol: "tcp" }], /portMappings\.0\.hostPort/],
      ["containerPort -1", [{ hostPort: 80, containerPort: -1, protocol: "tcp" }], /portMappings\.0\.containerPort/],
      ["unknown protocol", [{ hostPort: 80, containerPort: 80, protocol: "icmp" }], /portMappings\.0\.protocol/],
      [
        "invalid hostIP",
        [{ hostPort: 80, containerPort: 80, protocol: "tcp", hostIP: "10.0.0.256" }],
        /portMappings\.0\.hostIP/,
      ],
      ["duplicate", [good, { ...good, containerPort: 81 }], /portMappings\.1: duplicate/],
    ];
    for (const backend of ["iptables", "nftables"]) {
      for (const [what, mappings, field] of cases) {
        const r = runPortmap(sb, "ADD", a, portmapConfig(backend, mappings as any, a.result));
        assert.is(r.code, 1, `${backend} ${what}: ${r.stdout}`);
        assert.is(r.json.code, 7, what);
        assert.match(r.json.msg, field, what);
      }
      const noPrev = runPortmap(sb, "ADD", a, portmapConfig(backend, [good]));
      assert.is(noPrev.code, 1);
      assert.match(noPrev.json.msg, /prevResult/);
    }
    const bit = runPortmap(sb, "ADD", a, portmapConfig("iptables", [good], a.result, { markMasqBit: 32 }));
    assert.match(bit.json.msg, /markMasqBit/);
    assert.equal(snapshot(sb), before);
  }));

test("a transaction the kernel refuses leaves nothing behind (both backends)", () =>
  inTopology((sb) => {
    const a = attach(sb, "ctr-a");
    const before = snapshot(sb);
    // A set-mark chain that does not exist: iptables-restore fails on the first mark rule.
    const ipt = runPortmap(
      sb,
      "ADD",
      a,
      portmapConfig("iptables", [good], a.result, { externalSetMarkChain: "NO-SUCH-CHAIN" }),
    );
    assert.is(ipt.code, 1, ipt.stdout);
    assert.match(ipt.json.msg, /iptables-restore/);
    // A condition nft cannot parse: the whole nft transaction fails.
    const nft = runPortmap(
      sb,
      "ADD",
      a,
      portmapConfig("nftables", [good], a.result, { conditionsV4: ["bogus", "words"] }),
    );
    assert.is(nft.code, 1, nft.stdout);
    assert.match(nft.json.msg, /nftables/);
    assert.equal(snapshot(sb), before);
  }));

/** execve and locking calls of one plugin run, seen by strace inside the node namespace. */
function traced(sb: Sandbox, command: string, config: unknown, a: { id: string; path: string }) {
  const out = join(sb.tmp, `strace-${command}.txt`);
  const env = { PATH: process.env.PATH, ...cniEnv(command, { CNI_CONTAINERID: a.id, CNI_NETNS: a.path }) };
  const r = sb.inNode(["strace", "-f", "-qq", "-o", out, "-e", "trace=execve,flock,openat", PORTMAP], {
    input: JSON.stringify(config),
    env,
    allowFailure: true,
  });
  const lines = readFileSync(out, "utf8").split("\n");
  return {
    code: r.code,
    execs: lines.filter((l) => /execve\(/.test(l)).map((l) => /execve\("([^"]+)"/.exec(l)![1]!),
    locks: lines.filter((l) => /flock\(|xtables\.lock/.test(l)),
  };
}

test("no port mappings: ADD, CHECK and DEL start no process and take no lock (both backends)", () =>
  inTopology((sb) => {
    const a = attach(sb, "ctr-a");
    for (const backend of ["iptables", "nftables"]) {
      for (const mappings of [undefined, []]) {
        for (const command of ["ADD", "CHECK", "DEL"]) {
          const t = traced(sb, command, portmapConfig(backend, mappings, a.result), a);
          assert.is(t.code, 0, `${backend} ${command}`);
          assert.equal(t.execs, [PORTMAP], `${backend} ${command} started only itself`);
          assert.equal(t.locks, [], `${backend} ${command} took no lock`);
        }
      }
      // The same probe sees the work when there is some, so the checks above can fail.
      const busy = traced(sb, "ADD", portmapConfig(backend, [good], a.result), a);
      assert.is(busy.code, 0);
      assert.ok(busy.execs.length > 1, `${backend}: ${busy.execs.join(" ")}`);
      assert.ok(
        busy.execs.some((e) => /iptables-restore|nft$/.test(e)),
        busy.execs.join(" "),
      );
      assert.is(traced(sb, "DEL", portmapConfig(backend, [good], a.result), a).code, 0);
    }
  }));

test.run();
