/**
 * An etcd v3 client over the JSON gateway etcd serves on its client URL (`/v3/...`), so the node
 * agent needs no gRPC library and runs in the compiled executable with plain `fetch`. The gateway
 * speaks proto3 JSON: keys and values are base64, int64s are strings, and zero values are left
 * out (a PUT watch event has no `type`, a failed txn no `succeeded`, version 0 no `version`), which
 * is why every field read here has a default.
 */

/** A key as the agent sees it: text key and value, revisions as the strings etcd sends. */
export interface KeyValue {
  key: string;
  value: string;
  createRevision: string;
  modRevision: string;
  /** The etcd lease the key is attached to, "0" for none (a reservation). */
  lease: string;
}

export interface RangeResult {
  kvs: KeyValue[];
  /** The store revision the answer was read at: a watch from revision + 1 misses nothing. */
  revision: string;
}

export interface WatchEvent {
  type: "PUT" | "DELETE";
  kv: KeyValue;
}

/** Why the store cannot be used: unreachable, or an answer that is an error. */
export class EtcdError extends Error {
  constructor(
    message: string,
    readonly endpoint: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

export const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");
const unb64 = (s: unknown) => (typeof s === "string" ? Buffer.from(s, "base64").toString("utf8") : "");
const str = (v: unknown, dflt = "0") => (typeof v === "string" || typeof v === "number" ? String(v) : dflt);

/** The range end that makes a range a prefix range: the prefix with its last byte plus one. */
export function prefixEnd(prefix: string): string {
  const b = Buffer.from(prefix, "utf8");
  for (let i = b.length - 1; i >= 0; i--) {
    if (b[i]! < 0xff) {
      const end = Buffer.from(b.subarray(0, i + 1));
      end[i]!++;
      return end.toString("base64");
    }
  }
  return Buffer.from([0]).toString("base64"); // all 0xff: etcd's "to the end of the keyspace"
}

type Json = Record<string, unknown>;

/** One key as the gateway sends it. */
export function decodeKv(kv: Json): KeyValue {
  return {
    key: unb64(kv.key),
    value: unb64(kv.value),
    createRevision: str(kv.create_revision),
    modRevision: str(kv.mod_revision),
    lease: str(kv.lease),
  };
}

/** The events of one watch response message, or why the watch ended. */
export function decodeWatchMessage(msg: Json): { events: WatchEvent[]; created: boolean; ended?: string } {
  const r = (msg.result ?? {}) as Json;
  if (msg.error) return { events: [], created: false, ended: `watch error: ${JSON.stringify(msg.error)}` };
  if (r.compact_revision && r.compact_revision !== "0")
    return { events: [], created: false, ended: `watch revision compacted (at ${str(r.compact_revision)})` };
  if (r.canceled) return { events: [], created: false, ended: `watch canceled: ${str(r.cancel_reason, "")}` };
  const events = ((r.events ?? []) as Json[]).map((e) => ({
    type: e.type === "DELETE" ? ("DELETE" as const) : ("PUT" as const),
    kv: decodeKv((e.kv ?? {}) as Json),
  }));
  return { events, created: r.created === true };
}

/**
 * Splits a streamed body into the JSON messages it holds. The gateway ends each message with a
 * newline; a message may arrive in several chunks, so the unfinished tail is handed back.
 */
export function splitMessages(buffer: string): { messages: Json[]; rest: string } {
  const lines = buffer.split("\n");
  const rest = lines.pop() ?? "";
  const messages = lines.filter((l) => l.trim() !== "").map((l) => JSON.parse(l) as Json);
  return { messages, rest };
}

export interface EtcdOptions {
  /** Per-request limit, so a store that accepts connections but never answers is noticed. */
  timeoutMs?: number;
}

export class EtcdClient {
  private current = 0;
  private readonly timeoutMs: number;

  constructor(
    readonly endpoints: readonly string[],
    opts: EtcdOptions = {},
  ) {
    if (endpoints.length === 0) throw new Error("no etcd endpoints");
    this.timeoutMs = opts.timeoutMs ?? 5000;
  }

  /** The endpoint requests go to now (the last one that answered). */
  get endpoint(): string {
    return this.endpoints[this.current]!.replace(/\/+$/, "");
  }

  /** POSTs to each endpoint in turn, starting with the last that answered, until one does. */
  private async call(path: string, body: Json): Promise<Json> {
    let last: EtcdError | undefined;
    for (let n = 0; n < this.endpoints.length; n++) {
      const ep = this.endpoint;
      try {
        const res = await fetch(`${ep}/v3/${path}`, {
          method: "POST",
          body: JSON.stringify(body),
          headers: { "content-type": "application/json" },
          signal: AbortSignal.timeout(this.timeoutMs),
        });
        const json = (await res.json()) as Json;
        // An answer with an error is the store's word, not an unreachable endpoint: no failover.
        if (!res.ok || json.error)
          throw new EtcdError(
            `etcd ${path} at ${ep}: ${str(json.message ?? json.error, res.statusText)}`,
            ep,
            res.status,
          );
        return json;
      } catch (e) {
        if (e instanceof EtcdError) throw e;
        last = new EtcdError(`etcd at ${ep} unreachable: ${(e as Error).message}`, ep);
        this.current = (this.current + 1) % this.endpoints.length;
      }
    }
    throw last!;
  }

  /** One key, or every key under a prefix. */
  async range(key: string, opts: { prefix?: boolean } = {}): Promise<RangeResult> {
    const r = await this.call("kv/range", { key: b64(key), ...(opts.prefix ? { range_end: prefixEnd(key) } : {}) });
    const header = (r.header ?? {}) as Json;
    return { kvs: ((r.kvs ?? []) as Json[]).map(decodeKv), revision: str(header.revision) };
  }

  async get(key: string): Promise<KeyValue | undefined> {
    return (await this.range(key)).kvs[0];
  }

  /** Writes a key, attached to an etcd lease when one is given. */
  async put(key: string, value: string, lease?: string): Promise<void> {
    await this.call("kv/put", { key: b64(key), value: b64(value), ...(lease ? { lease } : {}) });
  }

  /** Writes the key only if it does not exist (version 0): false when another writer has it. */
  async createIfAbsent(key: string, value: string, lease?: string): Promise<boolean> {
    const r = await this.call("kv/txn", {
      compare: [{ key: b64(key), target: "VERSION", result: "EQUAL", version: "0" }],
      success: [{ request_put: { key: b64(key), value: b64(value), ...(lease ? { lease } : {}) } }],
    });
    return r.succeeded === true;
  }

  /** Deletes one key or a prefix; resolves to how many keys went. */
  async delete(key: string, opts: { prefix?: boolean } = {}): Promise<number> {
    const r = await this.call("kv/deleterange", {
      key: b64(key),
      ...(opts.prefix ? { range_end: prefixEnd(key) } : {}),
    });
    return Number(str(r.deleted));
  }

  /** A new etcd lease; etcd may raise a tiny TTL to its minimum, so the granted TTL is returned. */
  async leaseGrant(ttlSeconds: number): Promise<{ id: string; ttl: number }> {
    const r = await this.call("lease/grant", { TTL: String(ttlSeconds) });
    return { id: str(r.ID), ttl: Number(str(r.TTL)) };
  }

  /** Refreshes a lease to its full TTL; resolves to the TTL left, 0 when the lease is gone. */
  async leaseKeepAlive(id: string): Promise<number> {
    const r = await this.call("lease/keepalive", { ID: id });
    return Number(str(((r.result ?? {}) as Json).TTL));
  }

  /** Seconds left on a lease, -1 when it does not exist. */
  async leaseTimeToLive(id: string): Promise<number> {
    const r = await this.call("lease/timetolive", { ID: id });
    return Number(str(r.TTL, "-1"));
  }

  async leaseRevoke(id: string): Promise<void> {
    await this.call("lease/revoke", { ID: id });
  }

  /**
   * Watches a prefix from a revision, calling `onEvents` for each batch, until `signal` aborts
   * (resolves) or the stream ends or fails (rejects with the reason, so the caller re-lists and
   * diffs before watching again: events between are otherwise lost).
   */
  async watch(
    prefix: string,
    startRevision: string,
    onEvents: (events: WatchEvent[]) => void | Promise<void>,
    signal: AbortSignal,
    onCreated?: () => void,
  ): Promise<void> {
    const ep = this.endpoint;
    const body = { create_request: { key: b64(prefix), range_end: prefixEnd(prefix), start_revision: startRevision } };
    let res: Response;
    try {
      res = await fetch(`${ep}/v3/watch`, { method: "POST", body: JSON.stringify(body), signal });
    } catch (e) {
      if (signal.aborted) return;
      this.current = (this.current + 1) % this.endpoints.length;
      throw new EtcdError(`etcd at ${ep} unreachable: ${(e as Error).message}`, ep);
    }
    if (!res.ok || !res.body) throw new EtcdError(`etcd watch at ${ep}: HTTP ${res.status}`, ep, res.status);
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        const { messages, rest } = splitMessages(buffer + decoder.decode(chunk, { stream: true }));
        buffer = rest;
        for (const m of messages) {
          const d = decodeWatchMessage(m);
          if (d.ended) throw new EtcdError(d.ended, ep);
          if (d.created) onCreated?.();
          if (d.events.length > 0) await onEvents(d.events);
        }
      }
    } catch (e) {
      if (signal.aborted) return;
      if (e instanceof EtcdError) throw e;
      throw new EtcdError(`etcd watch at ${ep} broke: ${(e as Error).message}`, ep);
    }
    if (!signal.aborted) throw new EtcdError(`etcd watch at ${ep} ended`, ep);
  }
}
