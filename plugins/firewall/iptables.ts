import { CniError, Code } from "../../lib/cni/errors.ts";
import { formatIP, parseIP, type Family } from "../../lib/ip/address.ts";
import { deleteRules, ensure, missingRules, type RuleSet, type Wanted } from "../../lib/netfilter/plan.ts";
import { ruleLine, tableScript, type Rule, type SavedTable } from "../../lib/netfilter/rules.ts";

/**
 * The firewall plugin's iptables rule sets, built as data and turned into iptables-restore scripts
 * against a dump of the current filter table. Chain names, rule order and comments are the
 * reference plugin's (checked against its iptables-save output), so either implementation's DEL
 * removes the other's rules and either CHECK accepts the other's ADD.
 */
export const FORWARD_CHAIN = "CNI-FORWARD";
export const DEFAULT_ADMIN_CHAIN = "CNI-ADMIN";
export const STAGE1_CHAIN = "CNI-ISOLATION-STAGE-1";
export const STAGE2_CHAIN = "CNI-ISOLATION-STAGE-2";
const FORWARD_COMMENT = "CNI firewall plugin rules";
const ADMIN_COMMENT = "CNI firewall plugin admin overrides";

export type IngressPolicy = "open" | "same-bridge" | "isolated";

/** A container address as the reference matches it: the host address with a full-length prefix. */
export function hostCidr(address: string): { family: Family; cidr: string } {
  const ip = parseIP(address.split("/")[0]!);
  // iptables-save prints addresses in Go's/RFC 5952 text form, which formatIP produces.
  if (ip) return { family: ip.family, cidr: `${formatIP(ip)}/${ip.family === 4 ? 32 : 128}` };
  throw new CniError(Code.DecodingFailure, `prevResult: invalid IP address ${JSON.stringify(address)}`);
}

/** The per-container rules for one host address (inbound replies, and everything outbound). */
export function containerRules(cidr: string): Rule[] {
  return [
    { chain: FORWARD_CHAIN, spec: ["-d", cidr, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"] },
    { chain: FORWARD_CHAIN, spec: ["-s", cidr, "-j", "ACCEPT"] },
  ];
}

/** The shared chains every container's rules hang from: FORWARD -> CNI-FORWARD -> admin chain first. */
export function forwardSkeleton(adminChain: string): RuleSet {
  return {
    chains: [FORWARD_CHAIN, adminChain],
    wanted: [
      {
        rule: { chain: "FORWARD", spec: ["-m", "comment", "--comment", FORWARD_COMMENT, "-j", FORWARD_CHAIN] },
        at: "top",
      },
      {
        rule: { chain: FORWARD_CHAIN, spec: ["-m", "comment", "--comment", ADMIN_COMMENT, "-j", adminChain] },
        at: "top",
      },
    ],
  };
}

/**
 * Connections the node DNATed (a published port: portmap's host port on a node address) pass the
 * isolation drop, both ways (the conntrack state is the connection's), as netavark's isolate=true
 * lets them: the reference drops them, so a container on one isolated network could not reach
 * another network's published port even through the node's address.
 */
const DNAT_EXEMPT = ["-m", "conntrack", "--ctstate", "DNAT"];

/**
 * Bridge isolation for ingressPolicy same-bridge/isolated (nothing for open): traffic entering from
 * the bridge and leaving by another interface goes to stage 2, which drops what leaves by a
 * policy-managed bridge, unless the connection was DNATed. The jump from FORWARD is ensured last
 * so it lands above CNI-FORWARD. These rules are per bridge, shared by every container on it, and
 * never removed on DEL.
 */
export function isolationRules(policy: IngressPolicy, bridge: string): RuleSet {
  if (policy === "open") return { chains: [], wanted: [] };
  const comment = ["-m", "comment", "--comment", `${FORWARD_COMMENT} (ingressPolicy: ${policy})`];
  const wanted: Wanted[] = [
    { rule: { chain: "FORWARD", spec: [...comment, "-j", STAGE1_CHAIN] }, at: "top" },
    {
      rule: { chain: STAGE1_CHAIN, spec: ["-i", bridge, "!", "-o", bridge, ...comment, "-j", STAGE2_CHAIN] },
      at: "top",
    },
  ];
  if (policy === "isolated") {
    wanted.push({
      rule: { chain: STAGE1_CHAIN, spec: ["-i", bridge, "-o", bridge, ...comment, "-j", "DROP"] },
      at: "top",
    });
  }
  wanted.push(
    { rule: { chain: STAGE1_CHAIN, spec: [...comment, "-j", "RETURN"] }, at: "bottom" },
    { rule: { chain: STAGE2_CHAIN, spec: ["-o", bridge, ...comment, "-j", "DROP"] }, at: "top" },
    // Ensured after the drop so it lands above it; per bridge, so other bridges' rules inserted at
    // the top later cannot come between the two.
    {
      rule: { chain: STAGE2_CHAIN, spec: ["-o", bridge, ...DNAT_EXEMPT, ...comment, "-j", "RETURN"] },
      at: "top",
      optional: true, // the reference's ADD does not write it: its CHECK must still pass ours
    },
    { rule: { chain: STAGE2_CHAIN, spec: [...comment, "-j", "RETURN"] }, at: "bottom" },
  );
  return { chains: [STAGE1_CHAIN, STAGE2_CHAIN], wanted };
}

/** Joins rule sets in order (chains deduplicated). */
export function combine(...sets: RuleSet[]): RuleSet {
  return { chains: [...new Set(sets.flatMap((s) => s.chains))], wanted: sets.flatMap((s) => s.wanted) };
}

/**
 * The script that makes `want` true and adds `append` (the container's rules) unless already
 * present; "" when nothing is missing.
 */
export function ensureScript(t: SavedTable, want: RuleSet, append: Rule[] = []): string {
  const appended = append.map((rule): Wanted => ({ rule, at: "bottom" }));
  return tableScript("filter", ensure(t, combine(want, { chains: [], wanted: appended })));
}

/** The script deleting every copy of `rules` that is present; "" when none is. */
export function deleteScript(t: SavedTable, rules: Rule[]): string {
  return tableScript("filter", deleteRules(t, rules));
}

/** What CHECK misses: absent chains and rules, described the way iptables would print them. */
export function missing(t: SavedTable, want: RuleSet, rules: Rule[] = []): string[] {
  const chains = want.chains.filter((c) => !t.chains.has(c)).map((c) => `chain ${c}`);
  const required = want.wanted.filter((w) => !w.optional).map((w) => w.rule);
  const absent = missingRules(t, [...required, ...rules]);
  return [...chains, ...absent.map((r) => `rule "${ruleLine("-A", r)}"`)];
}

/** iptables chain names: at most 28 characters, no whitespace, not an option or a built-in target. */
export function validChainName(name: string): boolean {
  return (
    /^[A-Za-z0-9_][A-Za-z0-9_.:+=-]{0,27}$/.test(name) &&
    !["ACCEPT", "DROP", "RETURN", "REJECT", "QUEUE", "FORWARD", "INPUT", "OUTPUT", FORWARD_CHAIN].includes(name)
  );
}
