import type { Family } from "../../lib/ip/address.ts";
import { iptablesTransact } from "../../lib/netfilter/iptables.ts";
import { netfilterLocked } from "../../lib/netfilter/lock.ts";
import { deleteRules, ensure } from "../../lib/netfilter/plan.ts";
import { parseDump, tableScript, type Rule } from "../../lib/netfilter/rules.ts";

/**
 * The node's INPUT must let the containers' queries reach dnsmasq on a host whose INPUT policy
 * drops. The reference inserts `-I INPUT 1 -i <bridge> -p udp -m udp --dport 53 -j ACCEPT` (IPv4,
 * UDP only) with the network's first container and never removes it; ours adds TCP (answers that
 * do not fit UDP), IPv6 on dual-stack bridges, and goes with the network's last container, the
 * reference's UDP rule included.
 */
export function dnsRules(bridge: string): Rule[] {
  return ["udp", "tcp"].map((p) => ({
    chain: "INPUT",
    spec: ["-i", bridge, "-p", p, "-m", p, "--dport", "53", "-j", "ACCEPT"],
  }));
}

export async function openDns(bridge: string, families: readonly Family[]) {
  const wanted = dnsRules(bridge).map((rule) => ({ rule, at: "top" as const }));
  await netfilterLocked(() => {
    for (const f of families)
      iptablesTransact(f, "filter", (dump) =>
        tableScript("filter", ensure(parseDump(dump, "filter"), { chains: [], wanted })),
      );
  });
}

export async function closeDns(bridge: string) {
  await netfilterLocked(() => {
    for (const f of [4, 6] as const)
      iptablesTransact(f, "filter", (dump) =>
        tableScript("filter", deleteRules(parseDump(dump, "filter"), dnsRules(bridge))),
      );
  });
}
