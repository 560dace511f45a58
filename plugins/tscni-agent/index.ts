import { mkdirSync } from "node:fs";
import { createServer } from "node:http";
import { dirname } from "node:path";
import { EtcdClient, type KeyValue, type WatchEvent } from "../../lib/etcd/client.ts";
import { readNoFollow, replaceFile } from "../../lib/safe-file.ts";
import { ensureForwardRules, ensureMasqRules } from "./iptables.ts";
import { parseFlags, renewAfter, USAGE, type AgentFlags } from "./flags.ts";
import { acquire, type Backend, type Held, leaseValue, peerOf, renew } from "./lease.ts";
import { firstHost, type Network, parseNetworkConfig, subnetCidr, subnetKey, subnetOfEnv } from "./network.ts";
import { diff, keyOf, objectsOf, onOurL2, opsOf, type PeerObject, type Routing } from "./peers.ts";
import {
  applyPeerOps,
  deviceExists,
  deviceName,
  ensureDevice,
  findUnderlay,
  reconcile,
  type Underlay,
} from "./vxlan.ts";

const DEVICE_CHECK_MS = 2000;

declare const __PKG_VERSION__: string;

// tscni-agent: flannel's node agent for the vxlan and host-gw backends, store-compatible with flanneld (same
// keys and values in etcd), so a cluster can mix both during a migration.

const log = (m: string) => process.stderr.write(`${new Date().toISOString()} tscni-agent: ${m}\n`);

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((res) => {
    if (signal.aborted) return res();
    const t = setTimeout(res, ms);
    signal.addEventListener(
      "abort",
      () => {
        clearTimeout(t);
        res();
      },
      { once: true },
    );
  });

/** Retries `fn` with backoff 100 ms → 5 s until it succeeds or the agent stops; logs each new reason. */
async function retrying<T>(what: string, fn: () => Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  let delay = 100;
  let said = "";
  while (!signal.aborted) {
    try {
      return await fn();
    } catch (e) {
      const msg = `${what}: ${(e as Error).message}`;
      if (msg !== said) log(`${msg}; retrying`);
      said = msg;
      await sleep(delay, signal);
      delay = Math.min(delay * 2, 5000);
    }
  }
  return undefined;
}

class Agent {
  private readonly etcd: EtcdClient;
  private readonly configKey: string;
  private readonly subnetsPrefix: string;
  /** What each lease key had programmed: the "present" a watch event diffs against. */
  private programmed = new Map<string, PeerObject[]>();
  private routing?: Routing;
  private held?: Held;
  private value = "";
  private dev = "";
  /** subnet.env is written: what /healthz reports. */
  ready = false;

  constructor(
    private readonly f: AgentFlags,
    private readonly signal: AbortSignal,
  ) {
    this.etcd = new EtcdClient(f.etcdEndpoints);
    this.configKey = `${f.etcdPrefix}/config`;
    this.subnetsPrefix = `${f.etcdPrefix}/subnets/`;
  }

  /** The config key, waited for until it exists and is valid; each log line names the key. */
  private async config(): Promise<Network> {
    const n = await retrying(
      "network config",
      async () => {
        const kv = await this.etcd.get(this.configKey);
        if (!kv) throw new Error(`${this.configKey} not found in etcd (write it with the v3 API: etcdctl put)`);
        try {
          return parseNetworkConfig(kv.value);
        } catch (e) {
          throw new Error(`${this.configKey} is invalid: ${(e as Error).message}`);
        }
      },
      this.signal,
    );
    return n!;
  }

  async run(): Promise<void> {
    const under = await retrying("underlay", () => findUnderlay(this.f.iface, this.f.publicIp), this.signal);
    if (!under) return;
    log(`underlay ${under.dev} ${under.publicIp} (MTU ${under.mtu}); etcd ${this.f.etcdEndpoints.join(",")}`);
    const net = await this.config();
    if (this.signal.aborted) return;
    const vxlan = net.backend === "vxlan";
    // host-gw does not encapsulate: pods get the underlay's MTU, as flannel's host-gw gives them.
    const mtu = vxlan ? (net.mtu ?? under.mtu) - 50 : under.mtu;
    const previous = subnetOfEnv(readNoFollow(this.f.subnetFile) ?? "");
    // The device comes first for its MAC (the lease carries it); its address needs the subnet, so
    // it is set again once the subnet is known (a kept device already has it).
    const held = await retrying(
      `lease in ${this.subnetsPrefix}`,
      async () => {
        const mac = vxlan ? (await ensureDevice(net.vni, net.port, under, mtu)).mac : undefined;
        this.value = leaseValue(under.publicIp, this.backend(net, mac));
        return acquire(
          this.etcd,
          this.f.etcdPrefix,
          net,
          under.publicIp,
          this.value,
          this.f.leaseTtl,
          previous,
          log,
          mac,
        );
      },
      this.signal,
    );
    if (!held) return;
    this.held = held;
    if (vxlan) this.dev = (await ensureDevice(net.vni, net.port, under, mtu, held.subnet)).dev;
    this.routing = {
      backend: net.backend,
      vxlanDev: vxlan ? deviceName(net.vni) : undefined,
      underlay: under.dev,
      underlayNets: under.nets,
      directRouting: vxlan && net.directRouting,
      network: net.network,
      subnetLen: net.subnetLen,
    };
    // Before subnet.env: pods may start only once cluster traffic is let through FORWARD.
    await retrying("iptables rules", async () => this.ensureRules(net), this.signal);
    log(`acquired ${held.key} (etcd lease ${held.leaseId}, TTL ${held.ttl} s)`);
    this.writeSubnetEnv(net, mtu);
    void this.renewLoop();
    await this.watchLoop(net, under, mtu);
  }

  private backend(net: Network, mac: string | undefined): Backend {
    return net.backend === "vxlan" ? { type: "vxlan", vni: net.vni, mac: mac! } : { type: "host-gw" };
  }

  private ensureRules(net: Network) {
    ensureForwardRules(net.network);
    if (this.f.ipMasq) ensureMasqRules(net.network, subnetCidr(this.held!.subnet));
  }

  /** subnet.env, replaced whole: the flannel plugin reads it at any moment. */
  private writeSubnetEnv(net: Network, mtu: number) {
    mkdirSync(dirname(this.f.subnetFile), { recursive: true });
    const text = `FLANNEL_NETWORK=${net.network}\nFLANNEL_SUBNET=${firstHost(this.held!.subnet)}\nFLANNEL_MTU=${mtu}\nFLANNEL_IPMASQ=${this.f.ipMasq}\n`;
    replaceFile(this.f.subnetFile, text, 0o644);
    log(`wrote ${this.f.subnetFile}`);
    this.ready = true;
  }

  private async renewLoop() {
    while (!this.signal.aborted) {
      await sleep(renewAfter(this.held!.ttl, this.f.renewMargin) * 1000, this.signal);
      if (this.signal.aborted) return;
      const h = await retrying(
        "renewing the lease",
        () => renew(this.etcd, this.held!, this.value, this.f.leaseTtl),
        this.signal,
      );
      if (h) {
        this.held = h;
        log(`renewed ${h.key} (etcd lease ${h.leaseId})`);
      }
    }
  }

  /**
   * List, reconcile, watch from the list's revision; on any break re-list and diff again. The full
   * diff against the kernel runs only here; a watch event programs just the leases it names.
   */
  private async watchLoop(net: Network, under: Underlay, mtu: number) {
    let delay = 100;
    while (!this.signal.aborted) {
      try {
        const { kvs, revision } = await this.etcd.range(this.subnetsPrefix, { prefix: true });
        this.programmed = new Map();
        for (const kv of kvs) this.learn(kv);
        if (net.backend === "vxlan") {
          // A device deleted by hand is recreated here, with a new MAC that the lease must carry.
          const { mac } = await ensureDevice(net.vni, net.port, under, mtu, this.held!.subnet);
          await this.publish(leaseValue(under.publicIp, this.backend(net, mac)));
        }
        this.ensureRules(net); // put back if flushed meanwhile
        await reconcile(this.routing!, [...this.programmed.values()].flat(), log);
        delay = 100;
        // The device is checked every few seconds; its loss ends the watch so the loop re-lists.
        const lost = new AbortController();
        const check =
          net.backend === "vxlan"
            ? setInterval(() => {
                void deviceExists(this.dev).then((ok) => {
                  if (!ok && !lost.signal.aborted) {
                    log(`${this.dev} is gone: recreating it`);
                    lost.abort();
                  }
                });
              }, DEVICE_CHECK_MS)
            : undefined;
        await this.etcd
          .watch(
            this.subnetsPrefix,
            String(Number(revision) + 1),
            (events) => this.onEvents(events),
            AbortSignal.any([this.signal, lost.signal]),
          )
          .finally(() => clearInterval(check));
      } catch (e) {
        if (this.signal.aborted) return;
        log(`${(e as Error).message}; re-listing in ${delay} ms`);
        await sleep(delay, this.signal);
        delay = Math.min(delay * 2, 5000);
      }
    }
  }

  /**
   * One watch response: the leases it names go from what they had programmed to what they now
   * want. Their objects are put again (replace: a renewal repairs a hand-deleted entry), the ones
   * they no longer want are deleted unless another lease still wants the same one.
   */
  private async onEvents(events: readonly WatchEvent[]) {
    const touched = new Set<string>();
    const before: PeerObject[] = [];
    for (const e of events) {
      if (!touched.has(e.kv.key)) before.push(...(this.programmed.get(e.kv.key) ?? []));
      touched.add(e.kv.key);
      if (e.type === "DELETE") {
        if (this.programmed.delete(e.kv.key)) log(`peer ${e.kv.key} is gone`);
        if (e.kv.key === this.held!.key) await this.reclaim();
      } else this.learn(e.kv, true);
    }
    const after = [...touched].flatMap((k) => this.programmed.get(k) ?? []);
    const { del } = diff(after, before);
    const kept = del.length === 0 ? new Set<string>() : this.keysWantedBesides(touched);
    await applyPeerOps(opsOf({ del: del.filter((o) => !kept.has(keyOf(o))), put: after }), log);
  }

  /** The object keys the leases other than `touched` want (an FDB entry two leases share). */
  private keysWantedBesides(touched: ReadonlySet<string>): Set<string> {
    const out = new Set<string>();
    for (const [k, objs] of this.programmed) if (!touched.has(k)) for (const o of objs) out.add(keyOf(o));
    return out;
  }

  /** Re-puts our lease when its value changed (a recreated device's MAC), keeping its etcd lease. */
  private async publish(value: string) {
    if (value === this.value) return;
    this.value = value;
    await this.etcd.put(this.held!.key, value, this.held!.leaseId);
    log(`updated ${this.held!.key}: ${value}`);
  }

  /** A lease put: what it wants programmed (nothing for a lease we cannot use). */
  private learn(kv: KeyValue, announce = false) {
    if (kv.key === this.held!.key) return;
    const r = this.routing!;
    const p = peerOf(this.f.etcdPrefix, kv, r.backend);
    const objs = p ? objectsOf(r, p) : [];
    const had = this.programmed.get(kv.key);
    if (objs.length > 0) this.programmed.set(kv.key, objs);
    else this.programmed.delete(kv.key);
    if (p && objs.length === 0)
      log(`peer ${kv.key} at ${p.publicIp} is not on ${r.underlay}'s subnets: host-gw cannot reach it`);
    else if (!p && had) log(`peer ${kv.key} is no longer a ${r.backend} lease`);
    else if (p && announce && (!had || diff(objs, had).put.length > 0))
      log(`peer ${kv.key} at ${p.publicIp}${onOurL2(r, p.publicIp) && objs.length === 1 ? " (direct route)" : ""}`);
  }

  /** Our own key was deleted: take the same subnet back (flannel exits instead); pods keep running. */
  private async reclaim() {
    log(`own lease ${this.held!.key} was deleted: reclaiming ${subnetKey(this.held!.subnet)}`);
    const grant = await this.etcd.leaseGrant(this.f.leaseTtl);
    if (await this.etcd.createIfAbsent(this.held!.key, this.value, grant.id)) {
      this.held = { ...this.held!, leaseId: grant.id, ttl: grant.ttl };
      log(`reclaimed ${this.held.key}`);
    } else log(`${this.held!.key} was taken by another node meanwhile`);
  }
}

export async function agent(args: string[]): Promise<number> {
  let f: AgentFlags;
  try {
    f = parseFlags(args);
  } catch (e) {
    process.stderr.write(`tscni-agent: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (f.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (f.version) {
    process.stdout.write(`tscni-agent ${typeof __PKG_VERSION__ === "string" ? __PKG_VERSION__ : "dev"}\n`);
    return 0;
  }
  const ac = new AbortController();
  // SIGTERM/SIGINT: stop watching and exit 0; kernel state and the lease stay, as flannel leaves them.
  const stop = (sig: string) => {
    log(`${sig}: exiting, kernel state and lease kept`);
    ac.abort();
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  const a = new Agent(f, ac.signal);
  // Liveness for a DaemonSet: 200 only once subnet.env exists, as flannel's /healthz and /readyz.
  const healthz =
    f.healthzPort > 0
      ? createServer((req, res) => {
          const ok = req.url === "/healthz" && a.ready;
          res.writeHead(req.url === "/healthz" ? (ok ? 200 : 503) : 404).end(ok ? "ok\n" : "");
        }).listen(f.healthzPort, f.healthzIp)
      : undefined;
  healthz?.on("error", (e) => log(`healthz on ${f.healthzIp}:${f.healthzPort}: ${e.message}`));
  ac.signal.addEventListener("abort", () => healthz?.close(), { once: true });
  try {
    await a.run();
  } catch (e) {
    if (!ac.signal.aborted) {
      log(`fatal: ${(e as Error).message}`);
      return 1;
    }
  }
  return 0;
}
