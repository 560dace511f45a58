import { test } from "uvu";
import * as assert from "uvu/assert";
import { sandboxed } from "../helpers/sandbox.ts";
import {
  LONG,
  NET,
  client,
  clientAsync,
  containerLinks,
  nodeState,
  runSeed,
  seededRandom,
  sleep,
  standardNet,
  type Net,
} from "../helpers/reliability.ts";

const inSandbox = sandboxed(test, "reliab");

/**
 * Kill at any point: ADD of the standard conflist (loopback, bridge with gateway, masquerade and
 * hairpin over host-local, portmap with one TCP port) through libcni, and after a random delay
 * spread over the whole ADD every process the client started (the plugin running then and the
 * tools it runs) is SIGKILLed at once, as a runtime's timeout would; the client reports the failure.
 * Each time, a DEL through libcni must bring the node back to exactly what it was (no veth, no
 * reservation, no iptables or nft rule of the container) and the next ADD of the same container
 * must succeed. (The client itself is not killed: Debian's libcni writes its result cache in place,
 * so a client killed while writing it fails its own next DEL, whatever the plugins did.)
 *
 * 15 kills by default; TSCNI_LONG=1 runs 100. TSCNI_SEED=<n> replays a run's delays.
 */
const KILLS = LONG ? 100 : 15;

function assertClean(net: Net, baseline: ReturnType<typeof nodeState>, ctrNs: string, what: string) {
  const now = nodeState(net);
  assert.equal(now.links, baseline.links, `${what}: node links`);
  assert.equal(now.reservations, baseline.reservations, `${what}: reservations`);
  assert.fixture(now.iptables, baseline.iptables, `${what}: iptables`);
  assert.fixture(now.nft, baseline.nft, `${what}: nft`);
  assert.equal(containerLinks(net.sb, ctrNs), ["lo -"], `${what}: container namespace`);
}

inSandbox(
  `SIGKILL at random points of a conflist ADD (${KILLS} runs): DEL leaves the node clean, the next ADD succeeds`,
  async (sb) => {
    const seed = runSeed();
    const random = seededRandom(seed);
    const landed = { beforeAnything: 0, midway: 0, completed: 0 };
    let step = "warm-up";
    try {
      const net = standardNet(sb);
      const ctr = sb.addContainer();
      // Warm-up: the bridge and the shared chains exist from here on, as on any node that ran a pod.
      const durations: number[] = [];
      for (let i = 0; i < 2; i++) {
        const start = Date.now();
        const add = await client(net, "add", `warm${i}`, ctr.path);
        durations.push(Date.now() - start);
        assert.is(add.code, 0, add.stderr);
        assert.is((await client(net, "del", `warm${i}`, ctr.path)).code, 0);
      }
      const baseline = nodeState(net);
      const span = Math.min(...durations) * 1.1;

      for (let i = 0; i < KILLS; i++) {
        const id = `kill${i}`;
        const delay = Math.floor(random() * span);
        step = `run ${i}: SIGKILL after ${delay} ms (ADD takes about ${Math.round(span / 1.1)} ms)`;
        const add = clientAsync(net, "add", id, ctr.path);
        await sleep(delay);
        add.killPlugins();
        const outcome = await add.done;
        const before = nodeState(net);
        if (outcome.code === 0) landed.completed++;
        else if (JSON.stringify(before) === JSON.stringify(baseline) && containerLinks(sb, ctr.name).length === 1)
          landed.beforeAnything++;
        else landed.midway++;

        const del = await client(net, "del", id, ctr.path);
        assert.is(del.code, 0, `${step}: DEL failed: ${del.stderr}`);
        assertClean(net, baseline, ctr.name, `${step}, after DEL`);

        const again = await client(net, "add", id, ctr.path);
        assert.is(again.code, 0, `${step}: the next ADD failed: ${again.stderr}`);
        assert.match(
          JSON.parse(again.stdout).ips?.[0]?.address ?? "",
          /^10\.61\./,
          `${step}: the next ADD has an address`,
        );
        assert.is((await client(net, "del", id, ctr.path)).code, 0, `${step}: DEL after the next ADD`);
        assertClean(net, baseline, ctr.name, `${step}, after ADD and DEL`);
      }
      console.log(
        `  kill loop: seed ${seed}; ${landed.beforeAnything} kills before any change, ${landed.midway} midway, ${landed.completed} after completion`,
      );
    } catch (e) {
      (e as Error).message =
        `[seed ${seed} (replay with TSCNI_SEED=${seed}); network ${NET}; ${step}] ${(e as Error).message}`;
      throw e;
    }
  },
);

test.run();
