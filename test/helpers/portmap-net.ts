import { spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { BIN, REF_BIN, type Sandbox, cniEnv, withSandbox } from "./sandbox.ts";
import { runPlugin, runPluginAsync } from "./plugin-run.ts";
import { iptablesRules, nftRuleset } from "./node-state.ts";

/**
 * Pieces for portmap integration tests: a container attached to a bridge in the node namespace
 * (the interface plugin's result is portmap's prevResult), a TCP+UDP echo server that answers with
 * the peer address it saw, a one-shot client, and netfilter snapshots.
 */

// The bridge and host-local that build the container's network: the suite's own by default;
// PORTMAP_IFACE_BIN=/usr/lib/cni runs the same tests over the reference plugins.
export const IFACE_BIN = process.env.PORTMAP_IFACE_BIN ?? BIN;
export const PORTMAP = join(BIN, "portmap");
export const REF_PORTMAP = join(REF_BIN, "portmap");
export const NETWORK = "pmnet";
export const NODE_V4 = "192.0.2.1";
export const EXT_V4 = "192.0.2.2";
export const NODE_V6 = "2001:db8:1::1";
export const EXT_V6 = "2001:db8:1::2";
export const GW_V4 = "10.22.0.1";
export const GW_V6 = "fd00:22::1";

const SERVER = `
import net from "node:net";
import dgram from "node:dgram";
const [tcpPort, udpPort] = process.argv.slice(2, 4).map(Number);
const tag = process.argv[4] ? " tag=" + process.argv[4] : "";
const peer = (a) => "peer=" + a.replace(/^::ffff:/, "") + tag + "\\n";
let pending = 3;
const up = () => { if (--pending === 0) process.stdout.write("ready\\n"); };
net.createServer((s) => s.end(peer(s.remoteAddress))).listen({ port: tcpPort, host: "::" }, up);
for (const [type, host] of [["udp4", "0.0.0.0"], ["udp6", "::"]]) {
  const u = dgram.createSocket({ type, ipv6Only: type === "udp6" });
  u.on("message", (_m, r) => u.send(peer(r.address), r.port, r.address));
  u.bind(udpPort, host, up);
}
`;

const CLIENT = `
import net from "node:net";
import dgram from "node:dgram";
const [proto, host, port] = process.argv.slice(2);
const fail = (why) => { process.stdout.write("error " + why + "\\n"); process.exit(1); };
setTimeout(() => fail("timeout"), 5000).unref();
if (proto === "tcp") {
  let data = "";
  const s = net.connect({ host, port: Number(port) });
  s.on("data", (d) => (data += d));
  s.on("end", () => { process.stdout.write(data); process.exit(0); });
  s.on("error", (e) => fail(e.code));
} else {
  const u = dgram.createSocket(host.includes(":") ? "udp6" : "udp4");
  u.on("message", (m) => { process.stdout.write(m.toString()); process.exit(0); });
  u.on("error", (e) => fail(e.code));
  const send = () => u.send("ping", Number(port), host);
  send();
  // Datagrams may be lost while neighbours resolve; asking again is part of the protocol.
  setInterval(send, 500).unref();
}
`;

export function writeScripts(sb: Sandbox) {
  writeFileSync(join(sb.tmp, "echo-server.mjs"), SERVER);
  writeFileSync(join(sb.tmp, "echo-client.mjs"), CLIENT);
}

/**
 * Starts the echo server in `ns` (TCP 80, UDP 53) and resolves once it listens; stop it with
 * kill(). With a tag, answers say which server gave them.
 */
export function startServer(sb: Sandbox, ns: string, tag = ""): Promise<ChildProcess> {
  const child = spawn("ip", ["netns", "exec", ns, "node", join(sb.tmp, "echo-server.mjs"), "80", "53", tag], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (d) => {
      out += d;
      if (out.includes("ready")) resolve(child);
    });
    child.on("exit", (code) => reject(new Error(`echo server exited with ${code}`)));
  });
}

/** One request from `ns`; returns the server's answer ("peer=<address>") or "error <why>". */
export function ask(sb: Sandbox, ns: string, proto: "tcp" | "udp", host: string, port: number): string {
  return sb
    .inNs(ns, ["node", join(sb.tmp, "echo-client.mjs"), proto, host, String(port)], { allowFailure: true })
    .stdout.trim();
}

export interface Topology {
  ext: string;
}

/**
 * Wires an external host to the node (IPv4 and IPv6) and turns off br_netfilter in the node, so
 * hairpin replies come back only if portmap masqueraded them.
 */
export function buildTopology(sb: Sandbox): Topology {
  writeScripts(sb);
  const ext = sb.addExternalHost(`${NODE_V4}/24`, `${EXT_V4}/24`);
  const links = JSON.parse(sb.inNode(["ip", "-j", "link", "show"]).stdout) as { ifname: string }[];
  const nodeIf = links.find((l) => l.ifname.startsWith("ext"))!.ifname;
  sb.inNode(["ip", "addr", "add", `${NODE_V6}/64`, "dev", nodeIf, "nodad"]);
  sb.inNs(ext, ["ip", "addr", "add", `${EXT_V6}/64`, "dev", "eth0", "nodad"]);
  sb.inNs(ext, ["ip", "route", "add", "10.0.0.0/8", "via", NODE_V4]);
  sb.inNode(["sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=0", "net.bridge.bridge-nf-call-ip6tables=0"], {
    allowFailure: true,
  });
  return { ext };
}

export interface Attached {
  id: string;
  ns: string;
  path: string;
  result: any;
}

export function bridgeConfig(sb: Sandbox) {
  return {
    cniVersion: "1.0.0",
    name: NETWORK,
    type: "bridge",
    bridge: "cni0",
    isGateway: true,
    ipMasq: false,
    ipam: {
      type: "host-local",
      dataDir: join(sb.tmp, "ipam"),
      ranges: [[{ subnet: "10.22.0.0/24" }], [{ subnet: "fd00:22::/64" }]],
      routes: [{ dst: "0.0.0.0/0" }, { dst: "::/0" }],
    },
  };
}

/** A container namespace attached to the bridge; its result is what portmap gets as prevResult. */
export function attach(sb: Sandbox, id: string): Attached {
  const c = sb.addContainer();
  const r = runPlugin(
    sb,
    join(IFACE_BIN, "bridge"),
    cniEnv("ADD", { CNI_CONTAINERID: id, CNI_NETNS: c.path, CNI_PATH: IFACE_BIN }),
    bridgeConfig(sb),
  );
  if (r.code !== 0) throw new Error(`bridge ADD failed: ${r.stdout}${r.stderr}`);
  sb.inNs(c.name, ["ip", "link", "set", "lo", "up"]);
  return { id, ns: c.name, path: c.path, result: r.json };
}

export type PortMappingIn = { hostPort: number; containerPort: number; protocol?: string; hostIP?: string };

export function portmapConfig(
  backend: string | undefined,
  mappings: PortMappingIn[] | undefined,
  prevResult?: unknown,
  extra: Record<string, unknown> = {},
) {
  return {
    cniVersion: "1.0.0",
    name: NETWORK,
    type: "portmap",
    ...(backend ? { backend } : {}),
    ...extra,
    ...(mappings ? { runtimeConfig: { portMappings: mappings } } : {}),
    ...(prevResult !== undefined ? { prevResult } : {}),
  };
}

/** Runs a portmap binary (ours by default) for container `a` inside the node namespace. */
export function runPortmap(
  sb: Sandbox,
  command: string,
  a: Pick<Attached, "id" | "path">,
  config: unknown,
  binary = PORTMAP,
) {
  return runPlugin(sb, binary, cniEnv(command, { CNI_CONTAINERID: a.id, CNI_NETNS: a.path }), config);
}

/** The same, without waiting: for calls that must overlap. */
export const runPortmapAsync = (sb: Sandbox, command: string, a: Pick<Attached, "id" | "path">, config: unknown) =>
  runPluginAsync(sb, PORTMAP, cniEnv(command, { CNI_CONTAINERID: a.id, CNI_NETNS: a.path }), config);

/**
 * Runs `body` in a fresh sandbox wired to an external host, then stops the servers it started and
 * removes everything.
 */
export async function inTopology(
  body: (sb: Sandbox, t: Topology & { servers: ChildProcess[] }) => void | Promise<void>,
) {
  await withSandbox("portmap", async (sb) => {
    const servers: ChildProcess[] = [];
    try {
      await body(sb, { ...buildTopology(sb), servers });
    } finally {
      for (const s of servers) s.kill();
    }
  });
}

export interface Snapshot {
  ipt4: string;
  ipt6: string;
  nft: string;
}

/** The node's netfilter state in the forms the issue names: iptables-save and nft list ruleset. */
export const snapshot = (sb: Sandbox): Snapshot => ({
  ipt4: iptablesRules(sb, 4).join("\n"),
  ipt6: iptablesRules(sb, 6).join("\n"),
  nft: nftRuleset(sb),
});

const SHARED_IPT = [
  /^:CNI-HOSTPORT-(DNAT|SETMARK|MASQ) /,
  /^-A (PREROUTING|OUTPUT) -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT$/,
  /^-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ$/,
  /^-A CNI-HOSTPORT-(SETMARK|MASQ) /,
];

/**
 * iptables-save text without portmap's shared top-level chains and their jumps (which may stay),
 * and without a table left holding nothing but its built-in chains (it was created for them).
 */
export function withoutSharedChains(dump: string): string {
  const lines = dump.split("\n").filter((l) => !SHARED_IPT.some((re) => re.test(l)));
  const out: string[] = [];
  let section: string[] = [];
  for (const l of lines) {
    if (l.startsWith("*")) section = [l];
    else if (section.length > 0) {
      section.push(l);
      if (l === "COMMIT") {
        const empty = section.every((x) => x.startsWith("*") || x === "COMMIT" || /^:[A-Z]+ ACCEPT /.test(x));
        if (!empty) out.push(...section);
        section = [];
      }
    } else out.push(l);
  }
  return out.join("\n").trim();
}

/**
 * nft ruleset text without the cni_hostport tables, after checking that what stays of them is only
 * the shared structure: no rule that belongs to a container (those carry a comment).
 */
export function withoutHostportTables(ruleset: string): string {
  const out: string[] = [];
  let skipping = false;
  for (const line of ruleset.split("\n")) {
    if (/^table (ip|ip6) cni_hostport \{/.test(line)) skipping = true;
    else if (skipping && line === "}") {
      skipping = false;
      continue;
    }
    if (skipping) {
      if (/\bcomment "/.test(line) && !line.includes("CNI portmap plugin"))
        throw new Error(`container rule left behind: ${line.trim()}`);
      continue;
    }
    out.push(line);
  }
  return out
    .join("\n")
    .replace(/\n{2,}/g, "\n")
    .trim();
}
