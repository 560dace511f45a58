/**
 * Runs inside the etcd namespace (see store-writer.ts): reads one JSON request a line on stdin,
 * writes or deletes the keys through lib/etcd's client (the agent's own), and answers with the
 * wall-clock time (epoch ms) just before the first request left and once the last was answered.
 */
import { createInterface } from "node:readline";
import { EtcdClient } from "../../lib/etcd/client.ts";
import type { StoreReply, StoreRequest } from "./store-writer.ts";

const etcd = new EtcdClient([process.argv[2]!], { timeoutMs: 30_000 });
const now = () => performance.timeOrigin + performance.now();
/** Enough writes in flight to fill etcd's batches, few enough not to starve the agent of CPU. */
const IN_FLIGHT = 8;

async function handle(req: StoreRequest): Promise<StoreReply> {
  const sentAt = now();
  let next = 0;
  const lane = async () => {
    while (next < req.kvs.length) {
      const kv = req.kvs[next++]!;
      if (req.op === "put") await etcd.put(kv.key, kv.value ?? "");
      else await etcd.delete(kv.key);
    }
  };
  await Promise.all(Array.from({ length: Math.min(IN_FLIGHT, req.kvs.length) }, lane));
  return { id: req.id, sentAt, doneAt: now() };
}

createInterface({ input: process.stdin }).on("line", (line) => {
  const req = JSON.parse(line) as StoreRequest;
  handle(req).then(
    (r) => process.stdout.write(`${JSON.stringify(r)}\n`),
    (e) => process.stdout.write(`${JSON.stringify({ id: req.id, error: (e as Error).message })}\n`),
  );
});
