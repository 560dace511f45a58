import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Sandbox } from "../../test/helpers/sandbox.ts";
import { Worker, type Run } from "./worker.ts";

/**
 * One side of the A/B comparison: a plugin directory (ours or the reference), its own "node"
 * namespace with a worker in it, and its own libcni cache, IPAM data directory and configuration
 * files. The two sides share nothing but the libcni client, so they can run in alternation without
 * cleaning up between runs.
 */

export const BRIDGE = "benchbr0";
export const SUBNET = "10.99.0.0/16";
export const PLUGIN_NAMES = ["loopback", "bridge", "host-local", "portmap", "macvlan", "ptp"] as const;

/** Pod networks beside the bridge one (scenario 8), each run after the loopback network as a pod. */
export const OTHER_NETWORKS = ["macvlan", "ptp"] as const;
export type OtherNetwork = (typeof OTHER_NETWORKS)[number];
/** The node-side interface macvlan pods hang off (a veth whose peer stays in the node). */
export const MACVLAN_MASTER = "bmaster0";

/**
 * The standard configuration, as containerd sets a pod up: the loopback plugin as a network of its
 * own (containerd's built-in "cni-loopback"), then the pod network: bridge (gateway, masquerade,
 * hairpin) with host-local IPAM, chained to portmap with the portMappings capability.
 */
function podNetwork(ipamDir: string) {
  return {
    cniVersion: "1.0.0",
    name: "bench",
    plugins: [
      {
        type: "bridge",
        bridge: BRIDGE,
        isGateway: true,
        ipMasq: true,
        hairpinMode: true,
        ipam: { type: "host-local", ranges: [[{ subnet: SUBNET }]], routes: [{ dst: "0.0.0.0/0" }], dataDir: ipamDir },
      },
      { type: "portmap", capabilities: { portMappings: true }, snat: true },
    ],
  };
}
/** macvlan in bridge mode on the node's master, and ptp with masquerade, each with its own subnet. */
function otherNetwork(kind: OtherNetwork, ipamDir: string) {
  const ipam = (subnet: string) => ({
    type: "host-local",
    ranges: [[{ subnet }]],
    routes: [{ dst: "0.0.0.0/0" }],
    dataDir: ipamDir,
  });
  const plugin =
    kind === "macvlan"
      ? { type: "macvlan", master: MACVLAN_MASTER, mode: "bridge", ipam: ipam("10.98.0.0/16") }
      : { type: "ptp", ipMasq: true, ipam: ipam("10.97.0.0/16") };
  return { cniVersion: "1.0.0", name: `bench-${kind}`, plugins: [plugin] };
}

/** Scenario 9's network: a bridge of its own with dnsname (containers/dnsname's configuration). */
export const DNS_BRIDGE = "benchdns0";
export const DNS_GATEWAY = "10.96.0.1";
export const DNS_DOMAIN = "dns.bench";
function dnsNetwork(label: string, ipamDir: string) {
  return {
    cniVersion: "1.0.0",
    // Per side: dnsname keeps its files under /run/containers/cni/dnsname/<network>, shared by both.
    name: `bench-dns-${label}`,
    plugins: [
      {
        type: "bridge",
        bridge: DNS_BRIDGE,
        isGateway: true,
        ipMasq: true,
        ipam: { type: "host-local", ranges: [[{ subnet: "10.96.0.0/16" }]], dataDir: ipamDir },
      },
      { type: "dnsname", domainName: DNS_DOMAIN, capabilities: { aliases: true } },
    ],
  };
}

const LOOPBACK_NETWORK = { cniVersion: "1.0.0", name: "cni-loopback", plugins: [{ type: "loopback" }] };

export interface Pod {
  index: number;
  containerId: string;
  netns: string;
  netnsPath: string;
  /** Host port published to the pod's containerPort (TCP); none means an empty portMappings list. */
  hostPort?: number;
  containerPort?: number;
  /** The address host-local gave it, once added. */
  ip?: string;
}

/** A pod-level operation: the two networks' client runs added up. */
export interface PodRun {
  ok: boolean;
  wallMs: number;
  cpuMs: number;
  maxRssKb: number;
  error?: string;
  ip?: string;
  /** The two networks' own figures (only when both ran). */
  parts?: { loopback: Timing; network: Timing };
}

export interface Timing {
  wallMs: number;
  cpuMs: number;
}

export interface ClientOptions {
  /** Prepended to the client's argv (strace). */
  prefix?: readonly string[];
  /** Replaces CNI_PATH, with extra environment (the RSS wrappers). */
  cniPath?: string;
  env?: Record<string, string>;
}

export class Side {
  readonly sandbox: Sandbox;
  readonly worker: Worker;
  readonly cacheDir: string;
  readonly ipamDir: string;
  readonly podConf: string;
  readonly loopbackConf: string;
  readonly otherConfs: Record<OtherNetwork, string>;
  readonly dnsConf: string;
  private podCount = 0;

  constructor(
    readonly label: "ours" | "reference",
    readonly bin: string,
    readonly client: string,
    readonly workerPath: string,
  ) {
    this.sandbox = new Sandbox(label === "ours" ? "bchour" : "bchref");
    this.cacheDir = join(this.sandbox.tmp, "cache");
    this.ipamDir = join(this.sandbox.tmp, "ipam");
    const netd = join(this.sandbox.tmp, "net.d");
    mkdirSync(netd, { recursive: true });
    this.podConf = join(netd, "10-bench.conflist");
    this.loopbackConf = join(netd, "99-loopback.conflist");
    writeFileSync(this.podConf, JSON.stringify(podNetwork(this.ipamDir), null, 2));
    writeFileSync(this.loopbackConf, JSON.stringify(LOOPBACK_NETWORK, null, 2));
    this.otherConfs = { macvlan: join(netd, "20-macvlan.conflist"), ptp: join(netd, "30-ptp.conflist") };
    for (const kind of OTHER_NETWORKS)
      writeFileSync(this.otherConfs[kind], JSON.stringify(otherNetwork(kind, this.ipamDir), null, 2));
    this.dnsConf = join(netd, "40-dns.conflist");
    writeFileSync(this.dnsConf, JSON.stringify(dnsNetwork(label, this.ipamDir), null, 2));
    this.sandbox.inNode(["ip", "link", "add", MACVLAN_MASTER, "type", "veth", "peer", "name", `${MACVLAN_MASTER}p`]);
    this.sandbox.inNode(["ip", "link", "set", MACVLAN_MASTER, "up"]);
    this.sandbox.inNode(["ip", "link", "set", `${MACVLAN_MASTER}p`, "up"]);
    this.worker = new Worker(this.sandbox.node, workerPath);
  }

  /** A fresh container namespace (made from the root namespace, as a runtime does). */
  newPod(hostPort?: number, containerPort = 80): Pod {
    return newPod(this.sandbox, ++this.podCount, hostPort, containerPort);
  }

  /** One libcni client run for one network. */
  runClient(verb: "add" | "del", conf: string, pod: Pod, opts: ClientOptions = {}): Promise<Run> {
    return runLibcni(this.worker, this.client, { bin: this.bin, cacheDir: this.cacheDir }, verb, conf, pod, opts);
  }

  /** Whether this side's plugin directory has the plugin. */
  has(plugin: string): boolean {
    return existsSync(join(this.bin, plugin));
  }

  /** ADD as containerd does it: the loopback network, then the pod network (the bridge one unless given). */
  async addPod(pod: Pod, opts: ClientOptions = {}, network = this.podConf): Promise<PodRun> {
    const lo = await this.runClient("add", this.loopbackConf, pod, opts);
    if (lo.code !== 0) return failed(lo, "loopback ADD");
    const net = await this.runClient("add", network, pod, opts);
    if (net.code !== 0) return failed(net, "pod network ADD", lo);
    const ip = podAddress(net.stdout);
    pod.ip = ip;
    return { ...combine(lo, net), ok: true, ip, parts: { loopback: lo, network: net } };
  }

  /** DEL in the reverse order. */
  async delPod(pod: Pod, opts: ClientOptions = {}, network = this.podConf): Promise<PodRun> {
    const net = await this.runClient("del", network, pod, opts);
    if (net.code !== 0) return failed(net, "pod network DEL");
    const lo = await this.runClient("del", this.loopbackConf, pod, opts);
    if (lo.code !== 0) return failed(lo, "loopback DEL", net);
    return { ...combine(net, lo), ok: true, parts: { loopback: lo, network: net } };
  }

  /** Runs a plugin executable directly in the node namespace (VERSION start-up). */
  runPlugin(name: string, env: Record<string, string>, stdin: string): Promise<Run> {
    return this.worker.run([join(this.bin, name)], { PATH: process.env.PATH ?? "", CNI_PATH: this.bin, ...env }, stdin);
  }

  /**
   * A plugin directory of worker stand-ins that record each plugin's peak RSS. For our executable,
   * host-local stays a link to the real file, so bridge still recognises it as itself and runs IPAM
   * in-process, as it does in production.
   */
  makeRssWrappers(): string {
    const dir = join(this.sandbox.tmp, "rss-bin");
    mkdirSync(dir, { recursive: true });
    for (const name of PLUGIN_NAMES) {
      const inProcess = this.label === "ours" && name === "host-local";
      symlinkSync(inProcess ? join(this.bin, name) : this.workerPath, join(dir, name));
    }
    return dir;
  }

  /** Addresses host-local still holds (files named after addresses in the network's data dir). */
  reservedAddresses(): string[] {
    try {
      return readdirSync(join(this.ipamDir, "bench")).filter((f) => /^[0-9a-f.:]+$/i.test(f) && f.includes("."));
    } catch {
      return [];
    }
  }

  async close() {
    await this.worker.close();
    this.sandbox.cleanup();
  }
}

/** A fresh container namespace of `sandbox` (made from the root namespace, as a runtime does). */
export function newPod(sandbox: Sandbox, index: number, hostPort?: number, containerPort = 80): Pod {
  const ns = sandbox.addContainer();
  return {
    index,
    containerId: randomBytes(32).toString("hex"),
    netns: ns.name,
    netnsPath: ns.path,
    hostPort,
    containerPort,
  };
}

/**
 * One libcni client run for one network, through `worker` (in the node namespace), with the plugin
 * directory `bin` and the client's cache in `cacheDir`: the environment a CRI runtime gives it.
 */
export function runLibcni(
  worker: Worker,
  client: string,
  dirs: { bin: string; cacheDir: string },
  verb: "add" | "del",
  conf: string,
  pod: Pod,
  opts: ClientOptions = {},
): Promise<Run> {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin",
    CNI_PATH: opts.cniPath ?? dirs.bin,
    CNI_CACHE_DIR: dirs.cacheDir,
    CNI_CONTAINERID: pod.containerId,
    CNI_IFNAME: "eth0",
    // What the kubelet's CRI runtimes pass.
    CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=pod-${pod.index};K8S_POD_INFRA_CONTAINER_ID=${pod.containerId}`,
    ...opts.env,
  };
  // containerd sends the capability even when the pod publishes no port: an empty list.
  const portMappings =
    pod.hostPort === undefined ? [] : [{ hostPort: pod.hostPort, containerPort: pod.containerPort, protocol: "tcp" }];
  env.CAP_ARGS = JSON.stringify({ portMappings });
  return worker.run([...(opts.prefix ?? []), client, verb, conf, pod.netnsPath], env);
}

function combine(a: Run, b: Run): Omit<PodRun, "ok"> {
  return { wallMs: a.wallMs + b.wallMs, cpuMs: a.cpuMs + b.cpuMs, maxRssKb: Math.max(a.maxRssKb, b.maxRssKb) };
}

function failed(r: Run, what: string, before?: Run): PodRun {
  const sum = before ? combine(before, r) : { wallMs: r.wallMs, cpuMs: r.cpuMs, maxRssKb: r.maxRssKb };
  return {
    ...sum,
    ok: false,
    error: `${what} exited ${r.code}: ${(r.stderr || r.stdout).trim().split("\n").slice(-3).join(" | ")}`,
  };
}

/** The pod's IPv4 address from the pod network's ADD result. */
function podAddress(stdout: string): string | undefined {
  try {
    const result = JSON.parse(stdout) as { ips?: { address: string }[] };
    return result.ips?.[0]?.address.split("/")[0];
  } catch {
    return undefined;
  }
}
