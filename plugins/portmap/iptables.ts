import { hexDigest } from "../../lib/hash.ts";
import { CniError, Code } from "../../lib/cni/errors.ts";
import { formatIP, type CIDR, type Family } from "../../lib/ip/address.ts";
import { iptablesSave, iptablesTransact } from "../../lib/netfilter/iptables.ts";
import {
  deleteChains,
  ensure,
  jumpsTo,
  missingRules,
  staleChains,
  type Claim,
  type RuleSet,
} from "../../lib/netfilter/plan.ts";
import {
  commentOf,
  deleteLine,
  parseDump,
  ruleKey,
  ruleLine,
  tableScript,
  targetOf,
  type SavedTable,
} from "../../lib/netfilter/rules.ts";
import { hostPortTarget, mappingsForFamily, type PortMapping } from "./config.ts";

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
  const v6 = addr.ip.family === 6;
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

const natTable = (dump: string) => parseDump(dump, "nat");

// ---- plans: pure functions from the current table to an iptables-restore script ----

/** The shared chains and jumps, in the order the reference creates them. */
function sharedRules(markDef: string | undefined): RuleSet[] {
  const bottom = (chain: string, spec: string[]) => ({ rule: { chain, spec }, at: "bottom" as const });
  const sets: RuleSet[] = [];
  if (markDef) {
    sets.push(
      { chains: [SETMARK_CHAIN], wanted: [bottom(SETMARK_CHAIN, setMarkRule(markDef))] },
      {
        chains: [MASQ_CHAIN],
        // First in POSTROUTING, so it runs before the bridge plugin's own masquerade rules.
        wanted: [bottom(MASQ_CHAIN, masqRule(markDef)), { rule: { chain: "POSTROUTING", spec: masqJump }, at: "top" }],
      },
    );
  }
  sets.push({ chains: [DNAT_CHAIN], wanted: ["PREROUTING", "OUTPUT"].map((hook) => bottom(hook, dnatJump)) });
  return sets;
}

/**
 * ADD: creates the shared chains and jumps that are missing (with -N, so a concurrent creator
 * makes the transaction fail instead of being flushed), rewrites the container chain from scratch
 * (declaring it flushes it), and replaces its entry rules at the top of CNI-HOSTPORT-DNAT, so the
 * most recent container to claim a host port receives it. Without `createShared` (the caller does
 * not hold the node-wide lock) a table that lacks a shared chain or jump gets no plan: undefined.
 */
export function planAdd(dump: string, spec: IptablesSpec, createShared = true): string | undefined {
  const t = natTable(dump);
  const shared = sharedRules(spec.markDef).flatMap((set) => ensure(t, set));
  if (shared.length > 0 && !createShared) return undefined;
  return tableScript("nat", [
    `:${spec.chain} - [0:0]`,
    ...shared,
    ...jumpsTo(t, [spec.chain]).map(deleteLine),
    ...[...spec.entryRules]
      .reverse()
      .map((e) => ruleLine("-I", { chain: DNAT_CHAIN, spec: [...e, "-j", spec.chain] }, 1)),
    ...spec.rules.map((r) => ruleLine("-A", { chain: spec.chain, spec: r })),
  ]);
}

/**
 * DEL/GC: removes every rule that jumps to one of `chains` (found by listing, so independent of the
 * mappings and of who wrote them), then the chains. "" when none of them exists.
 */
export function planDelete(dump: string, chains: readonly string[]): string {
  return tableScript("nat", deleteChains(natTable(dump), chains));
}

/** The per-container chains DEL removes: the current one and the pre-0.7 SNAT chain. */
export function containerChains(network: string, containerId: string): string[] {
  return [chainNameFor("DN-", network, containerId), chainNameFor("SN-", network, containerId)];
}

/**
 * A container's chains are attributed to it only through its entry rules' comments, and only when
 * the chain name is the hash of the network and container the comment names.
 */
function* entryClaims(t: SavedTable): Iterable<Claim> {
  for (const r of t.rules) {
    if (r.chain !== DNAT_CHAIN && r.chain !== OLD_SNAT_CHAIN) continue;
    const owner = parseDnatComment(commentOf(r) ?? "");
    const target = targetOf(r);
    if (owner && target && containerChains(owner.network, owner.containerId).includes(target))
      yield { chain: target, ...owner };
  }
}

/** GC: chains of this network whose container is not in `valid`. */
export function staleDnatChains(dump: string, network: string, valid: ReadonlySet<string>): string[] {
  return staleChains(entryClaims(natTable(dump)), network, valid);
}

/** CHECK: the container chain holds exactly the expected rules and is reachable. Returns a problem or undefined. */
export function verify(dump: string, spec: IptablesSpec): string | undefined {
  const t = natTable(dump);
  const fam = spec.family === 4 ? "iptables" : "ip6tables";
  if (!t.chains.has(spec.chain)) return `chain ${spec.chain} not found in ${fam} table nat`;
  const absent = missingRules(
    t,
    spec.rules.map((r) => ({ chain: spec.chain, spec: r })),
  );
  if (absent.length > 0)
    return `rule [${absent[0]!.spec.join(" ")}] not found in chain ${spec.chain} of ${fam} table nat`;
  const have = t.rules.filter((r) => r.chain === spec.chain).map((r) => ruleKey(r.spec));
  const want = spec.rules.map(ruleKey);
  const extra = have.filter((k) => !want.includes(k));
  if (extra.length > 0 || have.length !== want.length)
    return `chain ${spec.chain} of ${fam} table nat has rules that do not match the port mappings`;
  const entries = missingRules(
    t,
    spec.entryRules.map((e) => ({ chain: DNAT_CHAIN, spec: [...e, "-j", spec.chain] })),
  );
  if (entries.length > 0)
    return `rule [${entries[0]!.spec.join(" ")}] not found in chain ${DNAT_CHAIN} of ${fam} table nat`;
  const jumps = t.rules.filter((r) => r.chain === "PREROUTING" && targetOf(r) === DNAT_CHAIN);
  if (jumps.length === 0) return `PREROUTING of ${fam} table nat does not jump to ${DNAT_CHAIN}`;
  return undefined;
}

// ---- applying ----

/**
 * Programs the container's rules. Without `createShared` it stops at the first family whose table
 * lacks the shared chains or jumps and returns false: the caller takes the node-wide lock and
 * calls again (the families done so far are rewritten the same way).
 */
export function iptablesAdd(specs: readonly IptablesSpec[], createShared: boolean): boolean {
  for (const spec of specs) {
    let needsShared = false;
    iptablesTransact(spec.family, "nat", (dump) => {
      const script = planAdd(dump, spec, createShared);
      needsShared = script === undefined;
      return script ?? "";
    });
    if (needsShared) return false;
  }
  return true;
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
    iptablesTransact(family, "nat", (dump) => planDelete(dump, staleDnatChains(dump, network, valid)));
}
