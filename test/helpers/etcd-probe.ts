/**
 * Runs the etcd client's operations against a real etcd and prints what it saw as JSON. The
 * integration test starts it inside the sandbox namespace that holds etcd (sockets belong to the
 * namespace they are made in, and the test process stays in its own).
 */
import { EtcdClient, type WatchEvent } from "../../lib/etcd/client.ts";

const [url] = process.argv.slice(2);
const c = new EtcdClient(["http://127.0.0.1:1", url!], { timeoutMs: 2000 });
const p = "/probe/subnets/";

const before = await c.range(p, { prefix: true });
const events: WatchEvent[] = [];
const ac = new AbortController();
let created!: () => void;
const watchCreated = new Promise<void>((r) => {
  created = r;
});
const watching = c
  .watch(
    p,
    String(Number(before.revision) + 1),
    (evs) => {
      events.push(...evs);
      if (events.length >= 3) ac.abort();
    },
    ac.signal,
    created,
  )
  .catch((e: Error) => `watch failed: ${e.message}`);
await watchCreated;

const lease = await c.leaseGrant(30);
const first = await c.createIfAbsent(`${p}10.1.1.0-24`, '{"PublicIP":"1"}', lease.id);
const second = await c.createIfAbsent(`${p}10.1.1.0-24`, '{"PublicIP":"2"}', lease.id);
await c.put(`${p}10.1.2.0-24`, "reservation");
const created1 = await c.get(`${p}10.1.1.0-24`);
const keptAlive = await c.leaseKeepAlive(lease.id);
await c.put(`${p}10.1.1.0-24`, '{"PublicIP":"1","renewed":true}', lease.id);
const renewed = await c.get(`${p}10.1.1.0-24`);
const listed = await c.range(p, { prefix: true });
await c.leaseRevoke(lease.id);
const watchResult = await Promise.race([watching, new Promise((r) => setTimeout(() => r("watch timed out"), 10_000))]);
const afterRevoke = await c.range(p, { prefix: true });
const ttlGone = await c.leaseTimeToLive(lease.id);
const deleted = await c.delete(p, { prefix: true });
let missing = "";
try {
  await new EtcdClient(["http://127.0.0.1:1"], { timeoutMs: 1000 }).range("/x");
} catch (e) {
  missing = (e as Error).message;
}

console.log(
  JSON.stringify({
    beforeCount: before.kvs.length,
    lease,
    first,
    second,
    created1,
    keptAlive,
    renewed,
    listed: listed.kvs.map((k) => k.key),
    events: events.map((e) => [e.type, e.kv.key, e.kv.value]),
    watchResult: watchResult ?? "",
    afterRevoke: afterRevoke.kvs.map((k) => k.key),
    ttlGone,
    deleted,
    missing,
    endpoint: c.endpoint,
  }),
);
