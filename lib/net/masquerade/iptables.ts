import { hexDigest } from "../../hash.ts";
import { formatIP, formatNetwork, type CIDR, type Family } from "../../ip/address.ts";
import { iptablesChainAbsent, iptablesTransact } from "../../netfilter/iptables.ts";
import { deleteChains, ensure, staleChains, type Claim } from "../../netfilter/plan.ts";
import { commentOf, parseDump, tableScript, type Rule, type SavedTable } from "../../netfilter/rules.ts";

/**
 * iptables masquerade, with the reference's names so either implementation's DEL removes the
 * other's rules: chain `CNI-` + 24 hex of sha512(network + containerID) in table nat, rules
 * commented `name: "<net>" id: "<id>"`, jumped to from POSTROUTING per container address.
 */
export const masqChainName = (network: string, containerId: string) =>
  `CNI-${hexDigest("sha512", network + containerId).slice(0, 24)}`;

/** Go's %q of each value inside `name: %q id: %q`. */
export const masqComment = (network: string, containerId: string) =>
  `name: ${goQuote(network)} id: ${goQuote(containerId)}`;

function goQuote(s: string): string {
  return JSON.stringify(s).replace(/\\u00([0-9a-f]{2})/g, "\\x$1");
}

const MULTICAST: Record<Family, string> = { 4: "224.0.0.0/4", 6: "ff00::/8" };

const hostOf = (c: CIDR) => `${formatIP(c.ip)}/${c.ip.family === 4 ? 32 : 128}`;

const natTable = (dump: string) => parseDump(dump, "nat");

/** The reference's three rules for one container address, in the order it appends them. */
export function iptablesMasqRules(addr: CIDR, chain: string, comment: string): Rule[] {
  const tag = ["-m", "comment", "--comment", comment];
  return [
    { chain, spec: ["-d", formatNetwork(addr), ...tag, "-j", "ACCEPT"] },
    { chain, spec: ["!", "-d", MULTICAST[addr.ip.family], ...tag, "-j", "MASQUERADE"] },
    { chain: "POSTROUTING", spec: ["-s", hostOf(addr), ...tag, "-j", chain] },
  ];
}

/** Script that adds whichever of `rules` the dump lacks (append-if-absent), creating the chain if needed. */
export function iptablesSetupScript(rules: readonly Rule[], chain: string, dump: string): string {
  const t = natTable(dump);
  // Declared, as the reference does, only when new: declaring an existing chain would flush it.
  const declare = t.chains.has(chain) ? [] : [`:${chain} - [0:0]`];
  return tableScript("nat", [
    ...declare,
    ...ensure(t, { chains: [], wanted: rules.map((rule) => ({ rule, at: "bottom" })) }),
  ]);
}

/**
 * Lines that remove one container's masquerade: the jumps to its chain (only those from `sources`
 * when they are known), then the chain itself once nothing jumps to it any more (another
 * interface of the same container on the same network shares the chain).
 */
export function iptablesTeardownLines(dump: string, chain: string, sources?: ReadonlySet<string>): string[] {
  const fromOurs = sources ? (jump: Rule) => sources.has(sourceOf(jump) ?? "") : undefined;
  return deleteChains(natTable(dump), [chain], fromOurs);
}

function sourceOf(r: Rule): string | undefined {
  const i = r.spec.indexOf("-s");
  return i >= 0 ? r.spec[i + 1] : undefined;
}

/** The `-s` values a container address may have been installed with: host form and legacy network form. */
export function sourceForms(addrs: readonly CIDR[]): Set<string> {
  const s = new Set<string>();
  for (const a of addrs) s.add(hostOf(a)).add(formatNetwork(a));
  return s;
}

/**
 * A masquerade chain belongs to the attachment its first commented rule names, when the chain's
 * name is the hash of that network and container.
 */
function* chainClaims(t: SavedTable): Iterable<Claim> {
  const firstOwner = new Map<string, { network: string; containerId: string }>();
  for (const r of t.rules) {
    if (firstOwner.has(r.chain)) continue;
    const m = /^name: "([^"\\]*)" id: "([^"\\]*)"$/.exec(commentOf(r) ?? "");
    if (m) firstOwner.set(r.chain, { network: m[1]!, containerId: m[2]! });
  }
  for (const chain of t.chains) {
    const owner = firstOwner.get(chain);
    if (/^CNI-[0-9a-f]{24}$/.test(chain) && owner && masqChainName(owner.network, owner.containerId) === chain)
      yield { chain, ...owner };
  }
}

/** Masquerade chains of `network` (recognised by name and comment) whose container is not valid. */
export function staleMasqChains(dump: string, network: string, validIds: ReadonlySet<string>): string[] {
  return staleChains(chainClaims(natTable(dump)), network, validIds);
}

export function iptablesSetup(addrs: readonly CIDR[], network: string, containerId: string) {
  const chain = masqChainName(network, containerId);
  const comment = masqComment(network, containerId);
  for (const family of [4, 6] as const) {
    const mine = addrs.filter((c) => c.ip.family === family);
    if (mine.length === 0) continue;
    const rules = mine.flatMap((c) => iptablesMasqRules(c, chain, comment));
    // A new attachment's chain does not exist yet, and then no rule names it: the plan needs no
    // dump (one iptables-save less per ADD). Only an ADD of this attachment creates the chain,
    // and it holds the attachment's lock.
    const known = iptablesChainAbsent(family, "nat", chain) ? "" : undefined;
    iptablesTransact(family, "nat", (dump) => iptablesSetupScript(rules, chain, dump), known);
  }
}

export function iptablesTeardown(family: Family, network: string, containerId: string, addrs: readonly CIDR[]) {
  const chain = masqChainName(network, containerId);
  const sources = addrs.length > 0 ? sourceForms(addrs) : undefined;
  iptablesTransact(family, "nat", (dump) => tableScript("nat", iptablesTeardownLines(dump, chain, sources)));
}

export function iptablesGc(family: Family, network: string, validIds: ReadonlySet<string>) {
  iptablesTransact(family, "nat", (dump) => {
    const t = natTable(dump);
    // Chain by chain (jumps, flush, delete): the script masquerade GC wrote before the planners were shared.
    return tableScript(
      "nat",
      staleChains(chainClaims(t), network, validIds).flatMap((chain) => deleteChains(t, [chain])),
    );
  });
}
