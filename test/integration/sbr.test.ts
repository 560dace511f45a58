import { test } from "uvu";
import * as assert from "uvu/assert";
import { join } from "node:path";
import { BIN, REF_BIN, type Sandbox, sandboxed } from "../helpers/sandbox.ts";
import { addOk, bridgeConf, cni, ping, type Call } from "../helpers/bridge-net.ts";

const inSandbox = sandboxed(test, "sbr");

// sbr end to end: a container with two attachments, where a node with strict reverse-path
// filtering drops replies that leave by the wrong interface; the rules and tables as the
// reference makes them; DEL; rollback; the reference on the other side of every verb.

const SBR = join(BIN, "sbr");
const REF_SBR = join(REF_BIN, "sbr");

interface Pod {
  ns: string;
  path: string;
  /** prevResult of net1, the second attachment (10.23.0.0/24, no routes of its own). */
  net1: any;
}

/** A container on two bridges: eth0 (default route via 10.22.0.1) and net1 (10.23.0.0/24). */
function twoLegged(sb: Sandbox, id: string): Pod {
  const c = sb.addContainer();
  addOk(sb, { id, netns: c.path }, bridgeConf(sb));
  const second = bridgeConf(sb, { name: "netb", bridge: "brb" }, { subnet: "10.23.0.0/24", routes: [] });
  const net1 = addOk(sb, { id, netns: c.path, ifname: "net1" }, second);
  return { ns: c.name, path: c.path, net1 };
}

const sbrConf = (prevResult?: unknown, extra: Record<string, unknown> = {}) => ({
  cniVersion: "1.0.0",
  name: "netb",
  type: "sbr",
  ...extra,
  ...(prevResult ? { prevResult } : {}),
});

const call = (p: Pod, binary = SBR, id = "ctr1"): Call => ({ id, netns: p.path, ifname: "net1", binary });

function sbr(sb: Sandbox, command: string, p: Pod, conf: unknown, binary = SBR) {
  return cni(sb, command, call(p, binary), conf);
}

function sbrOk(sb: Sandbox, command: string, p: Pod, conf: unknown, binary = SBR): any {
  const r = sbr(sb, command, p, conf, binary);
  if (r.code !== 0) throw new Error(`${binary} ${command} failed: ${r.stdout}${r.stderr}`);
  return r.json;
}

const rules = (sb: Sandbox, ns: string, family = "-4") =>
  sb
    .inNs(ns, ["ip", family, "rule", "show"])
    .stdout.trim()
    .split("\n")
    .filter((l) => !/lookup (local|main|default)$/.test(l));

const table = (sb: Sandbox, ns: string, t: string | number, family = "-4") =>
  sb
    .inNs(ns, ["ip", family, "route", "show", "table", String(t)])
    .stdout.split("\n")
    .map((l) => l.replace(/ proto kernel| metric \d+| pref medium/g, "").trim())
    .filter((l) => l !== "")
    .sort();

inSandbox("replies leave by the interface the request came in on, through a node that filters strictly", (sb) => {
  const ext = sb.addExternalHost();
  sb.inNs(ext, ["ip", "route", "add", "default", "via", "192.0.2.1"]);
  const p = twoLegged(sb, "ctr1");
  // Strict reverse-path filtering: a reply from 10.23.0.2 arriving on eth0's bridge is dropped.
  sb.inNode(["sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=1"]);
  assert.ok(ping(sb, ext, "10.22.0.2"), "eth0's address answers either way");
  assert.not.ok(ping(sb, ext, "10.23.0.2", 1), "without sbr, net1's replies leave by eth0 and are dropped");

  const r = sbrOk(sb, "ADD", p, sbrConf(p.net1));
  assert.equal(r, p.net1);
  assert.ok(ping(sb, ext, "10.23.0.2"), "with sbr, net1's replies leave by net1");
  assert.ok(ping(sb, ext, "10.22.0.2"), "eth0 still answers");
});

inSandbox(
  "ADD: a rule per address to the first free table from 100, the gateway and net1's routes moved there",
  (sb) => {
    const p = twoLegged(sb, "ctr1");
    const gw = p.net1.ips[0].gateway;
    sbrOk(sb, "ADD", p, sbrConf(p.net1));
    assert.equal(rules(sb, p.ns), ["32765:\tfrom 10.23.0.2 lookup 100"]);
    assert.equal(table(sb, p.ns, 100), [
      `10.23.0.0/24 dev net1 scope link src 10.23.0.2`,
      `default via ${gw} dev net1`,
    ]);
    assert.equal(
      table(sb, p.ns, "main"),
      ["10.22.0.0/24 dev eth0 scope link src 10.22.0.2", "default via 10.22.0.1 dev eth0"],
      "net1's subnet route left main",
    );
    // IPv6 link-local on net1 stays in main (the reference moves it too, for an IPv4 address).
    assert.ok(table(sb, p.ns, "main", "-6").includes("fe80::/64 dev net1"));
    sbrOk(sb, "CHECK", p, sbrConf(p.net1));

    // Another interface gets the next table; a configured table is used as it is.
    const third = bridgeConf(sb, { name: "netc", bridge: "brc" }, { subnet: "10.24.0.0/24", routes: [] });
    const net2 = addOk(sb, { id: "ctr1", netns: p.path, ifname: "net2" }, third);
    const r2 = cni(sb, "ADD", { id: "ctr1", netns: p.path, ifname: "net2", binary: SBR }, sbrConf(net2));
    assert.is(r2.code, 0, r2.stdout);
    assert.ok(rules(sb, p.ns).includes("32764:\tfrom 10.24.0.2 lookup 101"));
    const net3 = addOk(sb, { id: "ctr1", netns: p.path, ifname: "net3" }, third);
    const r3 = cni(
      sb,
      "ADD",
      { id: "ctr1", netns: p.path, ifname: "net3", binary: SBR },
      sbrConf(net3, { table: 4242 }),
    );
    assert.is(r3.code, 0, r3.stdout);
    assert.match(rules(sb, p.ns).join("\n"), /from 10\.24\.0\.3 lookup 4242/);
  },
);

inSandbox("CHECK fails without the rule; DEL removes the rules, again and without the namespace too", (sb) => {
  const p = twoLegged(sb, "ctr1");
  const main = table(sb, p.ns, "main");
  sbrOk(sb, "ADD", p, sbrConf(p.net1));
  sb.inNs(p.ns, ["ip", "rule", "del", "from", "10.23.0.2", "lookup", "100"]);
  const bad = sbr(sb, "CHECK", p, sbrConf(p.net1));
  assert.is(bad.code, 1);
  assert.match(bad.json.msg, "no source-based routing rule for 10.23.0.2");

  // The rule back by hand: DEL then finds the whole set-up.
  sb.inNs(p.ns, ["ip", "rule", "add", "from", "10.23.0.2", "lookup", "100", "priority", "32765"]);
  sbrOk(sb, "CHECK", p, sbrConf(p.net1));
  sbrOk(sb, "DEL", p, sbrConf(p.net1));
  assert.equal(rules(sb, p.ns), []);
  assert.equal(table(sb, p.ns, 100), []);
  assert.equal(table(sb, p.ns, "main"), main, "net1's routes are back in main");
  sbrOk(sb, "DEL", p, sbrConf(p.net1));

  // Without a prevResult the interface's own addresses find the rules.
  sbrOk(sb, "ADD", p, sbrConf(p.net1));
  sbrOk(sb, "DEL", p, sbrConf());
  assert.equal(rules(sb, p.ns), []);

  const gone = cni(sb, "DEL", { netns: "/var/run/netns/none-such", ifname: "net1", binary: SBR }, sbrConf(p.net1));
  assert.is(gone.code, 0, gone.stdout);
});

inSandbox("the reference on the other side: its ADD, our CHECK and DEL; our ADD (the same state), its DEL", (sb) => {
  const p = twoLegged(sb, "ctr1");
  const state = () => ({ rules: rules(sb, p.ns), table: table(sb, p.ns, 100), main: table(sb, p.ns, "main") });
  sbrOk(sb, "ADD", p, sbrConf(p.net1), REF_SBR);
  const theirs = state();
  sbrOk(sb, "CHECK", p, sbrConf(p.net1));
  sbrOk(sb, "DEL", p, sbrConf(p.net1));
  assert.equal(rules(sb, p.ns), []);

  // Our DEL put net1's subnet route back in main and emptied table 100 (the reference leaves it
  // full, and a second ADD's gateway is then unreachable).
  assert.equal(table(sb, p.ns, 100), []);
  assert.ok(table(sb, p.ns, "main").includes("10.23.0.0/24 dev net1 scope link src 10.23.0.2"));
  sbrOk(sb, "ADD", p, sbrConf(p.net1));
  assert.equal(state(), theirs);
  sbrOk(sb, "DEL", p, sbrConf(p.net1), REF_SBR);
  assert.equal(rules(sb, p.ns), []);
});

inSandbox("bad calls get the reference's messages; a failed ADD takes back what it did", (sb) => {
  const p = twoLegged(sb, "ctr1");
  for (const binary of [SBR, REF_SBR]) {
    assert.is(sbr(sb, "ADD", p, sbrConf(), binary).json.msg, "This plugin must be called as chained plugin");
    const noIps = sbr(sb, "ADD", p, sbrConf({ ...p.net1, ips: [] }), binary);
    assert.is(noIps.json.msg, "No IP addresses supplied on interface: net1");
  }
  // A gateway the kernel cannot reach fails after the rule was added: the rule goes again and
  // main keeps net1's route.
  const before = table(sb, p.ns, "main");
  const unreachable = { ...p.net1, ips: [{ ...p.net1.ips[0], gateway: "10.99.0.1" }] };
  const r = sbr(sb, "ADD", p, sbrConf(unreachable));
  assert.is(r.code, 1);
  assert.match(r.json.msg, "failed to set up source-based routing in table 100");
  assert.equal(rules(sb, p.ns), []);
  assert.equal(table(sb, p.ns, 100), []);
  assert.equal(table(sb, p.ns, "main"), before);
});

test.run();
