import {
  deleteLine,
  restoreQuote,
  ruleIdentity,
  ruleLine,
  targetOf,
  type Rule,
  type SavedRule,
  type SavedTable,
} from "./rules.ts";

/**
 * Plans: pure functions from a parsed table to the iptables-restore lines that bring it where a
 * plugin wants it, applied as one transaction by iptablesTransact.
 */

/** A rule that must exist; when missing it is inserted at the top of its chain or appended. */
export interface Wanted {
  rule: Rule;
  at: "top" | "bottom";
  /** Ensured by ADD but not required by CHECK: an addition of ours a reference ADD lacks. */
  optional?: boolean;
}

/** User chains to create, then rules in the order they are ensured. */
export interface RuleSet {
  chains: string[];
  wanted: Wanted[];
}

/**
 * ADD: the lines creating what `want` lacks. Chains are created with -N, never declared with ":",
 * because with --noflush a declaration flushes an existing chain: if another process created it
 * meanwhile, -N fails the transaction instead of wiping that chain.
 */
export function ensure(t: SavedTable, want: RuleSet): string[] {
  const lines = want.chains.filter((c) => !t.chains.has(c)).map((c) => `-N ${restoreQuote(c)}`);
  const added = new Set<string>();
  for (const { rule, at } of want.wanted) {
    const id = ruleIdentity(rule);
    if (added.has(id) || t.copiesOf(rule).length > 0) continue;
    added.add(id);
    lines.push(at === "top" ? ruleLine("-I", rule, 1) : ruleLine("-A", rule));
  }
  return lines;
}

/** CHECK: the rules the table lacks. */
export const missingRules = (t: SavedTable, rules: readonly Rule[]): Rule[] =>
  rules.filter((r) => t.copiesOf(r).length === 0);

/** DEL of single rules: the lines deleting every copy of each of `rules` the table holds. */
export function deleteRules(t: SavedTable, rules: readonly Rule[]): string[] {
  const lines: string[] = [];
  const seen = new Set<string>();
  for (const r of rules) {
    const id = ruleIdentity(r);
    if (seen.has(id)) continue;
    seen.add(id);
    lines.push(...t.copiesOf(r).map(deleteLine));
  }
  return lines;
}

/** The rules outside `chains` that jump to one of them, in dump order. */
export const jumpsTo = (t: SavedTable, chains: readonly string[]): SavedRule[] =>
  t.rules.filter((r) => !chains.includes(r.chain) && chains.includes(targetOf(r) ?? ""));

/**
 * DEL/GC of chains: the lines removing the jumps to those of `chains` that exist (found by
 * listing, so whoever wrote them and whatever they match), then flushing and deleting the chains.
 * `ours` limits which jumps go; a chain that keeps a jump stays.
 */
export function deleteChains(
  t: SavedTable,
  chains: readonly string[],
  ours: (jump: SavedRule) => boolean = () => true,
): string[] {
  const doomed = chains.filter((c) => t.chains.has(c));
  const jumps = jumpsTo(t, doomed);
  const kept = new Set(jumps.filter((j) => !ours(j)).map((j) => targetOf(j)));
  const gone = doomed.filter((c) => !kept.has(c));
  return [...jumps.filter(ours).map(deleteLine), ...gone.map((c) => `-F ${c}`), ...gone.map((c) => `-X ${c}`)];
}

/** A plugin's reading of the rules: this chain belongs to this container of this network. */
export interface Claim {
  chain: string;
  network: string;
  containerId: string;
}

/** GC: the chains claimed for `network` by containers not in `valid`, in claim order, each once. */
export function staleChains(claims: Iterable<Claim>, network: string, valid: ReadonlySet<string>): string[] {
  const out = new Set<string>();
  for (const c of claims) if (c.network === network && !valid.has(c.containerId)) out.add(c.chain);
  return [...out];
}
