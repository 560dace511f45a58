import { test } from "uvu";
import * as assert from "uvu/assert";
import { sandboxed } from "../helpers/sandbox.ts";
import {
  CRASH,
  PLUGIN_NAMES,
  addEnv,
  baseConfig,
  pool,
  prevResult,
  residue,
  runNamed,
  runNamedAsync,
  tripwire,
  type PluginName,
} from "../helpers/hostile.ts";

const inSandbox = sandboxed(test, "reliab");

/**
 * Names that could escape a directory or inject into a command or a rule script: container IDs,
 * interface names, network names, bridge names and the other names plugins put into kernel tools
 * (IPAM type, chain names, sysctl keys, port-mapping words). Every one is refused with a CNI error
 * before any effect: no tool is run (the PATH holds only tripwires), no file, link or rule appears.
 */

/** Separators, traversal, whitespace, quoting and shell metacharacters. */
const ESCAPES = [
  "../x",
  "a/b",
  "..",
  ".",
  "a b",
  "a\nb",
  "a\tb",
  "a\rb",
  "$(touch /tmp/tscni-pwned)",
  "a;reboot",
  "`id`",
  "a|b",
  "a&b",
  "a>b",
  "'a'",
  '"a"',
  "a#b",
  "a\\b",
  "a%d",
  "a\u2028b",
  "a\u0085b",
  "a\u007fb",
];

interface Case {
  plugin: PluginName;
  what: string;
  env?: Record<string, string>;
  config?: (c: Record<string, any>) => Record<string, any>;
}

function cases(netns: string): Case[] {
  const out: Case[] = [];
  const show = (v: string) => JSON.stringify(v.length > 24 ? `${v.slice(0, 12)}…(${v.length})` : v);
  for (const plugin of PLUGIN_NAMES) {
    for (const id of [...ESCAPES, "-rf", "x".repeat(1025), "é"])
      out.push({ plugin, what: `container ID ${show(id)}`, env: { CNI_CONTAINERID: id } });
    for (const ifname of [...ESCAPES, "x".repeat(16), "a:b"])
      out.push({ plugin, what: `ifname ${show(ifname)}`, env: { CNI_IFNAME: ifname } });
    for (const name of [...ESCAPES, "x".repeat(256), "", ".x"])
      out.push({ plugin, what: `network name ${show(name)}`, config: (c) => ({ ...c, name }) });
  }
  for (const bridge of [...ESCAPES, "x".repeat(16), "a:b", ""])
    out.push({ plugin: "bridge", what: `bridge name ${show(bridge)}`, config: (c) => ({ ...c, bridge }) });
  for (const type of ["../host-local", "/usr/bin/id", "host-local;id", "..", ".", "x".repeat(300), "$(id)"]) {
    out.push({
      plugin: "bridge",
      what: `ipam type ${show(type)}`,
      config: (c) => ({ ...c, ipam: { ...c.ipam, type } }),
    });
  }
  for (const chain of [...ESCAPES, "A\n-A INPUT -j DROP", "x".repeat(29), "-j", "ACCEPT", "INPUT"]) {
    out.push({
      plugin: "firewall",
      what: `admin chain ${show(chain)}`,
      config: (c) => ({ ...c, iptablesAdminChainName: chain }),
    });
  }
  for (const name of ESCAPES.filter((n) => n !== "a%d")) {
    const prev = prevResult(netns);
    prev.interfaces[0]!.name = name;
    out.push({
      plugin: "firewall",
      what: `isolated bridge ${show(name)}`,
      config: (c) => ({ ...c, ingressPolicy: "same-bridge", prevResult: prev }),
    });
  }
  for (const key of [
    "net/../../../etc/passwd",
    "net.ipv4.conf.eth0.rp_filter\n",
    "kernel.panic",
    "net.ipv4.conf.eth0..rp_filter",
    "/proc/sys/net/ipv4/ip_forward",
    "net. ipv4",
  ]) {
    out.push({ plugin: "tuning", what: `sysctl key ${show(key)}`, config: (c) => ({ ...c, sysctl: { [key]: "1" } }) });
  }
  for (const value of ["1\n0", "1\u0000", "x".repeat(513)])
    out.push({
      plugin: "tuning",
      what: `sysctl value ${show(value)}`,
      config: (c) => ({ ...c, sysctl: { "net.ipv4.conf.eth0.rp_filter": value } }),
    });
  const mapping = (m: Record<string, unknown>) => (c: Record<string, any>) => ({
    ...c,
    runtimeConfig: { portMappings: [{ hostPort: 18081, containerPort: 80, ...m }] },
  });
  for (const protocol of ["tcp -j ACCEPT", "tcp\nCOMMIT", "all", "icmp;x"])
    out.push({ plugin: "portmap", what: `protocol ${show(protocol)}`, config: mapping({ protocol }) });
  for (const hostIP of ["1.2.3.4\n", "1.2.3.4 -j ACCEPT", "localhost", "1.2.3.4/24"])
    out.push({ plugin: "portmap", what: `hostIP ${show(hostIP)}`, config: mapping({ hostIP }) });
  for (const cond of ["1.1.1.1\nCOMMIT\n*filter\n-A INPUT -j DROP", "x;y", "x#y"]) {
    out.push({
      plugin: "portmap",
      what: `conditionsV4 ${show(cond)}`,
      config: (c) => ({ ...c, backend: "iptables", conditionsV4: ["-s", cond] }),
    });
  }
  for (const chain of ["X;Y", "X\nY", "x".repeat(29), "a b"])
    out.push({
      plugin: "portmap",
      what: `externalSetMarkChain ${show(chain)}`,
      config: (c) => ({ ...c, externalSetMarkChain: chain }),
    });
  // dnsname writes names into dnsmasq's hosts file and the domain into its conf, where a line break
  // or a blank would add a record or an option: only names of Podman's characters get through.
  for (const name of [...ESCAPES, "10.9.9.9\tevil", "a..b", "-a", "x".repeat(64)])
    out.push({ plugin: "dnsname", what: `container name ${show(name)}`, env: { CNI_ARGS: `K8S_POD_NAME=${name}` } });
  for (const alias of [...ESCAPES, "a#b", ""])
    out.push({
      plugin: "dnsname",
      what: `alias ${show(alias)}`,
      config: (c) => ({ ...c, runtimeConfig: { aliases: { [c.name]: ["ok", alias] } } }),
    });
  for (const domainName of [...ESCAPES, "dns.podman\naddress=/#/1.2.3.4", "a..b", "", `${"x".repeat(64)}.y`])
    out.push({ plugin: "dnsname", what: `domainName ${show(domainName)}`, config: (c) => ({ ...c, domainName }) });
  return out;
}

inSandbox("hostile names are refused with a CNI error before any effect, by every plugin", async (sb) => {
  const ctr = sb.addContainer();
  sb.inNs(ctr.name, ["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"]);
  const trip = tripwire(sb);
  const before = residue(sb);
  let tuned: string[] = [];

  // The base configurations are valid: each one, unchanged, gets as far as running a tool.
  for (const plugin of ["bridge", "portmap", "firewall", "tuning"] as const) {
    const r = runNamed(
      sb,
      plugin,
      addEnv(ctr.path, { TRIPWIRE_LOG: `${trip.log}.base` }),
      baseConfig(plugin, sb.tmp, ctr.path),
      trip.path,
    );
    if (plugin === "tuning" && r.code === 0) {
      // Its link change goes over netlink in-process (no tool to trip): the change itself shows it got there.
      const eth0 = JSON.parse(sb.inNs(ctr.name, ["ip", "-j", "link", "show", "eth0"]).stdout)[0];
      assert.is(eth0.mtu, 1400, "tuning: the base config reached the kernel");
      tuned = ["tuning/", "tuning/hostile1_eth0.json"]; // its backup, for the DEL it would get
    } else assert.is(r.code, 1, `${plugin}: the tripwire stops it`);
  }
  // The base runs reach the kernel now that links go over netlink in-process: a bridge the base
  // bridge ADD created before its veth failed stays, as the reference leaves it. Cases compare
  // against the links after them.
  const baseLinks = residue(sb).links;
  const all = cases(ctr.path);
  const runs = await pool(
    all.map((c) => () => {
      const config = baseConfig(c.plugin, sb.tmp, ctr.path);
      return runNamedAsync(sb, c.plugin, addEnv(ctr.path, c.env), c.config ? c.config(config) : config, trip.path);
    }),
    4,
  );
  const problems: string[] = [];
  runs.forEach((r, i) => {
    const c = all[i]!;
    const tag = `${c.plugin}, ${c.what}`;
    if (r.code !== 1 || r.json === undefined)
      problems.push(`${tag}: exit ${r.code}, stdout ${JSON.stringify(r.stdout.slice(0, 200))}`);
    else if (![4, 7].includes(r.json.code)) problems.push(`${tag}: code ${r.json.code} (${r.json.msg})`);
    else if (CRASH.test(r.json.msg) || CRASH.test(r.stderr)) problems.push(`${tag}: crash: ${r.json.msg} ${r.stderr}`);
  });
  const calls = trip.calls();
  assert.equal(problems, [], `${problems.length} of ${all.length} cases not refused properly`);
  assert.equal(calls, [], "no tool ran");
  const after = residue(sb);
  assert.equal(after.files, [...before.files, "tripwire.log.base", ...tuned].sort(), "no file created");
  assert.equal(after.links, baseLinks, "no link created");
  assert.fixture(after.iptables, before.iptables);
  assert.fixture(after.nft, before.nft);
});

test.run();
