import { addressOrCidr, canonicalIp, formatNetwork } from "../ip/address.ts";

/**
 * iptables rules as data: a rule is its chain and its words (argv form, as iptables-restore reads
 * them after "-A <chain>"). Plans compare the rules they want with an iptables-save dump by a
 * normalised key, so the form we write and the form iptables prints back are the same rule.
 */
export interface Rule {
  chain: string;
  spec: string[];
}

/** A rule read from a dump, with its text as saved: valid iptables-restore input to delete it by. */
export interface SavedRule extends Rule {
  text: string;
}

/** One table of an iptables-save dump. */
export interface SavedTable {
  /** Declared chains, in dump order. */
  chains: Set<string>;
  /** Rules, in dump order. */
  rules: SavedRule[];
  /** The saved rules that are `rule` (same ruleIdentity), in dump order. */
  copiesOf(rule: Rule): SavedRule[];
}

/** Parses the `table` section of an iptables-save dump (empty when the dump has none). */
export function parseDump(dump: string, table: string): SavedTable {
  const chains = new Set<string>();
  const rules: SavedRule[] = [];
  let inTable = false;
  for (const line of dump.split("\n")) {
    if (line.startsWith("*")) inTable = line === `*${table}`;
    else if (!inTable) continue;
    else if (line.startsWith(":")) chains.add(line.slice(1).split(" ")[0]!);
    else if (line.startsWith("-A ")) {
      const words = tokenize(line);
      const chain = words[1]!;
      rules.push({ chain, spec: words.slice(2), text: line.slice(4 + chain.length) });
    }
  }
  // Keys are computed on first use, one chain at a time: a DEL that only looks for jumps never
  // needs them, and an ADD keys only the chains it ensures rules in, not the whole table.
  const byChain = new Map<string, Map<string, SavedRule[]>>();
  const copiesOf = (rule: Rule) => {
    let index = byChain.get(rule.chain);
    if (!index) {
      index = new Map();
      for (const r of rules) {
        if (r.chain !== rule.chain) continue;
        const id = ruleIdentity(r);
        const same = index.get(id);
        if (same) same.push(r);
        else index.set(id, [r]);
      }
      byChain.set(rule.chain, index);
    }
    return index.get(ruleIdentity(rule)) ?? [];
  };
  return { chains, rules, copiesOf };
}

/** Splits a saved rule into words the way iptables-restore does (double quotes, backslash escapes). */
export function tokenize(line: string): string[] {
  const words: string[] = [];
  let cur = "";
  let inWord = false;
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quoted) {
      if (c === "\\" && i + 1 < line.length) cur += line[++i];
      else if (c === '"') quoted = false;
      else cur += c;
    } else if (c === '"') {
      quoted = inWord = true;
    } else if (c === " " || c === "\t") {
      if (inWord) words.push(cur);
      cur = "";
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (inWord) words.push(cur);
  return words;
}

/** Quotes a word for iptables-restore's tokenizer (it understands double quotes and \"). */
export function restoreQuote(word: string): string {
  if (/^[A-Za-z0-9_.:/,!+=-]+$/.test(word)) return word;
  return `"${word.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

/** A rule as an iptables-restore command: `-A chain words`, `-D chain words`, `-I chain 1 words`. */
export function ruleLine(op: "-A" | "-D" | "-I", r: Rule, position?: number): string {
  return [op, r.chain, ...(position === undefined ? [] : [String(position)]), ...r.spec.map(restoreQuote)].join(" ");
}

/**
 * The command deleting a saved rule, in its saved words: iptables deletes the rule that matches
 * them exactly, which a copy found by ruleKey may not do in our words.
 */
export const deleteLine = (r: SavedRule) => `-D ${r.chain} ${r.text}`;

/** Lines of one table as an iptables-restore script ("" for none, so nothing is run). */
export function tableScript(table: string, lines: readonly string[]): string {
  return lines.length === 0 ? "" : [`*${table}`, ...lines, "COMMIT", ""].join("\n");
}

const ALIASES: Record<string, string> = {
  "--source": "-s",
  "--src": "-s",
  "--destination": "-d",
  "--dst": "-d",
  "--protocol": "-p",
  "--jump": "-j",
  "--match": "-m",
  "--destination-ports": "--dports",
  "--destination-port": "--dport",
};

/**
 * A rule's words reduced to a comparable form: option groups (option plus its values, with a
 * leading "!") normalised the way iptables stores them (-s network/prefix, implicit -m tcp
 * dropped), then sorted. Our argv form and the iptables-save form of the same rule have the same
 * key; it only merges spellings, so rules with equal words always share it.
 */
export function ruleKey(words: readonly string[]): string {
  const groups: string[][] = [];
  let negate = false;
  for (const t of words) {
    if (t === "!") {
      negate = true;
      continue;
    }
    if (t.startsWith("-") || groups.length === 0) {
      groups.push(negate ? ["!", ALIASES[t] ?? t] : [ALIASES[t] ?? t]);
      negate = false;
    } else groups[groups.length - 1]!.push(t);
  }
  const out: string[] = [];
  for (const g of groups) {
    const neg = g[0] === "!";
    const [opt, ...vals] = neg ? g.slice(1) : g;
    if (opt === "-m" && ["tcp", "udp", "sctp"].includes(vals[0] ?? "")) continue;
    if ((opt === "-s" || opt === "-d") && vals.length === 1) {
      const c = addressOrCidr(vals[0]!);
      if (c && c.prefix === 0 && !neg) continue;
      if (c) vals[0] = formatNetwork(c);
    }
    if (opt === "-p") vals[0] = (vals[0] ?? "").toLowerCase();
    if (opt === "--to-destination" && vals.length === 1) vals[0] = canonicalTarget(vals[0]!);
    out.push([...(neg ? ["!"] : []), opt, ...vals].join(" "));
  }
  return out.sort().join("\n");
}

function canonicalTarget(t: string): string {
  const m = /^\[([^\]]+)\](:.*)?$/.exec(t) ?? /^([^:]+)(:.*)?$/.exec(t);
  if (!m) return t;
  const ip = canonicalIp(m[1]!);
  if (!ip) return t;
  return (t.startsWith("[") ? `[${ip}]` : ip) + (m[2] ?? "");
}

/** What makes two rules the same rule: their chain and their ruleKey. */
export const ruleIdentity = (r: Rule) => `${r.chain}\0${ruleKey(r.spec)}`;

/** The target a rule jumps to (the word after its last -j). */
export function targetOf(r: Rule): string | undefined {
  const i = r.spec.lastIndexOf("-j");
  return i >= 0 ? r.spec[i + 1] : undefined;
}

/** The rule's comment (the word after its first --comment). */
export function commentOf(r: Rule): string | undefined {
  const i = r.spec.indexOf("--comment");
  return i >= 0 ? r.spec[i + 1] : undefined;
}
