import { iptablesTransact } from "../../lib/netfilter/iptables.ts";
import { ensure } from "../../lib/netfilter/plan.ts";
import { parseDump, tableScript } from "../../lib/netfilter/rules.ts";

/**
 * flannel's two chains, with flanneld's names, rules and comments so either agent finds the
 * other's rules in place. Each is one iptables-restore transaction adding only what is missing.
 */

/** A chain jumped from `from` whose rules (in order) all carry `comment`. */
function ensureChain(table: string, from: string, chain: string, comment: string, rules: string[][]) {
  const c = ["-m", "comment", "--comment", comment];
  const want = {
    chains: [chain],
    wanted: [
      { rule: { chain: from, spec: [...c, "-j", chain] }, at: "bottom" as const },
      ...rules.map((spec) => ({ rule: { chain, spec: [...spec, ...c] }, at: "bottom" as const })),
    ],
  };
  iptablesTransact(4, table, (dump) => tableScript(table, ensure(parseDump(dump, table), want)));
}

/**
 * FLANNEL-FWD (filter): FORWARD accepts traffic from and to the cluster network, so a FORWARD
 * policy of DROP (as Docker sets it) does not cut pod traffic between nodes.
 */
export const ensureForwardRules = (network: string) =>
  ensureChain("filter", "FORWARD", "FLANNEL-FWD", "flanneld forward", [
    ["-s", network, "-j", "ACCEPT"],
    ["-d", network, "-j", "ACCEPT"],
  ]);

/**
 * --ip-masq, FLANNEL-POSTRTG (nat): pod traffic leaving the cluster network is masqueraded,
 * traffic between pods of different nodes keeps its source ("no NAT between pods"), and packets
 * kube-proxy marked for masquerade are left to kube-proxy.
 */
export const ensureMasqRules = (network: string, podSubnet: string) =>
  ensureChain("nat", "POSTROUTING", "FLANNEL-POSTRTG", "flanneld masq", [
    ["-m", "mark", "--mark", "0x4000/0x4000", "-j", "RETURN"],
    ["-s", podSubnet, "-d", network, "-j", "RETURN"],
    ["-s", network, "-d", podSubnet, "-j", "RETURN"],
    ["!", "-s", network, "-d", podSubnet, "-j", "RETURN"],
    ["-s", network, "!", "-d", "224.0.0.0/4", "-j", "MASQUERADE", "--random-fully"],
    ["!", "-s", network, "-d", network, "-j", "MASQUERADE", "--random-fully"],
  ]);
