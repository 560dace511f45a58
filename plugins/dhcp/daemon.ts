import { unlinkSync, writeFileSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { basename, dirname, isAbsolute, join } from "node:path";
import { mkdirSync } from "node:fs";
import { loadLibc } from "../../lib/kernel/libc.ts";
import { acquire, type Attachment, clientIdOf, type Lease, LinkGone, release, renew, type Timing } from "./client.ts";
import { clientOptions, DEFAULT_SOCKET, parseDhcpConfig } from "./config.ts";
import type { CmdArgs, Method, Reply } from "./rpc.ts";
import { LeaseStore } from "./store.ts";

/**
 * `dhcp daemon`: serves DHCP.Allocate and DHCP.Release on a unix socket and keeps every lease it
 * acquired renewed (at T1) until its release. Flags as the reference's.
 */

interface Flags {
  socketPath: string;
  pidFile?: string;
  hostPrefix: string;
  timing: Timing;
}

/** Go's time.ParseDuration for what these flags take: "10s", "1m2s", "500ms", "1.5h". */
export function parseDuration(s: string): number | undefined {
  const unit: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  const parts = [...s.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join("") !== s) return s === "0" ? 0 : undefined;
  return parts.reduce((ms, p) => ms + Number(p[1]) * unit[p[2]!]!, 0);
}

export function parseFlags(argv: string[]): Flags {
  const f: Flags = { socketPath: DEFAULT_SOCKET, hostPrefix: "", timing: { timeoutMs: 10_000, resendMaxMs: 62_000 } };
  for (let i = 0; i < argv.length; i++) {
    const m = /^--?([a-z]+)(?:=(.*))?$/.exec(argv[i]!);
    if (!m) throw new Error(`unexpected argument ${argv[i]}`);
    const name = m[1]!;
    if (name === "broadcast") continue; // always on (see client.ts); accepted as the reference has it
    const value = m[2] ?? argv[++i];
    if (value === undefined) throw new Error(`flag needs an argument: -${name}`);
    const duration = () => {
      const d = parseDuration(value);
      if (d === undefined) throw new Error(`invalid value "${value}" for flag -${name}: invalid duration`);
      return d;
    };
    if (name === "socketpath") f.socketPath = value;
    else if (name === "pidfile") {
      if (!isAbsolute(value)) throw new Error("-pidfile must be an absolute path");
      f.pidFile = value;
    } else if (name === "hostprefix") f.hostPrefix = value;
    else if (name === "timeout") f.timing.timeoutMs = duration();
    else if (name === "resendmax") f.timing.resendMaxMs = duration();
    else if (name === "resendtimeout") f.timing.timeoutMs = Math.max(f.timing.timeoutMs, duration());
    else throw new Error(`flag provided but not defined: -${name}`);
  }
  return f;
}

interface Held {
  attachment: Attachment;
  lease: Lease;
  priority?: number;
  timer?: NodeJS.Timeout;
}

/** Where the leases are kept: beside the socket, so a daemon per socket has its own. */
export const leaseDirOf = (socketPath: string) => join(dirname(socketPath), `${basename(socketPath)}.leases`);

class Daemon {
  private readonly leases = new Map<string, Held>();
  private readonly acquiring = new Map<string, Promise<Held>>();
  private readonly store: LeaseStore;

  constructor(private readonly f: Flags) {
    this.store = new LeaseStore(leaseDirOf(f.socketPath));
  }

  /** Resumes renewing the leases a previous daemon left on disk (at once for those past T1). */
  resume() {
    for (const s of this.store.load()) {
      const held: Held = { attachment: s.attachment, lease: s.lease, priority: s.priority };
      this.leases.set(s.key, held);
      const t1 = s.lease.boundAt + s.lease.renewSeconds * 1000;
      this.schedule(s.key, held, Math.max(0, t1 - Date.now()));
      log(`resumed the lease of ${s.key} on ${s.lease.address}`);
    }
  }

  private keep(key: string, held: Held) {
    this.store.save({ key, attachment: held.attachment, lease: held.lease, priority: held.priority });
  }

  private attachmentOf(a: CmdArgs): { key: string; attachment: Attachment; priority?: number } {
    const config = parseDhcpConfig(JSON.parse(Buffer.from(a.StdinData, "base64").toString("utf8")));
    const clientId = clientIdOf(a.ContainerID, config.name, a.IfName);
    return {
      key: `${a.ContainerID}/${config.name}/${a.IfName}`,
      attachment: {
        netns: this.f.hostPrefix + a.Netns,
        ifname: a.IfName,
        clientId,
        options: clientOptions(config, a.Args),
      },
      priority: config.ipam.priority,
    };
  }

  async allocate(a: CmdArgs) {
    const { key, attachment, priority } = this.attachmentOf(a);
    await this.acquiring.get(key)?.catch(() => undefined);
    let held = this.leases.get(key);
    if (!held) {
      // One exchange per attachment at a time: a CHECK or a retried ADD during an ADD waits for it.
      const p = acquire(attachment, this.f.timing).then((lease) => {
        const h: Held = { attachment, lease, priority };
        this.leases.set(key, h);
        this.keep(key, h);
        this.schedule(key, h);
        return h;
      });
      this.acquiring.set(key, p);
      held = await p.finally(() => this.acquiring.delete(key));
    }
    return resultOf(held.lease, priority);
  }

  async release(a: CmdArgs) {
    const { key } = this.attachmentOf(a);
    await this.acquiring.get(key)?.catch(() => undefined); // a DEL racing its ADD releases what it got
    const held = this.leases.get(key);
    if (!held) return {};
    clearTimeout(held.timer);
    this.leases.delete(key);
    this.store.remove(key);
    try {
      release(held.attachment, this.f.timing, held.lease);
    } catch (e) {
      // The interface went first (a runtime that deletes it before IPAM DEL): the lease lapses.
      log(`releasing ${key}: ${(e as Error).message}`);
    }
    return {};
  }

  /** Renews at T1; a failed renewal tries again halfway to expiry, and after it starts over. */
  private schedule(key: string, held: Held, delayMs = held.lease.renewSeconds * 1000) {
    held.timer = setTimeout(async () => {
      if (this.leases.get(key) !== held) return;
      try {
        const expired = Date.now() >= held.lease.boundAt + held.lease.leaseSeconds * 1000;
        held.lease = expired
          ? await acquire(held.attachment, this.f.timing)
          : await renew(held.attachment, this.f.timing, held.lease);
        if (this.leases.get(key) !== held) return;
        this.keep(key, held);
        this.schedule(key, held);
      } catch (e) {
        log(`renewing ${key}: ${(e as Error).message}`);
        if (e instanceof LinkGone) {
          // The container went without a DEL: stop renewing for it.
          this.leases.delete(key);
          this.store.remove(key);
          return;
        }
        const left = held.lease.boundAt + held.lease.leaseSeconds * 1000 - Date.now();
        if (this.leases.get(key) === held) this.schedule(key, held, Math.max(1000, left / 2));
      }
    }, delayMs);
    held.timer.unref?.();
  }

  handle(conn: Socket) {
    let buf = "";
    conn.on("data", (d) => {
      buf += d.toString("utf8");
      const nl = buf.indexOf("\n");
      if (nl < 0) return;
      const line = buf.slice(0, nl);
      buf = "";
      this.answer(line).then((r) => conn.end(`${JSON.stringify(r)}\n`));
    });
    conn.on("error", () => conn.destroy());
  }

  private async answer(line: string): Promise<Reply> {
    try {
      const req = JSON.parse(line) as { method: Method; params: [CmdArgs] };
      const args = req.params?.[0];
      if (!args || typeof args.StdinData !== "string") throw new Error("malformed request");
      if (req.method === "DHCP.Allocate") return { result: await this.allocate(args), error: null };
      if (req.method === "DHCP.Release") return { result: await this.release(args), error: null };
      throw new Error(`rpc: can't find method ${req.method}`);
    } catch (e) {
      return { error: (e as Error).message };
    }
  }
}

function resultOf(l: Lease, priority?: number) {
  const metric = priority === undefined ? {} : { priority };
  const routes =
    l.routes.length > 0
      ? l.routes.map((r) => ({ dst: r.dst, gw: r.gw, ...metric }))
      : l.routers.slice(0, 1).map((gw) => ({ dst: "0.0.0.0/0", gw, ...metric }));
  const dns =
    l.dns.length > 0 || l.domain ? { dns: { nameservers: l.dns, ...(l.domain ? { domain: l.domain } : {}) } } : {};
  return {
    ips: [{ address: `${l.address}/${l.prefix}`, ...(l.routers[0] ? { gateway: l.routers[0] } : {}) }],
    routes,
    ...dns,
  };
}

const log = (msg: string) => process.stderr.write(`${new Date().toISOString()} ${msg}\n`);

/** Listens on `path`, taking over a socket file nobody listens on (a daemon killed before cleanup). */
function listen(server: Server, path: string): Promise<void> {
  const once = () =>
    new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(path, () => {
        server.off("error", reject);
        resolve();
      });
    });
  return once().catch(
    (e: NodeJS.ErrnoException) =>
      new Promise<void>((resolve, reject) => {
        if (e.code !== "EADDRINUSE") return reject(e);
        const probe = connect(path);
        probe.on("connect", () => {
          probe.destroy();
          reject(new Error(`listen unix ${path}: bind: address already in use (another daemon answers there)`));
        });
        probe.on("error", () => {
          unlinkSync(path);
          once().then(resolve, reject);
        });
      }),
  );
}

export async function daemon(argv: string[]): Promise<number> {
  let f: Flags;
  try {
    f = parseFlags(argv);
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
    return 2;
  }
  if (!(await loadLibc())) {
    process.stderr.write("dhcp daemon: needs the compiled executable (libc through bun:ffi)\n");
    return 1;
  }
  const d = new Daemon(f);
  const server = createServer((c) => d.handle(c));
  mkdirSync(dirname(f.socketPath), { recursive: true });
  try {
    await listen(server, f.socketPath);
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
    return 1;
  }
  if (f.pidFile) writeFileSync(f.pidFile, `${process.pid}\n`);
  d.resume();
  log(`dhcp daemon listening on ${f.socketPath}`);
  return new Promise<number>((resolve) => {
    const stop = () => {
      server.close();
      try {
        unlinkSync(f.socketPath);
        if (f.pidFile) unlinkSync(f.pidFile);
      } catch {
        // already gone
      }
      resolve(0);
    };
    process.once("SIGTERM", stop);
    process.once("SIGINT", stop);
  });
}
