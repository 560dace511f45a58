import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";

/**
 * Writes lease keys into the benchmark's etcd from inside its namespace (the benchmark itself runs
 * in the machine's namespace, which reaches no sandbox address): a long-lived Node process, so the
 * clock of a put starts when the request leaves, not when an etcdctl process has started.
 */

const ROOT = resolve(import.meta.dirname, "..", "..");

export interface StoreRequest {
  id: number;
  op: "put" | "del";
  kvs: { key: string; value?: string }[];
}

export interface StoreReply {
  id: number;
  /** Wall clock (epoch ms) just before the first request, and once the last was answered. */
  sentAt: number;
  doneAt: number;
  error?: string;
}

export class StoreWriter {
  private readonly proc: ChildProcessWithoutNullStreams;
  private readonly pending = new Map<number, (r: StoreReply) => void>();
  private nextId = 1;
  private readonly exited: Promise<void>;

  constructor(etcdNs: string, url: string) {
    this.proc = spawn(
      "ip",
      [
        "netns",
        "exec",
        etcdNs,
        process.execPath,
        "--import",
        "tsx",
        join(ROOT, "bench", "lib", "store-writer-main.ts"),
        url,
      ],
      { cwd: ROOT, stdio: ["pipe", "pipe", "pipe"] },
    );
    this.proc.stderr.on("data", (d: Buffer) => process.stderr.write(`[store writer] ${d}`));
    createInterface({ input: this.proc.stdout }).on("line", (line) => {
      const r = JSON.parse(line) as StoreReply;
      this.pending.get(r.id)?.(r);
      this.pending.delete(r.id);
    });
    this.exited = new Promise((res) => this.proc.on("exit", () => res()));
  }

  private send(op: StoreRequest["op"], kvs: StoreRequest["kvs"]): Promise<StoreReply> {
    const id = this.nextId++;
    return new Promise((res, rej) => {
      this.pending.set(id, (r) => (r.error ? rej(new Error(`etcd ${op}: ${r.error}`)) : res(r)));
      this.proc.stdin.write(`${JSON.stringify({ id, op, kvs })}\n`);
    });
  }

  put(kvs: { key: string; value: string }[]) {
    return this.send("put", kvs);
  }

  del(keys: string[]) {
    return this.send(
      "del",
      keys.map((key) => ({ key })),
    );
  }

  /** Closing stdin ends it (readline sees the end, nothing else keeps it alive). */
  async close() {
    this.proc.stdin.end();
    await this.exited;
  }
}
