import { test } from "uvu";
import * as assert from "uvu/assert";
import { Sandbox } from "../helpers/sandbox.ts";
import { BRIDGE_NAME, HOST_PORT, NET, client, clientAsync, containerLinks, netfilterState, nodeState, reservationFiles, runSeed, seededRandom, sleep, standardNet, type Net, type Outcome } from "../helpers/reliability.ts";
import { masqChainName } from "../../lib/net/masquerade.ts";

/**
 * Races between runtimes' calls: ADD and DEL of the same container at once, and many ADDs on a
 * node where nothing exists yet, all through libcni with the standard conflist.
 */

/** A client run ends in success or a plugin's CNI error, never a crash of ours. */
function assertCleanEnd(o: Outcome, what: string) {
  assert.ok(o.code === 0 || (o.code === 1 && /CNI error code \d+/.test(o.stderr)), `${what}: ${o.code} ${o.signal} ${o.stderr}`);
  assert.not.match(o.stderr, /\n\s+at .+:\d+:\d+/, `${what}: no stack trace`);
}

test("ADD and DEL of the same container at the same time: both end cleanly, a final DEL cleans up, the next ADD works", async () => {
  const seed = runSeed();
  const random = seededRandom(seed);
  const sb = new Sandbox("reliab");
  try {
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
  } finally {
    sb.cleanup();
  }
});

const count = (dump: string, re: RegExp) => dump.split("\n").filter((l) => re.test(l)).length;

async function concurrentAdds(net: Net, n: number) {
  const ctrs = Array.from({ length: n }, () => net.sb.addContainer());
  const outcomes = await Promise.all(ctrs.map((c, i) => client(net, "add", `c${i}`, c.path)));
  return { ctrs, outcomes };
}

test("50 concurrent ADDs on a fresh node: none fails, one bridge, the shared chains and jumps exist exactly once", async () => {
  const sb = new Sandbox("reliab");
  try {
    const net = standardNet(sb);
    const n = 50;
    assert.not.ok(nodeState(net).links.some((l) => l.startsWith(BRIDGE_NAME)), "no bridge yet");
    const { ctrs, outcomes } = await concurrentAdds(net, n);
    outcomes.forEach((o, i) => assert.is(o.code, 0, `ADD c${i}: ${o.stderr}`));

    const addrs = outcomes.map((o) => JSON.parse(o.stdout).ips[0].address as string);
    assert.is(new Set(addrs).size, n, "distinct addresses");
    assert.is(reservationFiles(net.dataDir).length, n);

    const links = nodeState(net).links;
    assert.is(links.filter((l) => l.startsWith(`${BRIDGE_NAME} bridge`)).length, 1, "one bridge");
    assert.is(links.filter((l) => l.endsWith(` veth ${BRIDGE_NAME}`)).length, n, "every veth on the bridge");
    const gw = JSON.parse(sb.inNode(["ip", "-j", "addr", "show", "dev", BRIDGE_NAME]).stdout)[0].addr_info.filter((a: { family: string }) => a.family === "inet");
    assert.equal(gw.map((a: { local: string }) => a.local), ["10.61.0.1"], "one gateway address");

    const { iptables } = netfilterState(sb);
    assert.is(count(iptables, /^:CNI-HOSTPORT-(DNAT|SETMARK|MASQ) /), 3, iptables);
    assert.is(count(iptables, /^-A PREROUTING .*-j CNI-HOSTPORT-DNAT$/), 1, "one PREROUTING jump");
    assert.is(count(iptables, /^-A OUTPUT .*-j CNI-HOSTPORT-DNAT$/), 1, "one OUTPUT jump");
    assert.is(count(iptables, /^-A POSTROUTING .*-j CNI-HOSTPORT-MASQ$/), 1, "one POSTROUTING jump");
    assert.is(count(iptables, /^-A CNI-HOSTPORT-SETMARK /), 1, "one mark rule");
    assert.is(count(iptables, /^-A CNI-HOSTPORT-MASQ /), 1, "one masquerade rule");
    assert.is(count(iptables, /^:CNI-DN-/), n, "a DNAT chain per container");
    assert.is(count(iptables, new RegExp(`^-A CNI-HOSTPORT-DNAT .*--dports ${HOST_PORT} `)), n, "an entry rule per container");
    for (let i = 0; i < n; i++) {
      const chain = masqChainName(NET, `c${i}`);
      assert.is(count(iptables, new RegExp(`^-A POSTROUTING -s ${addrs[i]!.replace(/\/\d+$/, "")}/32 .*-j ${chain}$`)), 1, `masquerade jump of c${i}`);
      assert.is(count(iptables, new RegExp(`^-A ${chain} `)), 2, `masquerade chain of c${i}`);
    }
    // Every container reaches the gateway through the bridge.
    for (const i of [0, n - 1]) {
      assert.is(sb.inNs(ctrs[i]!.name, ["busybox", "ping", "-c", "1", "-W", "2", "10.61.0.1"], { allowFailure: true }).code, 0, `c${i} reaches the gateway`);
    }

    const dels = await Promise.all(ctrs.map((c, i) => client(net, "del", `c${i}`, c.path)));
    dels.forEach((o, i) => assert.is(o.code, 0, `DEL c${i}: ${o.stderr}`));
    const after = nodeState(net);
    assert.equal(after.reservations, []);
    assert.equal(after.links.filter((l) => l.includes(" veth")), [], "no veth left");
    assert.not.match(after.iptables, /CNI-DN-|CNI-[0-9a-f]{24}/, "no per-container chain left");
    for (const c of ctrs) assert.equal(containerLinks(sb, c.name), ["lo -"]);
  } finally {
    sb.cleanup();
  }
});

test.run();
