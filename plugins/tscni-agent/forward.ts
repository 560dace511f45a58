import { iptablesTransact } from "../../lib/netfilter/iptables.ts";
import { ensure, type RuleSet } from "../../lib/netfilter/plan.ts";
import { parseDump, tableScript } from "../../lib/netfilter/rules.ts";

const CHAIN = "FLANNEL-FWD";
const comment = ["-m", "comment", "--comment", "flanneld forward"];

/**
 * flannel's FLANNEL-FWD (filter table): FORWARD accepts traffic from and to the cluster network,
 * so a FORWARD policy of DROP (as Docker sets it) does not cut pod traffic between nodes. Same
 * chain, rules and comment as flanneld's, so either agent finds the other's rules in place.
 * One iptables-restore transaction; only what is missing is added.
 */
export function ensureForwardRules(network: string) {
  const want: RuleSet = {
    chains: [CHAIN],
    wanted: [
      { rule: { chain: "FORWARD", spec: [...comment, "-j", CHAIN] }, at: "bottom" },
      { rule: { chain: CHAIN, spec: ["-s", network, ...comment, "-j", "ACCEPT"] }, at: "bottom" },
      { rule: { chain: CHAIN, spec: ["-d", network, ...comment, "-j", "ACCEPT"] }, at: "bottom" },
    ],
  };
  iptablesTransact(4, "filter", (dump) => tableScript("filter", ensure(parseDump(dump, "filter"), want)));
}
