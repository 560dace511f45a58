import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { withSandbox } from "../helpers/sandbox.ts";
import { IpamNet, OURS, REF, addresses, type Outcome } from "../helpers/host-local.ts";

// The reference (Debian's containernetworking-plugins) answers GC and STATUS with an error, so
// these tests use it for ADD, CHECK and DEL only; the config version stays one it accepts.
const V = "1.0.0";

const withNet = (fn: (net: IpamNet) => Promise<void> | void, ipam?: Record<string, unknown>) =>
  withSandbox("hostlocal", (sb) => fn(new IpamNet(sb, "interop", ipam)));

test("a reservation made by either implementation is seen and released by the other", () =>
  withNet((net) => {
    const config = net.config({ cniVersion: V });
    const byRef = net.run(REF, "ADD", "from-ref", config);
    assert.is(byRef.code, 0, byRef.stdout);
    assert.equal(addresses(byRef), ["10.77.0.2/24", "fd00:77::2/64"]);
    // Ours sees it: CHECK passes, a second ADD for it is a duplicate, round robin continues after it.
    assert.is(net.run(OURS, "CHECK", "from-ref", config).code, 0);
    assert.match(net.run(OURS, "ADD", "from-ref", config).json.msg, "10.77.0.2 has been allocated to from-ref");
    const byOurs = net.run(OURS, "ADD", "from-ours", config);
    assert.equal(addresses(byOurs), ["10.77.0.3/24", "fd00:77::3/64"]);
    // The reference sees ours the same way.
    assert.is(net.run(REF, "CHECK", "from-ours", config).code, 0);
    assert.match(net.run(REF, "ADD", "from-ours", config).json.msg, "10.77.0.3 has been allocated to from-ours");
    assert.equal(addresses(net.run(REF, "ADD", "ref-2", config)), ["10.77.0.4/24", "fd00:77::4/64"]);

    // Each releases the other's.
    assert.is(net.run(OURS, "DEL", "from-ref", config).code, 0);
    assert.is(net.run(REF, "DEL", "from-ours", config).code, 0);
    assert.equal(net.addressesOf("from-ref"), []);
    assert.equal(net.addressesOf("from-ours"), []);
    assert.is(net.run(REF, "CHECK", "from-ref", config).code, 1);
    assert.is(net.run(OURS, "CHECK", "from-ours", config).code, 1);
    assert.equal(net.addressesOf("ref-2"), ["10.77.0.4", "fd00:77::4"]);
    // Our private index lives outside the network directory: the reference's walk never meets it.
    assert.equal(readdirSync(net.dir).sort(), [
      "10.77.0.4",
      "fd00:77::4",
      "last_reserved_ip.0",
      "last_reserved_ip.1",
      "lock",
    ]);
  }));

test("the reference's legacy container-ID-only files are found and released by ours", () =>
  withNet((net) => {
    const config = net.config({ cniVersion: V });
    net.run(REF, "ADD", "seed", config);
    net.run(REF, "DEL", "seed", config);
    // Written the way plugins before v0.7 did; the reference still honours them.
    const legacy = join(net.dir, "10.77.0.200");
    writeFileSync(legacy, "oldctr");
    assert.is(net.run(OURS, "CHECK", "oldctr", config).code, 0);
    assert.is(net.run(OURS, "DEL", "oldctr", config).code, 0);
    assert.not.ok(existsSync(legacy));
  }));

test("50 concurrent ADDs, ours and the reference interleaved on one network: 50 distinct addresses, no error", () =>
  withNet(async (net) => {
    const config = net.config({ cniVersion: V });
    const ids = Array.from({ length: 50 }, (_, i) => `c${i}`);
    const bin = (i: number) => (i % 2 === 0 ? OURS : REF);
    const adds = await Promise.all(ids.map((id, i) => net.runAsync(bin(i), "ADD", id, config)));
    adds.forEach((r, i) => {
      assert.is(r.code, 0, `${bin(i)} ADD ${ids[i]}: ${r.stdout}`);
    });
    const v4 = adds.map((r) => addresses(r)[0]);
    const v6 = adds.map((r) => addresses(r)[1]);
    assert.is(new Set(v4).size, 50, "distinct IPv4 addresses");
    assert.is(new Set(v6).size, 50, "distinct IPv6 addresses");
    // Every answer is backed by a reservation file naming its owner: no lost reservation.
    ids.forEach((id, i) => {
      assert.equal(net.addressesOf(id), [v4[i]!.split("/")[0], v6[i]!.split("/")[0]].sort(), id);
    });
    assert.is(net.reservations().size, 100);

    // Concurrent DELs (each implementation releasing the other's) mixed with fresh ADDs.
    const more = Array.from({ length: 20 }, (_, i) => `d${i}`);
    const mixed = await Promise.all([
      ...ids.map((id, i) => net.runAsync(bin(i + 1), "DEL", id, config)),
      ...more.map((id, i) => net.runAsync(bin(i), "ADD", id, config)),
    ]);
    mixed.forEach((r) => {
      assert.is(r.code, 0, r.stdout);
    });
    const left = net.reservations();
    assert.is(left.size, 40);
    for (const [, owner] of left) assert.match(owner, /^d\d+\r\neth0$/);
    for (const id of more) assert.is(net.addressesOf(id).length, 2, id);
  }));

test("SIGKILL at random points of ADD leaves whole reservations or none, and the store stays usable", () =>
  withNet(async (net) => {
    const config = net.config({ cniVersion: V });
    // Calibrate the kill window on a batch run to completion, so kills spread over the whole run,
    // store work included, instead of mostly hitting process start-up.
    const BATCH = 8;
    const spans = await Promise.all(
      Array.from({ length: BATCH }, async (_, i) => {
        const t0 = performance.now();
        const o = await net.runAsync(OURS, "ADD", `warm${i}`, config);
        assert.is(o.code, 0, o.stdout);
        return performance.now() - t0;
      }),
    );
    for (let i = 0; i < BATCH; i++) net.run(OURS, "DEL", `warm${i}`, config);
    const from = Math.min(...spans) * 0.5;
    const to = Math.max(...spans) * 1.1;

    const runs: Promise<Outcome>[] = [];
    for (let round = 0; round < 8; round++) {
      const batch = Array.from({ length: BATCH }, (_, i) => {
        const id = `k${round}-${i}`;
        const { child, done } = net.start(OURS, "ADD", id, config);
        setTimeout(() => child.kill("SIGKILL"), from + Math.random() * (to - from));
        return done.then((o) => ({ ...o, id }));
      });
      runs.push(...batch);
      await Promise.all(batch);
    }
    const outcomes = (await Promise.all(runs)) as (Outcome & { id: string })[];
    const killed = outcomes.filter((o) => o.signal === "SIGKILL").length;

    // Every file in the store is a complete reservation of one of the attachments, or bookkeeping.
    const owners = new Set(outcomes.map((o) => `${o.id}\r\neth0`));
    for (const [name, content] of net.reservations())
      assert.ok(owners.has(content), `${name} holds ${JSON.stringify(content)}`);
    // Whoever completed holds exactly what it was told.
    for (const o of outcomes.filter((o) => o.code === 0))
      assert.equal(
        net.addressesOf(o.id),
        addresses(o)
          .map((a) => a.split("/")[0])
          .sort(),
        o.id,
      );

    // The reference and ours agree on the state left behind, and release all of it.
    for (const o of outcomes) {
      const held = net.addressesOf(o.id).length > 0;
      assert.is(net.run(REF, "CHECK", o.id, config).code === 0, held, `reference CHECK ${o.id}`);
      assert.is(net.run(OURS, "CHECK", o.id, config).code === 0, held, `our CHECK ${o.id}`);
    }
    outcomes.forEach((o, i) => {
      net.run(i % 2 ? OURS : REF, "DEL", o.id, config);
    });
    assert.equal(net.reservations().size, 0, `after ${killed} kills and ${outcomes.length - killed} completed ADDs`);
    const after = net.run(OURS, "ADD", "after", config);
    assert.is(after.code, 0, after.stdout);
    // No temp file of ours survives in the network directory or beside our index.
    const priv = join(net.dataDir, ".tscni", "interop");
    assert.equal(
      readdirSync(priv).filter((n) => n.includes("tmp")),
      [],
      readdirSync(priv).join(" "),
    );
    assert.is(readFileSync(join(net.dir, "lock"), "latin1"), "");
  }));

test.run();
