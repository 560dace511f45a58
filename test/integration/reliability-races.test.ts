import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdirSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { BIN, REF_BIN, type Sandbox, sandboxed } from "../helpers/sandbox.ts";
import {
  BRIDGE_NAME,
  HOST_PORT,
  NET,
  client,
  clientAsync,
  containerLinks,
  nodeState,
  reservationFiles,
  runSeed,
  seededRandom,
  sleep,
  standardNet,
  type Net,
  type NodeState,
  type Outcome,
} from "../helpers/reliability.ts";
import { netfilterState } from "../helpers/node-state.ts";
import { masqChainName } from "../../lib/net/masquerade/iptables.ts";
import { tokenize } from "../../lib/netfilter/rules.ts";

const inSandbox = sandboxed(test, "reliab");

/**
 * Races between runtimes' calls: ADD and DEL of the same container at once, and many ADDs on a
 * node where nothing exists yet, all through libcni with the standard conflist.
 */

/** A client run ends in success or a plugin's CNI error, never a crash of ours. */
function assertCleanEnd(o: Outcome, what: string) {
  assert.ok(
    o.code === 0 || (o.code === 1 && /CNI error code \d+/.test(o.stderr)),
    `${what}: ${o.code} ${o.signal} ${o.stderr}`,
  );
  assert.not.match(o.stderr, /\n\s+at .+:\d+:\d+/, `${what}: no stack trace`);
}

inSandbox(
  "ADD and DEL of the same container at the same time: both end cleanly, a final DEL cleans up, the next ADD works",
  async (sb) => {
    const seed = runSeed();
    const random = seededRandom(seed);
    const net = standardNet(sb);
    const ctr = sb.addContainer();
    const start = Date.now();
    assert.is((await client(net, "add", "warm", ctr.path)).code, 0);
    const addMs = Date.now() - start;
    assert.is((await client(net, "del", "warm", ctr.path)).code, 0);
    const baseline = nodeState(net);

    for (let round = 0; round < 6; round++) {
      const id = `race${round}`;
      const what = `seed ${seed}, round ${round}`;
      const add = clientAsync(net, "add", id, ctr.path);
      // DEL starts anywhere from together with ADD to about when ADD ends.
      await sleep(Math.floor(random() * addMs));
      const del = clientAsync(net, "del", id, ctr.path);
      const [a, d] = await Promise.all([add.done, del.done]);
      assertCleanEnd(a, `${what}: ADD`);
      assertCleanEnd(d, `${what}: DEL`);

      const final = await client(net, "del", id, ctr.path);
      assert.is(final.code, 0, `${what}: final DEL: ${final.stderr}`);
      const now = nodeState(net);
      assert.equal(now.links, baseline.links, `${what}: node links`);
      assert.equal(now.reservations, baseline.reservations, `${what}: reservations`);
      assert.fixture(now.iptables, baseline.iptables, `${what}: iptables`);
      assert.fixture(now.nft, baseline.nft, `${what}: nft`);
      assert.equal(containerLinks(sb, ctr.name), ["lo -"], `${what}: container namespace`);
      const next = await client(net, "add", id, ctr.path);
      assert.is(next.code, 0, `${what}: the next ADD: ${next.stderr}`);
      assert.is((await client(net, "del", id, ctr.path)).code, 0);
    }
  },
);

/** A CNI_PATH whose bridge and host-local are the reference's, with our portmap and loopback. */
function referenceBridgePath(sb: Sandbox): string {
  const dir = join(sb.tmp, "cni-ref-bridge");
  mkdirSync(dir);
  for (const p of ["bridge", "host-local"]) symlinkSync(join(REF_BIN, p), join(dir, p));
  for (const p of ["portmap", "loopback"]) symlinkSync(join(BIN, p), join(dir, p));
  return dir;
}

interface Attachment {
  eth0: string[];
  reservations: string[];
  dnat: string[];
  masq: boolean;
  veths: string[];
}

function attachmentState(
  net: Net,
  id: string,
  ctr: { name: string },
  baseline: NodeState,
): Attachment & { now: NodeState } {
  const now = nodeState(net);
  const shown = JSON.parse(net.sb.inNs(ctr.name, ["ip", "-j", "addr", "show"]).stdout) as {
    ifname: string;
    addr_info: { family: string; local: string }[];
  }[];
  return {
    now,
    eth0: shown
      .filter((l) => l.ifname === "eth0")
      .flatMap((l) => l.addr_info.filter((a) => a.family === "inet").map((a) => a.local)),
    reservations: now.reservations,
    dnat: now.iptables.split("\n").filter((l) => /^-A CNI-DN-/.test(l) && / -j DNAT /.test(l)),
    masq: now.iptables.includes(masqChainName(NET, id)),
    veths: now.links.filter((l) => !baseline.links.includes(l)),
  };
}

/**
 * After an ADD and a DEL of one container have both returned: the container is attached whole
 * (CHECK passes with the same capability args, an address on eth0, its reservation and its DNAT
 * rule to that address) or not at all (no veth, reservation or rule naming it). Anything else is
 * described.
 */
async function wholeOrAbsent(
  net: Net,
  id: string,
  ctr: { name: string; path: string },
  baseline: NodeState,
): Promise<string | undefined> {
  const a = attachmentState(net, id, ctr, baseline);
  const summary = JSON.stringify({
    eth0: a.eth0,
    reservations: a.reservations,
    dnat: a.dnat.length,
    masq: a.masq,
    veths: a.veths,
  });
  if (a.eth0.length === 0 && a.reservations.length === 0 && a.dnat.length === 0 && a.veths.length === 0 && !a.masq) {
    return a.now.iptables === baseline.iptables
      ? undefined
      : `absent, but iptables differs from the baseline:\n${a.now.iptables}`;
  }
  if (a.eth0.length === 1 && a.reservations.length === 1 && a.dnat.length === 1 && a.veths.length === 1 && a.masq) {
    if (a.eth0[0] !== a.reservations[0]) return `eth0 holds ${a.eth0[0]}, the reservation is ${a.reservations[0]}`;
    if (!a.dnat[0]!.includes(`--to-destination ${a.eth0[0]}:80`))
      return `DNAT rule ${a.dnat[0]} is not to ${a.eth0[0]}:80`;
    const check = await client(net, "check", id, ctr.path);
    return check.code === 0 ? undefined : `present, but CHECK fails: ${check.stderr}`;
  }
  return `half attached: ${summary}`;
}

/**
 * With the reference bridge, only portmap's part is ours: its DNAT rule exists exactly when the
 * attachment does (a veth on the node and an address on eth0), and points at that address. The
 * reference bridge's own ADD/DEL races (a released reservation under a configured eth0, a
 * masquerade chain kept after a failed ADD) are counted in `own`, not failed.
 */
function portmapMatchesAttachment(
  net: Net,
  id: string,
  ctr: { name: string },
  baseline: NodeState,
  own: Record<string, number>,
): string | undefined {
  const a = attachmentState(net, id, ctr, baseline);
  const attached = a.eth0.length === 1 && a.veths.length === 1;
  const bare = a.eth0.length === 0 && a.veths.length === 0;
  if (!attached && !bare)
    return `the reference bridge left a partial attachment: ${JSON.stringify(a.eth0)} ${JSON.stringify(a.veths)}`;
  if (attached && a.reservations.length !== 1) own.reservationReleased = (own.reservationReleased ?? 0) + 1;
  if (bare && a.masq) own.masqueradeKept = (own.masqueradeKept ?? 0) + 1;
  if (attached) {
    if (a.dnat.length !== 1) return `attached, but ${a.dnat.length} DNAT rules`;
    if (!a.dnat[0]!.includes(`--to-destination ${a.eth0[0]}:80`))
      return `DNAT rule ${a.dnat[0]} is not to ${a.eth0[0]}:80`;
  } else if (a.dnat.length !== 0) return `no attachment, but DNAT rules remain: ${a.dnat.join("; ")}`;
  return undefined;
}

/** A DEL that failed for a reason that is not ours, which a runtime meets by retrying the DEL. */
function notOurs(o: Outcome, bridge: "ours" | "reference"): string | undefined {
  if (o.code === 0) return undefined;
  // libcni reads its result cache while the racing ADD is writing it.
  if (/failed to get network "[^"]+" cached result/.test(o.stderr)) return "libcniCacheRead";
  // The reference bridge's ADD and DEL race on its masquerade chain ("CHAIN_DEL failed").
  if (bridge === "reference" && /plugin type="bridge" failed \(delete\)/.test(o.stderr)) return "referenceBridgeDel";
  return undefined;
}

for (const bridge of ["ours", "reference"] as const) {
  inSandbox(
    `ADD racing DEL of one container (${bridge} bridge, our portmap), DEL starting before or after ADD at many offsets: the container ends whole or absent`,
    async (sb) => {
      const seed = runSeed();
      const random = seededRandom(seed);
      // With the reference bridge, loopback is its own network (as containerd and CRI-O run it):
      // in one list, a DEL run whole between ADD's loopback and bridge steps leaves lo down, which
      // only our bridge repairs.
      const net = standardNet(sb, { loopback: bridge === "ours" });
      if (bridge === "reference") net.client.cniPath = referenceBridgePath(sb);
      const ctr = sb.addContainer();
      const start = Date.now();
      assert.is((await client(net, "add", "warm", ctr.path)).code, 0);
      const addMs = Date.now() - start;
      assert.is((await client(net, "del", "warm", ctr.path)).code, 0);
      const baseline = nodeState(net);

      const rounds = process.env.TSCNI_LONG ? 60 : 16;
      const outcomes = { present: 0, absent: 0 };
      const retried: Record<string, number> = {};
      const own: Record<string, number> = {};
      for (let round = 0; round < rounds; round++) {
        const id = `race${round}`;
        // From DEL starting half an ADD earlier to DEL starting as ADD ends, evenly, with jitter.
        const offset = Math.round((round / (rounds - 1)) * 1.5 * addMs - addMs / 2 + (random() - 0.5) * 10);
        const what = `seed ${seed}, round ${round}, DEL at ${offset} ms`;
        let add: ReturnType<typeof clientAsync>;
        let del: ReturnType<typeof clientAsync>;
        if (offset >= 0) {
          add = clientAsync(net, "add", id, ctr.path);
          await sleep(offset);
          del = clientAsync(net, "del", id, ctr.path);
        } else {
          del = clientAsync(net, "del", id, ctr.path);
          await sleep(-offset);
          add = clientAsync(net, "add", id, ctr.path);
        }
        const [a, firstDel] = await Promise.all([add.done, del.done]);
        let d = firstDel;
        assertCleanEnd(a, `${what}: ADD`);
        assertCleanEnd(d, `${what}: DEL`);
        const why = notOurs(d, bridge);
        if (why) {
          retried[why] = (retried[why] ?? 0) + 1;
          d = await client(net, "del", id, ctr.path);
        }
        assert.is(d.code, 0, `${what}: DEL: ${d.stderr}`);
        const problem =
          bridge === "ours"
            ? await wholeOrAbsent(net, id, ctr, baseline)
            : portmapMatchesAttachment(net, id, ctr, baseline, own);
        assert.is(problem, undefined, `${what} (ADD exit ${a.code}): ${problem}`);
        const present = containerLinks(sb, ctr.name).length > 1;
        outcomes[present ? "present" : "absent"]++;
        if (present && bridge === "ours") assert.is(a.code, 0, `${what}: attached although ADD failed`);

        const final = await client(net, "del", id, ctr.path);
        assert.is(final.code, 0, `${what}: final DEL: ${final.stderr}`);
        const now = nodeState(net);
        assert.equal(now.reservations, baseline.reservations, `${what}: reservations`);
        let iptables = now.iptables;
        if (bridge === "reference" && iptables.includes(masqChainName(NET, id))) {
          // The reference bridge's DEL finds the addresses to unmasquerade on eth0; when a race
          // took eth0 first, its chain stays (ours removes it by name).
          own.masqueradeLeakedByDel = (own.masqueradeLeakedByDel ?? 0) + 1;
          iptables = iptables
            .split("\n")
            .filter((l) => !l.includes(masqChainName(NET, id)))
            .join("\n");
          sb.inNode(["iptables", "-t", "nat", "-F", masqChainName(NET, id)]);
          const jump = now.iptables
            .split("\n")
            .find((l) => l.startsWith("-A POSTROUTING") && l.includes(`-j ${masqChainName(NET, id)}`));
          if (jump) sb.inNode(["iptables", "-t", "nat", ...tokenize(jump.replace(/^-A/, "-D"))]);
          sb.inNode(["iptables", "-t", "nat", "-X", masqChainName(NET, id)]);
        }
        assert.fixture(iptables, baseline.iptables, `${what}: iptables`);
      }
      // Both ends must have been reached, or the offsets did not cover the race.
      assert.ok(outcomes.present > 0 && outcomes.absent > 0, `outcomes ${JSON.stringify(outcomes)}`);
      console.log(
        `  ${bridge} bridge, seed ${seed}: ${JSON.stringify(outcomes)}, DELs retried ${JSON.stringify(retried)}, the reference bridge's own ${JSON.stringify(own)}`,
      );
    },
  );
}

const count = (dump: string, re: RegExp) => dump.split("\n").filter((l) => re.test(l)).length;

async function concurrentAdds(net: Net, n: number) {
  const ctrs = Array.from({ length: n }, () => net.sb.addContainer());
  const outcomes = await Promise.all(ctrs.map((c, i) => client(net, "add", `c${i}`, c.path)));
  return { ctrs, outcomes };
}

inSandbox(
  "50 concurrent ADDs on a fresh node: none fails, one bridge, the shared chains and jumps exist exactly once",
  async (sb) => {
    const net = standardNet(sb);
    const n = 50;
    assert.not.ok(
      nodeState(net).links.some((l) => l.startsWith(BRIDGE_NAME)),
      "no bridge yet",
    );
    const { ctrs, outcomes } = await concurrentAdds(net, n);
    outcomes.forEach((o, i) => {
      assert.is(o.code, 0, `ADD c${i}: ${o.stderr}`);
    });

    const addrs = outcomes.map((o) => JSON.parse(o.stdout).ips[0].address as string);
    assert.is(new Set(addrs).size, n, "distinct addresses");
    assert.is(reservationFiles(net.dataDir).length, n);

    const links = nodeState(net).links;
    assert.is(links.filter((l) => l.startsWith(`${BRIDGE_NAME} bridge`)).length, 1, "one bridge");
    assert.is(links.filter((l) => l.endsWith(` veth ${BRIDGE_NAME}`)).length, n, "every veth on the bridge");
    const gw = JSON.parse(sb.inNode(["ip", "-j", "addr", "show", "dev", BRIDGE_NAME]).stdout)[0].addr_info.filter(
      (a: { family: string }) => a.family === "inet",
    );
    assert.equal(
      gw.map((a: { local: string }) => a.local),
      ["10.61.0.1"],
      "one gateway address",
    );

    const { iptables } = netfilterState(sb);
    assert.is(count(iptables, /^:CNI-HOSTPORT-(DNAT|SETMARK|MASQ) /), 3, iptables);
    assert.is(count(iptables, /^-A PREROUTING .*-j CNI-HOSTPORT-DNAT$/), 1, "one PREROUTING jump");
    assert.is(count(iptables, /^-A OUTPUT .*-j CNI-HOSTPORT-DNAT$/), 1, "one OUTPUT jump");
    assert.is(count(iptables, /^-A POSTROUTING .*-j CNI-HOSTPORT-MASQ$/), 1, "one POSTROUTING jump");
    assert.is(count(iptables, /^-A CNI-HOSTPORT-SETMARK /), 1, "one mark rule");
    assert.is(count(iptables, /^-A CNI-HOSTPORT-MASQ /), 1, "one masquerade rule");
    assert.is(count(iptables, /^:CNI-DN-/), n, "a DNAT chain per container");
    assert.is(
      count(iptables, new RegExp(`^-A CNI-HOSTPORT-DNAT .*--dports ${HOST_PORT} `)),
      n,
      "an entry rule per container",
    );
    for (let i = 0; i < n; i++) {
      const chain = masqChainName(NET, `c${i}`);
      assert.is(
        count(iptables, new RegExp(`^-A POSTROUTING -s ${addrs[i]!.replace(/\/\d+$/, "")}/32 .*-j ${chain}$`)),
        1,
        `masquerade jump of c${i}`,
      );
      assert.is(count(iptables, new RegExp(`^-A ${chain} `)), 2, `masquerade chain of c${i}`);
    }
    // Every container reaches the gateway through the bridge.
    for (const i of [0, n - 1]) {
      assert.is(
        sb.inNs(ctrs[i]!.name, ["busybox", "ping", "-c", "1", "-W", "2", "10.61.0.1"], { allowFailure: true }).code,
        0,
        `c${i} reaches the gateway`,
      );
    }

    const dels = await Promise.all(ctrs.map((c, i) => client(net, "del", `c${i}`, c.path)));
    dels.forEach((o, i) => {
      assert.is(o.code, 0, `DEL c${i}: ${o.stderr}`);
    });
    const after = nodeState(net);
    assert.equal(after.reservations, []);
    assert.equal(
      after.links.filter((l) => l.includes(" veth")),
      [],
      "no veth left",
    );
    assert.not.match(after.iptables, /CNI-DN-|CNI-[0-9a-f]{24}/, "no per-container chain left");
    for (const c of ctrs) assert.equal(containerLinks(sb, c.name), ["lo -"]);
  },
);

test.run();
