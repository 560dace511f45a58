import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { createInterface } from "node:readline";

/** What a node must hold for one peer: flannel's three objects on the VXLAN device. */
export interface PeerObjects {
  /** The peer's subnet, a.b.c.d/len, and its network address (route gateway, neighbour). */
  subnet: string;
  addr: string;
  vtepMac: string;
  publicIp: string;
}

/**
 * `ip -ts monitor route neigh` inside one node namespace, keeping which routes, neighbours and FDB
 * entries on the device exist and since when (the kernel's notifications, stamped by ip as they
 * arrive, wall clock): when a peer's three objects are all there is read from the kernel's own
 * change stream, without polling the node. A no-op replace sends no notification, so a time is
 * the object's appearance.
 */
export class PeerWatch {
  private readonly proc: ChildProcessWithoutNullStreams;
  private readonly routes = new Map<string, { via: string; at: number }>();
  private readonly neighs = new Map<string, { mac: string; at: number }>();
  private readonly fdbs = new Map<string, { dst: string; at: number }>();
  private waiters: (() => void)[] = [];
  private readonly ready: Promise<void>;
  /** Lines ip printed that were about the device. */
  events = 0;
  /** ip's stamp (wall-clock ms) of the last of those: when a `gone()` wait resolves, the removal's time. */
  lastEventAt = NaN;

  constructor(
    readonly ns: string,
    readonly dev: string,
  ) {
    this.proc = spawn("ip", ["netns", "exec", ns, "ip", "-ts", "monitor", "route", "neigh"], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    this.proc.stderr.on("data", (d: Buffer) => process.stderr.write(`[ip monitor ${ns}] ${d}`));
    createInterface({ input: this.proc.stdout }).on("line", (l) => this.onLine(l));
    // ip prints nothing when it is subscribed: give it a moment (it starts in milliseconds).
    this.ready = new Promise((res) => setTimeout(res, 300));
  }

  started() {
    return this.ready;
  }

  private onLine(line: string) {
    const m = /^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?\]\s+(Deleted\s+)?(.*)$/.exec(line);
    if (!m) return;
    // ip stamps with local time and no zone; Date.parse reads a zone-less date-time as local too.
    const at = Date.parse(m[1]!) + Number(m[2] ?? 0) * 1000;
    const deleted = m[3] !== undefined;
    const words = m[4]!.trim().split(/\s+/);
    const after = (w: string) => words[words.indexOf(w) + 1];
    if (after("dev") !== this.dev) return;
    this.events++;
    this.lastEventAt = at;
    const dst = words[0]!;
    if (dst.includes("/")) {
      if (deleted) this.routes.delete(dst);
      else if (this.routes.get(dst)?.via !== after("via")) this.routes.set(dst, { via: after("via") ?? "", at });
    } else if (words.includes("NOARP")) {
      // A VXLAN FDB entry: ip prints it as a neighbour of the remote address, NOARP PERMANENT.
      const mac = after("lladdr")?.toLowerCase() ?? "";
      if (deleted) this.fdbs.delete(mac);
      else if (this.fdbs.get(mac)?.dst !== dst) this.fdbs.set(mac, { dst, at });
    } else {
      const mac = words.includes("lladdr") ? after("lladdr")?.toLowerCase() : undefined;
      if (deleted || !mac) this.neighs.delete(dst);
      else if (this.neighs.get(dst)?.mac !== mac) this.neighs.set(dst, { mac, at });
    }
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Wall-clock ms at which the last of the peer's three objects appeared; undefined while one is missing. */
  programmedAt(p: PeerObjects): number | undefined {
    const r = this.routes.get(p.subnet);
    const n = this.neighs.get(p.addr);
    const f = this.fdbs.get(p.vtepMac);
    if (r?.via !== p.addr || n?.mac !== p.vtepMac || f?.dst !== p.publicIp) return undefined;
    return Math.max(r.at, n.at, f.at);
  }

  /** Whether none of the peer's objects is left. */
  gone(p: PeerObjects): boolean {
    return !this.routes.has(p.subnet) && !this.neighs.has(p.addr) && !this.fdbs.has(p.vtepMac);
  }

  /** Resolves once `done()` holds (checked on every change), or with false after `timeoutMs`. */
  until(done: () => boolean, timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      let expired = false;
      const timer = setTimeout(() => {
        expired = true;
        resolve(false);
      }, timeoutMs);
      const check = () => {
        if (expired) return;
        if (done()) {
          clearTimeout(timer);
          resolve(true);
        } else this.waiters.push(check);
      };
      check();
    });
  }

  async close() {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const exited = new Promise((res) => this.proc.on("exit", res));
    this.proc.kill("SIGTERM");
    await exited;
  }
}
