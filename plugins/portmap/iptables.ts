import { hexDigest } from "../../lib/hash.ts";
import { CniError, Code } from "../../lib/cni/errors.ts";
import { addressOrCidr, canonicalIp, formatIP, formatNetwork, type CIDR, type Family } from "../../lib/ip/address.ts";
import { iptablesSave, iptablesTransact } from "../../lib/netfilter/iptables.ts";
import { restoreQuote, tokenize } from "../../lib/netfilter/rules.ts";
import { hostPortTarget, isV6, mappingsForFamily, type PortMapping } from "./config.ts";

/**
 * iptables backend, with the reference's chain layout (table nat):
 *   PREROUTING, OUTPUT: -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
 *   CNI-HOSTPORT-DNAT:  one entry rule per (protocol, <=15 ports) -j CNI-DN-<hash>
 *   CNI-DN-<hash>:      mark hairpin/localhost sources, then DNAT, per mapping
 *   POSTROUTING (first): -j CNI-HOSTPORT-MASQ, which masquerades marked packets
 * Rule sets are built as data here; each call reads the table once (iptables-save) and writes
 * once (iptables-restore --noflush), so it holds the xtables lock for one transaction.
 */
export const DNAT_CHAIN = "CNI-HOSTPORT-DNAT";
export const SETMARK_CHAIN = "CNI-HOSTPORT-SETMARK";
export const MASQ_CHAIN = "CNI-HOSTPORT-MASQ";
const OLD_SNAT_CHAIN = "CNI-HOSTPORT-SNAT";
const MULTIPORT_MAX = 15;

/** "CNI-DN-" + the first 21 hex digits of SHA-512(network name + container ID), as the reference. */
export function chainNameFor(prefix: "DN-" | "SN-", network: string, containerId: string): string {
  return `CNI-${prefix}${hexDigest("sha512", network + containerId)}`.slice(0, 28);
}

/** Comment on the entry rules; it is also how GC tells this network's chains from others'. */
export function dnatComment(network: string, containerId: string): string {
  const c = `dnat name: "${network}" id: "${containerId}"`;
  return c.length > 255 ? `${c.slice(0, 253)}...` : c;
}

/** Parses a dnatComment back into its network and container ID (undefined for other comments). */
export function parseDnatComment(comment: string): { network: string; containerId: string } | undefined {
  const m = /^dnat name: "([^"]*)" id: "([^"]*)"$/.exec(comment);
  return m ? { network: m[1]!, containerId: m[2]! } : undefined;
}

export interface IptablesOptions {
  network: string;
  containerId: string;
  mappings: readonly PortMapping[];
  snat: boolean;
  masqAll: boolean;
  markMasqBit: number;
  externalSetMarkChain?: string;
  conditionsV4?: readonly string[];
  conditionsV6?: readonly string[];
}

/** Everything one container needs in one family's nat table. */
export interface IptablesSpec {
  family: Family;
  chain: string;
  /** Rules of the per-container chain, in order. */
  rules: string[][];
  /** Rules in CNI-HOSTPORT-DNAT that lead to the chain (without the "-j chain"). */
  entryRules: string[][];
  /** The mark value/mask when this call owns the shared SETMARK and MASQ chains. */
  markDef?: string;
}

export function iptablesSpec(o: IptablesOptions, addr: CIDR): IptablesSpec {
  const v6 = isV6(addr);
  const chain = chainNameFor("DN-", o.network, o.containerId);
  const comment = dnatComment(o.network, o.containerId);
  const conditions = (v6 ? o.conditionsV6 : o.conditionsV4) ?? [];
  const setMark = o.externalSetMarkChain ?? SETMARK_CHAIN;

  // Entry rules come from all mappings, even those of the other family (as the reference does),
  // grouped by protocol in sorted order, host ports in mapping order.
  const byProto = new Map<string, number[]>();
  for (const m of o.mappings) byProto.set(m.protocol, [...(byProto.get(m.protocol) ?? []), m.hostPort]);
  const entryRules: string[][] = [];
  for (const proto of [...byProto.keys()].sort()) {
    const ports = byProto.get(proto)!;
    for (let i = 0; i < ports.length; i += MULTIPORT_MAX) {
      const group = ports.slice(i, i + MULTIPORT_MAX).join(",");
      entryRules.push([
        "-m",
        "comment",
        "--comment",
        comment,
        "-m",
        "multiport",
        "-p",
        proto,
        "--destination-ports",
        group,
        ...conditions,
      ]);
    }
  }

  // Per mapping: mark hairpin and localhost sources for masquerade, then DNAT; marks come first.
  const rules: string[][] = [];
  const target = formatIP(addr.ip);
  for (const m of mappingsForFamily(o.mappings, v6)) {
    const base = ["-p", m.protocol, "--dport", String(m.hostPort), ...(m.matchDst ? ["-d", m.matchDst] : [])];
    if (o.snat) {
      const hairpin = o.masqAll ? (v6 ? "::/0" : "0.0.0.0/0") : `${target}/${addr.prefix}`;
      rules.push([...base, "-s", hairpin, "-j", setMark]);
      if (!v6 && !o.masqAll) rules.push([...base, "-s", "127.0.0.1", "-j", setMark]);
    }
    rules.push([...base, "-j", "DNAT", "--to-destination", hostPortTarget(target, m.containerPort, v6)]);
  }
  const mark = 2 ** o.markMasqBit;
  const markDef = o.snat && !o.externalSetMarkChain ? `0x${mark.toString(16)}/0x${mark.toString(16)}` : undefined;
  return { family: v6 ? 6 : 4, chain, rules, entryRules, markDef };
}

const setMarkRule = (markDef: string) => [
  "-m",
  "comment",
  "--comment",
  "CNI portfwd masquerade mark",
  "-j",
  "MARK",
  "--set-xmark",
  markDef,
];
const masqRule = (markDef: string) => ["-m", "mark", "--mark", markDef, "-j", "MASQUERADE"];
const masqJump = ["-m", "comment", "--comment", "CNI portfwd requiring masquerade", "-j", MASQ_CHAIN];
const dnatJump = ["-m", "addrtype", "--dst-type", "LOCAL", "-j", DNAT_CHAIN];

// ---- reading iptables-save output ----

export interface SavedRule {
  chain: string;
  /** The rule after "-A <chain> ", exactly as saved (valid iptables-restore input). */
  text: string;
  tokens: string[];
}

export interface SavedTable {
  chains: Set<string>;
  rules: SavedRule[];
}

/** Parses the nat table of an iptables-save dump. */
export function parseSaved(dump: string): SavedTable {
  const chains = new Set<string>();
  const rules: SavedRule[] = [];
  let inNat = false;
  for (const line of dump.split("\n")) {
    if (line.startsWith("*")) inNat = line === "*nat";
    else if (!inNat) continue;
    else if (line.startsWith(":")) chains.add(line.slice(1).split(" ")[0]!);
    else if (line.startsWith("-A ")) {
      const tokens = tokenize(line);
      const chain = tokens[1]!;
      rules.push({ chain, text: line.slice(4 + chain.length), tokens: tokens.slice(2) });
    }
  }
  return { chains, rules };
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
 * A rule reduced to a comparable form: option groups (option plus its values, with a leading "!")
 * normalised the way iptables stores them (-s network/prefix, implicit -m tcp dropped), then sorted.
 * Our argv form and the iptables-save form of the same rule have the same key.
 */
export function ruleKey(tokens: readonly string[]): string {
  const groups: string[][] = [];
  let negate = false;
  for (const t of tokens) {
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

const targetOf = (r: SavedRule) => {
  const i = r.tokens.lastIndexOf("-j");
  return i >= 0 ? r.tokens[i + 1] : undefined;
};

// ---- plans: pure functions from the current table to an iptables-restore script ----

const line = (words: readonly string[]) => words.map(restoreQuote).join(" ");

/**
 * ADD: creates the shared chains and jumps that are missing (with -N, so a concurrent creator
 * makes the transaction fail instead of being flushed), rewrites the container chain from scratch
 * (declaring it flushes it), and replaces its entry rules at the top of CNI-HOSTPORT-DNAT, so the
 * most recent container to claim a host port receives it.
 */
export function planAdd(dump: string, spec: IptablesSpec): string {
  const t = parseSaved(dump);
  const has = (chain: string, words: readonly string[]) => {
    const key = ruleKey(words);
    return t.rules.some((r) => r.chain === chain && ruleKey(r.tokens) === key);
  };
  const out = ["*nat", `:${spec.chain} - [0:0]`];
  if (spec.markDef) {
    if (!t.chains.has(SETMARK_CHAIN)) out.push(`-N ${SETMARK_CHAIN}`);
    if (!has(SETMARK_CHAIN, setMarkRule(spec.markDef)))
      out.push(`-A ${SETMARK_CHAIN} ${line(setMarkRule(spec.markDef))}`);
    if (!t.chains.has(MASQ_CHAIN)) out.push(`-N ${MASQ_CHAIN}`);
    if (!has(MASQ_CHAIN, masqRule(spec.markDef))) out.push(`-A ${MASQ_CHAIN} ${line(masqRule(spec.markDef))}`);
    // First in POSTROUTING, so it runs before the bridge plugin's own masquerade rules.
    if (!has("POSTROUTING", masqJump)) out.push(`-I POSTROUTING 1 ${line(masqJump)}`);
  }
  if (!t.chains.has(DNAT_CHAIN)) out.push(`-N ${DNAT_CHAIN}`);
  for (const hook of ["PREROUTING", "OUTPUT"]) if (!has(hook, dnatJump)) out.push(`-A ${hook} ${line(dnatJump)}`);
  for (const r of t.rules)
    if (targetOf(r) === spec.chain && r.chain !== spec.chain) out.push(`-D ${r.chain} ${r.text}`);
  for (const e of [...spec.entryRules].reverse()) out.push(`-I ${DNAT_CHAIN} 1 ${line([...e, "-j", spec.chain])}`);
  for (const r of spec.rules) out.push(`-A ${spec.chain} ${line(r)}`);
  out.push("COMMIT", "");
  return out.join("\n");
}

/**
 * DEL/GC: removes every rule that jumps to one of `chains` (found by listing, so independent of the
 * mappings and of who wrote them), then the chains. "" when none of them exists.
 */
export function planDelete(dump: string, chains: readonly string[]): string {
  const t = parseSaved(dump);
  const doomed = chains.filter((c) => t.chains.has(c));
  if (doomed.length === 0) return "";
  const out = ["*nat"];
  for (const r of t.rules) {
    const target = targetOf(r);
    if (target && doomed.includes(target) && !doomed.includes(r.chain)) out.push(`-D ${r.chain} ${r.text}`);
  }
  for (const c of doomed) out.push(`-F ${c}`);
  for (const c of doomed) out.push(`-X ${c}`);
  out.push("COMMIT", "");
  return out.join("\n");
}

/** The per-container chains DEL removes: the current one and the pre-0.7 SNAT chain. */
export function containerChains(network: string, containerId: string): string[] {
  return [chainNameFor("DN-", network, containerId), chainNameFor("SN-", network, containerId)];
}

/**
 * GC: chains of this network whose container is not in `valid`. A chain is attributed to a
 * network only through its entry rule's comment, and only when the chain name matches the hash.
 */
export function staleChains(dump: string, network: string, valid: ReadonlySet<string>): string[] {
  const t = parseSaved(dump);
  const out = new Set<string>();
  for (const r of t.rules) {
    if (r.chain !== DNAT_CHAIN && r.chain !== OLD_SNAT_CHAIN) continue;
    const ci = r.tokens.indexOf("--comment");
    const owner = ci >= 0 ? parseDnatComment(r.tokens[ci + 1] ?? "") : undefined;
    if (!owner || owner.network !== network || valid.has(owner.containerId)) continue;
    for (const c of containerChains(network, owner.containerId)) if (c === targetOf(r)) out.add(c);
  }
  return [...out];
}

/** CHECK: the container chain holds exactly the expected rules and is reachable. Returns a problem or undefined. */
export function verify(dump: string, spec: IptablesSpec): string | undefined {
  const t = parseSaved(dump);
  const fam = spec.family === 4 ? "iptables" : "ip6tables";
  if (!t.chains.has(spec.chain)) return `chain ${spec.chain} not found in ${fam} table nat`;
  const have = t.rules.filter((r) => r.chain === spec.chain).map((r) => ruleKey(r.tokens));
  const want = spec.rules.map(ruleKey);
  const missing = spec.rules.filter((_r, i) => !have.includes(want[i]!));
  if (missing.length > 0) return `rule [${missing[0]!.join(" ")}] not found in chain ${spec.chain} of ${fam} table nat`;
  const extra = have.filter((k) => !want.includes(k));
  if (extra.length > 0 || have.length !== want.length)
    return `chain ${spec.chain} of ${fam} table nat has rules that do not match the port mappings`;
  const entries = t.rules.filter((r) => r.chain === DNAT_CHAIN).map((r) => ruleKey(r.tokens));
  for (const e of spec.entryRules) {
    if (!entries.includes(ruleKey([...e, "-j", spec.chain])))
      return `rule [${e.join(" ")} -j ${spec.chain}] not found in chain ${DNAT_CHAIN} of ${fam} table nat`;
  }
  const jumps = t.rules.filter((r) => r.chain === "PREROUTING" && targetOf(r) === DNAT_CHAIN);
  if (jumps.length === 0) return `PREROUTING of ${fam} table nat does not jump to ${DNAT_CHAIN}`;
  return undefined;
}

// ---- applying ----

export function iptablesAdd(specs: readonly IptablesSpec[]) {
  for (const spec of specs) iptablesTransact(spec.family, "nat", (dump) => planAdd(dump, spec));
}

/** Removes the container's chains from `families` (both by default); missing chains are not an error. */
export function iptablesDel(network: string, containerId: string, families: readonly Family[] = [4, 6]) {
  const chains = containerChains(network, containerId);
  for (const family of families) iptablesTransact(family, "nat", (dump) => planDelete(dump, chains));
}

export function iptablesCheck(specs: readonly IptablesSpec[]) {
  for (const spec of specs) {
    const problem = verify(iptablesSave(spec.family, "nat"), spec);
    if (problem) throw new CniError(Code.Internal, problem);
  }
}

export function iptablesGc(network: string, valid: ReadonlySet<string>) {
  for (const family of [4, 6] as const)
    iptablesTransact(family, "nat", (dump) => planDelete(dump, staleChains(dump, network, valid)));
}
