import { test } from "uvu";
import * as assert from "uvu/assert";
import { join } from "node:path";
import { type Sandbox, sandboxed } from "../helpers/sandbox.ts";

const inSandbox = sandboxed(test, "nftprb");

// The netlink look-up that spares a DEL on an iptables node its `nft` process must say "absent"
// only when the table really is absent, per family, in the namespace it runs in.

const FIXTURE = join(import.meta.dirname, "..", "fixtures", "netfilter-probes.ts");
const BUN = join(import.meta.dirname, "..", "..", "node_modules", ".bin", "bun");

const absent = (sb: Sandbox, ...pairs: [string, string][]): boolean[] =>
  JSON.parse(sb.inNode([BUN, FIXTURE, ...pairs.flatMap((p) => ["table", ...p])]).stdout) as boolean[];

inSandbox("a table is absent until nft creates it, in its own family only", (sb) => {
  const probes: [string, string][] = [
    ["inet", "cni_plugins_masquerade"],
    ["ip", "cni_plugins_masquerade"],
    ["ip6", "cni_hostport"],
  ];
  assert.equal(absent(sb, ...probes), [true, true, true]);
  sb.inNode(["nft", "add", "table", "inet", "cni_plugins_masquerade"]);
  sb.inNode(["nft", "add", "table", "ip6", "cni_hostport"]);
  assert.equal(absent(sb, ...probes), [false, true, false]);
  sb.inNode(["nft", "delete", "table", "inet", "cni_plugins_masquerade"]);
  assert.equal(absent(sb, ...probes), [true, true, false]);
});

inSandbox("a table in another namespace is not seen", (sb) => {
  sb.inNode(["nft", "add", "table", "inet", "cni_plugins_masquerade"]);
  const other = sb.addContainer();
  const r = sb.inNs(other.name, [BUN, FIXTURE, "table", "inet", "cni_plugins_masquerade"]);
  assert.equal(JSON.parse(r.stdout), [true]);
});

inSandbox("an iptables chain is absent until iptables-nft creates it, per family and table", (sb) => {
  const probes = [
    "chain",
    "4",
    "nat",
    "CNI-probe",
    "chain",
    "6",
    "nat",
    "CNI-probe",
    "chain",
    "4",
    "filter",
    "CNI-probe",
  ];
  const chainAbsent = () => JSON.parse(sb.inNode([BUN, FIXTURE, ...probes]).stdout) as boolean[];
  assert.equal(chainAbsent(), [true, true, true], "no table at all");
  sb.inNode(["iptables", "-t", "nat", "-N", "CNI-probe"]);
  assert.equal(chainAbsent(), [false, true, true]);
  sb.inNode(["ip6tables", "-t", "nat", "-N", "CNI-probe"]);
  sb.inNode(["iptables", "-t", "nat", "-X", "CNI-probe"]);
  assert.equal(chainAbsent(), [true, false, true]);
});

test.run();
