import { CniError, Code } from "../../lib/cni/errors.ts";
import { formatIP, parseIP, type Family } from "../../lib/ip/address.ts";
import { restoreQuote, tokenize } from "../../lib/netfilter/rules.ts";

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

/** A rule: its chain and its words in iptables-save order (addresses, interfaces, matches, target). */
export interface Rule {
  chain: string;
  spec: string[];
}

/** A rule that must exist; when missing it is inserted at the top of its chain or appended. */
export interface Wanted {
  rule: Rule;
  at: "top" | "bottom";
}

/** Everything one family needs: user chains to create, then rules in the order they are ensured. */
export interface RuleSet {
  chains: string[];
  wanted: Wanted[];
}

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
 * Bridge isolation for ingressPolicy same-bridge/isolated (nothing for open): traffic entering from
 * the bridge and leaving by another interface goes to stage 2, which drops what leaves by a
 * policy-managed bridge. The jump from FORWARD is ensured last so it lands above CNI-FORWARD.
 * These rules are per bridge, shared by every container on it, and never removed on DEL.
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
    { rule: { chain: STAGE2_CHAIN, spec: [...comment, "-j", "RETURN"] }, at: "bottom" },
  );
  return { chains: [STAGE1_CHAIN, STAGE2_CHAIN], wanted };
}

/** Joins rule sets in order (chains deduplicated). */
export function combine(...sets: RuleSet[]): RuleSet {
  return { chains: [...new Set(sets.flatMap((s) => s.chains))], wanted: sets.flatMap((s) => s.wanted) };
}

/** The state of the filter table as far as these rules care: chains and rules, by identity. */
export interface TableState {
  chains: Set<string>;
  /** Rule identity (see ruleKey) -> how many times it is present. */
  rules: Map<string, number>;
}

/** Reads an `iptables-save -t filter` dump. */
export function parseFilterDump(dump: string): TableState {
  const chains = new Set<string>();
  const rules = new Map<string, number>();
  for (const line of dump.split("\n")) {
    if (line.startsWith(":")) chains.add(line.slice(1).split(" ")[0]!);
    else if (line.startsWith("-A ")) {
      const words = tokenize(line);
      const key = ruleKey({ chain: words[1]!, spec: words.slice(2) });
      rules.set(key, (rules.get(key) ?? 0) + 1);
    }
  }
  return { chains, rules };
}

// Identity by words, not by text, so quoting differences between iptables-save and us do not matter.
function ruleKey(r: Rule): string {
  return [r.chain, ...r.spec].join("\0");
}

function line(op: string, r: Rule, pos?: number): string {
  return [op, r.chain, ...(pos === undefined ? [] : [String(pos)]), ...r.spec.map(restoreQuote)].join(" ");
}

function script(lines: string[]): string {
  return lines.length === 0 ? "" : ["*filter", ...lines, "COMMIT", ""].join("\n");
}

/**
 * The iptables-restore script that makes `want` true and adds `append` (the container's rules)
 * unless already present; "" when nothing is missing. Chains are created with -N, never declared
 * with ":", because with --noflush a declaration flushes an existing chain: if another process
 * created it meanwhile, -N fails the transaction instead of wiping that chain.
 */
export function ensureScript(state: TableState, want: RuleSet, append: Rule[] = []): string {
  const lines: string[] = [];
  const have = new Map(state.rules);
  for (const c of want.chains) if (!state.chains.has(c)) lines.push(`-N ${restoreQuote(c)}`);
  const ensure = (r: Rule, at: "top" | "bottom") => {
    const k = ruleKey(r);
    if (have.has(k)) return;
    have.set(k, 1);
    lines.push(at === "top" ? line("-I", r, 1) : line("-A", r));
  };
  for (const w of want.wanted) ensure(w.rule, w.at);
  for (const r of append) ensure(r, "bottom");
  return script(lines);
}

/** The script deleting every copy of `rules` that is present; "" when none is. */
export function deleteScript(state: TableState, rules: Rule[]): string {
  const lines: string[] = [];
  const seen = new Set<string>();
  for (const r of rules) {
    const k = ruleKey(r);
    if (seen.has(k)) continue;
    seen.add(k);
    for (let n = state.rules.get(k) ?? 0; n > 0; n--) lines.push(line("-D", r));
  }
  return script(lines);
}

/** What CHECK misses: absent chains and rules, described the way iptables would print them. */
export function missing(state: TableState, want: RuleSet, rules: Rule[] = []): string[] {
  const out: string[] = [];
  for (const c of want.chains) if (!state.chains.has(c)) out.push(`chain ${c}`);
  for (const r of [...want.wanted.map((w) => w.rule), ...rules]) {
    if (!state.rules.has(ruleKey(r))) out.push(`rule "${line("-A", r)}"`);
  }
  return out;
}

/** iptables chain names: at most 28 characters, no whitespace, not an option or a built-in target. */
export function validChainName(name: string): boolean {
  return (
    /^[A-Za-z0-9_][A-Za-z0-9_.:+=-]{0,27}$/.test(name) &&
    !["ACCEPT", "DROP", "RETURN", "REJECT", "QUEUE", "FORWARD", "INPUT", "OUTPUT", FORWARD_CHAIN].includes(name)
  );
}
