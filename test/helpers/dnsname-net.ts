import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { BIN, REF_BIN, type Sandbox } from "./sandbox.ts";
import { clientVars, runClient, writeNetconf, type ClientEnv, type ClientRun } from "./libcni.ts";
import { runPluginAsync, type PluginRun } from "./plugin-run.ts";

/**
 * Pieces for dnsname integration tests: bridge + host-local + dnsname conflists, a CNI_PATH whose
 * dnsname is the reference's, lookups with Debian's `dig` from a container namespace, and the
 * network's files and daemon under the private /run (test/private-run.sh). Every dnsmasq a test
 * caused is stopped by its PID when the test ends (`stopDaemons`).
 */

export const DNS_BASE = "/run/containers/cni/dnsname";
export const DOMAIN = "dns.podman";

export interface Net {
  name: string;
  bridge: string;
  gateway: string;
  subnet: string;
  v6?: { subnet: string; gateway: string };
}

let n = 0;
/** A network of its own per test (names and bridges unique), IPv4 or dual-stack. */
export function network(dualStack: boolean): Net {
  const i = 80 + (n++ % 20);
  const tag = `${process.pid.toString(36)}${i}`;
  return {
    name: `dn-${tag}`,
    bridge: `dnbr${i}`,
    gateway: `10.${i}.0.1`,
    subnet: `10.${i}.0.0/24`,
    v6: dualStack ? { subnet: `fd00:${i}::/64`, gateway: `fd00:${i}::1` } : undefined,
  };
}

export function conflist(sb: Sandbox, net: Net) {
  const ranges: unknown[] = [[{ subnet: net.subnet }]];
  if (net.v6) ranges.push([{ subnet: net.v6.subnet }]);
  return {
    cniVersion: "1.0.0",
    name: net.name,
    plugins: [
      {
        type: "bridge",
        bridge: net.bridge,
        isGateway: true,
        ipMasq: false,
        ipam: { type: "host-local", dataDir: join(sb.tmp, `ipam-${net.name}`), ranges },
      },
      { type: "dnsname", domainName: DOMAIN, capabilities: { aliases: true } },
    ],
  };
}

/** NETCONFPATH with the conflists of `nets`. */
export const netconf = (sb: Sandbox, nets: Net[]) =>
  writeNetconf(sb, Object.fromEntries(nets.map((net) => [`${net.name}.conflist`, conflist(sb, net)])));

/** A CNI_PATH with our bridge and host-local but the reference's dnsname. */
export function refDnsnamePath(sb: Sandbox): string {
  const dir = join(sb.tmp, "cni-ref-dnsname");
  if (!existsSync(dir)) {
    mkdirSync(dir);
    for (const p of ["bridge", "host-local"]) symlinkSync(join(BIN, p), join(dir, p));
    symlinkSync(join(REF_BIN, "dnsname"), join(dir, "dnsname"));
  }
  return dir;
}

export interface Pod {
  name: string;
  id: string;
  ns: string;
  path: string;
  aliases?: string[];
}

/** A container namespace and the ID, name and aliases Podman would send for it. */
export function pod(sb: Sandbox, name: string, aliases: string[] = []): Pod {
  const c = sb.addContainer();
  const id = Buffer.from(`${name}-${c.name}`).toString("hex").padEnd(64, "0").slice(0, 64);
  return { name, id, ns: c.name, path: c.path, aliases };
}

export interface Call {
  netconfPath: string;
  client: string;
  cniPath?: string;
}

const clientEnv = (sb: Sandbox, call: Call, net: Net, p: Pod): ClientEnv => ({
  netconfPath: call.netconfPath,
  cacheDir: join(sb.tmp, "cache"),
  cniPath: call.cniPath,
  containerId: p.id,
  cniArgs: `IgnoreUnknown=1;K8S_POD_NAME=${p.name}`,
  capArgs: { aliases: { [net.name]: [...(p.aliases ?? []), p.id.slice(0, 12)] } },
});

/** One verb of the network's chain for `p`, with Podman's CNI_ARGS and aliases (name + short ID). */
export function chain(sb: Sandbox, call: Call, verb: Verb, net: Net, p: Pod): ClientRun {
  return runClient(sb, call.client, [verb, net.name, p.path], clientEnv(sb, call, net, p));
}

/** `chain` without waiting, for calls that race each other. */
export function chainAsync(sb: Sandbox, call: Call, verb: Verb, net: Net, p: Pod): Promise<PluginRun> {
  return runPluginAsync(sb, call.client, clientVars(clientEnv(sb, call, net, p)), undefined, {
    args: [verb, net.name, p.path],
    timeoutMs: 60_000,
  });
}

type Verb = "add" | "del" | "check";

export interface Answer {
  status: string;
  answers: string[];
}

/** `dig` from `ns` at `server`: the status and the answer records' data. */
export function dig(sb: Sandbox, ns: string, server: string, args: string[]): Answer {
  const r = sb.inNs(ns, ["dig", "+time=2", "+tries=3", "+noall", "+comments", "+answer", `@${server}`, ...args], {
    allowFailure: true,
  });
  const status = /status: (\w+)/.exec(r.stdout)?.[1] ?? `no answer (exit ${r.code}): ${r.stdout}${r.stderr}`;
  const answers = r.stdout
    .split("\n")
    .filter((l) => l !== "" && !l.startsWith(";"))
    .map((l) => l.split(/\s+/).slice(4).join(" "));
  return { status, answers };
}

/** The TTLs of the answer records. */
export function ttls(sb: Sandbox, ns: string, server: string, args: string[]): number[] {
  const r = sb.inNs(ns, ["dig", "+time=2", "+tries=3", "+noall", "+answer", `@${server}`, ...args]);
  return r.stdout
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => Number(l.split(/\s+/)[1]));
}

export const netDir = (net: Net) => join(DNS_BASE, net.name);

/** The PID in the network's pidfile, if there is one. */
export function daemonPid(net: Net): number | undefined {
  try {
    const pid = Number(readFileSync(join(netDir(net), "pidfile"), "utf8").trim());
    return pid > 1 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Whether `pid` is a live (not zombie) dnsmasq. */
export function isDnsmasq(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.includes("(dnsmasq)") && !/\) Z /.test(stat);
  } catch {
    return false;
  }
}

/**
 * Whether `pid` is gone, waiting (bounded) for it: the reference SIGKILLs its dnsmasq and returns
 * at once, so the process may still be exiting when its DEL has answered.
 */
export function goneSoon(pid: number | undefined): boolean {
  for (let i = 0; i < 500 && isDnsmasq(pid); i++) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
  return !isDnsmasq(pid);
}

/** Teardown: every dnsmasq whose pidfile lies under a test network's directory, stopped by PID. */
export function stopDaemons(nets: Net[]) {
  for (const net of nets) {
    const pid = daemonPid(net);
    if (pid !== undefined && isDnsmasq(pid)) process.kill(pid, "SIGKILL");
  }
}

export const hostsLines = (net: Net): string[] => {
  try {
    return readFileSync(join(netDir(net), "addnhosts"), "utf8")
      .split("\n")
      .filter(Boolean);
  } catch {
    return [];
  }
};

export const baseEntries = (): string[] => (existsSync(DNS_BASE) ? readdirSync(DNS_BASE) : []);

/** The node's INPUT rules for DNS on the network's bridge, as iptables-save prints them. */
export function dnsInputRules(sb: Sandbox, net: Net, family: 4 | 6 = 4): string[] {
  const save = family === 4 ? "iptables-save" : "ip6tables-save";
  return sb
    .inNode([save, "-t", "filter"])
    .stdout.split("\n")
    .filter((l) => l.startsWith("-A INPUT") && l.includes(`-i ${net.bridge} `) && l.includes("--dport 53"));
}
