import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BIN, type Sandbox, cniEnv } from "./sandbox.ts";
import { runPlugin, runPluginAsync, type PluginRun } from "./plugin-run.ts";
import { fileTree, nodeSnapshot, type NodeSnapshot } from "./node-state.ts";
import { PLUGIN_NAMES } from "../../plugins/index.ts";

/**
 * Pieces for the hostile-input tests: a minimal valid configuration per plugin (so each case
 * changes one thing), a tripwire PATH whose kernel tools only record that they were called (a
 * refused input must be refused before the first spawn), and a snapshot of everything a run could
 * leave behind: node links and netfilter, and the files under the sandbox.
 */
/** Every plugin of the registry: a new one fails baseConfig until it has a case there. */
export { PLUGIN_NAMES };
export type PluginName = string;

export const HNET = "hnet";
export const HBRIDGE = "hbr0";

/** What a container looks like to a chained plugin: prevResult with one address on eth0 in `netns`. */
export function prevResult(netns: string, addr = "10.62.0.2/24") {
  return {
    cniVersion: "1.0.0",
    interfaces: [
      { name: HBRIDGE, mac: "0a:58:0a:3e:00:01" },
      { name: "veth0a0b0c0d" },
      { name: "eth0", sandbox: netns },
    ],
    ips: [{ address: addr, gateway: "10.62.0.1", interface: 2 }],
    routes: [{ dst: "0.0.0.0/0" }],
  };
}

let subnetEnv: string | undefined;

/**
 * A subnet.env as the node agent writes it, for flannel's base config: read-only input, kept
 * outside the sandbox directory whose files the tests compare before and after, and removed when
 * the test process exits.
 */
function flannelSubnetEnv(): string {
  if (subnetEnv) return subnetEnv;
  const dir = mkdtempSync(join(tmpdir(), "tscni-hostile-flannel-"));
  process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
  subnetEnv = join(dir, "subnet.env");
  writeFileSync(
    subnetEnv,
    "FLANNEL_NETWORK=10.62.0.0/16\nFLANNEL_SUBNET=10.62.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
  );
  return subnetEnv;
}

/** A valid ADD configuration of `plugin` whose state lives under `dir`. */
export function baseConfig(plugin: PluginName, dir: string, netns: string): Record<string, any> {
  const base = { cniVersion: "1.0.0", name: HNET, type: plugin };
  const ipam = {
    type: "host-local",
    dataDir: join(dir, "ipam"),
    ranges: [[{ subnet: "10.62.0.0/24" }]],
    routes: [{ dst: "0.0.0.0/0" }],
  };
  switch (plugin) {
    case "loopback":
      return base;
    case "bridge":
      return { ...base, bridge: HBRIDGE, isGateway: true, ipMasq: true, hairpinMode: true, ipam };
    case "host-local":
      return { ...base, ipam };
    case "static":
      return {
        ...base,
        ipam: {
          type: "static",
          addresses: [{ address: "10.62.0.5/24", gateway: "10.62.0.1" }],
          routes: [{ dst: "0.0.0.0/0" }],
          dns: { nameservers: ["10.62.0.1"] },
        },
      };
    case "portmap":
      return {
        ...base,
        snat: true,
        runtimeConfig: { portMappings: [{ hostPort: 18081, containerPort: 80, protocol: "tcp" }] },
        prevResult: prevResult(netns),
      };
    case "firewall":
      return { ...base, backend: "iptables", prevResult: prevResult(netns) };
    case "tuning":
      return {
        ...base,
        dataDir: join(dir, "tuning"),
        sysctl: { "net.ipv4.conf.eth0.rp_filter": "1" },
        mtu: 1400,
        prevResult: prevResult(netns),
      };
    case "macvlan":
      return { ...base, master: "eth0", linkInContainer: true, mode: "bridge", mtu: 1400, ipam };
    case "ptp":
      return { ...base, ipMasq: true, mtu: 1400, ipam };
    case "ipvlan":
      return { ...base, master: "eth0", linkInContainer: true, mode: "l2", mtu: 1400, ipam };
    case "vlan":
      return { ...base, master: "eth0", linkInContainer: true, vlanId: 10, mtu: 1400, ipam };
    case "dummy":
      return { ...base, ipam };
    case "tap":
      return { ...base, mac: "02:00:0a:3e:00:09", mtu: 1400, multiQueue: true, owner: 0, group: 0, ipam };
    case "host-device":
      return { ...base, device: "hdev0", ipam };
    case "sbr":
      return { ...base, table: 150, prevResult: prevResult(netns) };
    case "vrf":
      return { ...base, vrfname: "hvrf0", table: 150, prevResult: prevResult(netns) };
    case "bandwidth":
      return {
        ...base,
        ingressRate: 8_000_000,
        ingressBurst: 80_000,
        egressRate: 8_000_000,
        egressBurst: 80_000,
        prevResult: prevResult(netns),
      };
    case "dnsname":
      return {
        ...base,
        domainName: "dns.podman",
        capabilities: { aliases: true },
        runtimeConfig: { aliases: { [HNET]: ["web"] } },
        prevResult: prevResult(netns),
      };
    case "flannel":
      return {
        ...base,
        subnetFile: flannelSubnetEnv(),
        dataDir: join(dir, "flannel"),
        delegate: { bridge: HBRIDGE, hairpinMode: true, isDefaultGateway: true },
        ipam: { dataDir: join(dir, "ipam") },
      };
    case "dhcp":
      // No daemon listens there: a valid ADD gets as far as dialing it.
      return { ...base, ipam: { type: "dhcp", daemonSocketPath: join(dir, "dhcp.sock"), priority: 10 } };
    default:
      throw new Error(
        `no hostile-input base configuration for plugin "${plugin}": add one here so the hostile tests cover it`,
      );
  }
}

/** Tools a plugin may run; in the tripwire directory each one only logs its call and fails. */
const TOOLS = [
  "ip",
  "bridge",
  "nsenter",
  "sysctl",
  "iptables",
  "ip6tables",
  "iptables-restore",
  "iptables-save",
  "ip6tables-restore",
  "ip6tables-save",
  "nft",
  "tc",
  "conntrack",
  "flock",
  "firewall-cmd",
  "dbus-send",
  "busctl",
  "dnsmasq",
  "sh",
  "bash",
];

export interface Tripwire {
  path: string;
  log: string;
  /** Calls recorded so far (one line each: program and arguments). */
  calls(): string[];
}

export function tripwire(sb: Sandbox): Tripwire {
  const dir = join(sb.tmp, "tripwire-bin");
  const log = join(sb.tmp, "tripwire.log");
  mkdirSync(dir, { recursive: true });
  for (const tool of TOOLS) {
    const file = join(dir, tool);
    writeFileSync(file, `#!/bin/busybox sh\necho "$0 $*" >> "\${TRIPWIRE_LOG:-${log}}"\nexit 1\n`);
    chmodSync(file, 0o755);
  }
  return {
    path: dir,
    log,
    calls: () => (existsSync(log) ? readFileSync(log, "utf8").split("\n").filter(Boolean) : []),
  };
}

/** What a refused run must not change: the node's links and netfilter, and every file under the sandbox. */
export interface Residue extends NodeSnapshot {
  files: string[];
}

export function residue(sb: Sandbox, skipFiles: readonly string[] = []): Residue {
  return { ...nodeSnapshot(sb), files: fileTree(sb.tmp, skipFiles) };
}

/**
 * A plugin of the build by its registry name, with exactly these CNI variables and PATH (the
 * tripwire's, to prove a refusal comes before the first tool), bounded at 30 s; a run that hits
 * the bound comes back with `timedOut` rather than failing here, since some cases assert on it.
 */
export function runNamed(
  sb: Sandbox,
  plugin: PluginName,
  vars: Record<string, string>,
  config: unknown,
  path = process.env.PATH ?? "",
): PluginRun {
  return runPlugin(sb, join(BIN, plugin), { ...vars, PATH: path }, config, { timeoutMs: 30_000, returnErrors: true });
}

export const addEnv = (netns: string, extra: Record<string, string> = {}) =>
  cniEnv("ADD", { CNI_NETNS: netns, CNI_CONTAINERID: "hostile1", ...extra });

/** A JS engine error rather than a refusal of ours: what a crash looks like in a CNI error. */
export const CRASH =
  /TypeError|ReferenceError|RangeError|is not a function|is not iterable|Cannot read prop|\b(undefined|null) is not an object|Maximum call stack|\n\s+at .+:\d+:\d+/;

/** runNamed without waiting, so independent cases can run a few at a time. */
export function runNamedAsync(
  sb: Sandbox,
  plugin: PluginName,
  vars: Record<string, string>,
  config: unknown,
  path = process.env.PATH ?? "",
  timeoutMs = 30_000,
  cwd?: string,
): Promise<PluginRun> {
  return runPluginAsync(sb, join(BIN, plugin), { ...vars, PATH: path }, config, { timeoutMs, cwd, returnErrors: true });
}

/** Runs `jobs` with at most `width` at a time; results in order. */
export async function pool<T>(jobs: (() => Promise<T>)[], width: number): Promise<T[]> {
  const out: T[] = new Array(jobs.length);
  let next = 0;
  const lane = async () => {
    while (next < jobs.length) {
      const i = next++;
      out[i] = await jobs[i]!();
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, jobs.length) }, lane));
  return out;
}
