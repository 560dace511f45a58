import { hexDigest } from "../hash.ts";
import { CniError, Code } from "../cni/errors.ts";
import { formatIP, formatNetwork, parseCIDR, type CIDR, type Family } from "../ip/address.ts";
import type { NetfilterBackend } from "../netfilter/backend.ts";
import { iptablesTransact } from "../netfilter/iptables.ts";
import { nftApply, nftList } from "../netfilter/nftables.ts";
import { restoreQuote, savedChains, savedRules } from "../netfilter/rules.ts";

/**
 * Masquerade for container addresses, with the reference's names so either implementation's DEL
 * removes the other's rules:
 *  - iptables: chain `CNI-` + 24 hex of sha512(network + containerID) in table nat, rules commented
 *    `name: "<net>" id: "<id>"`, jumped to from POSTROUTING per container address;
 *  - nftables: table `inet cni_plugins_masquerade`, one rule per address in `masq_checks` whose
 *    comment starts with a hash of (network, ifname, containerID).
 * Rule sets are built as data, compared with what the kernel holds, and applied in one transaction
 * per family.
 */

export interface Attachment {
  network: string;
  containerId: string;
  ifname: string;
}

const sha512hex = (s: string) => hexDigest("sha512", s);

export const masqChainName = (network: string, containerId: string) =>
  `CNI-${sha512hex(network + containerId).slice(0, 24)}`;

/** Go's %q of each value inside `name: %q id: %q`. */
export const masqComment = (network: string, containerId: string) =>
  `name: ${goQuote(network)} id: ${goQuote(containerId)}`;

function goQuote(s: string): string {
  return JSON.stringify(s).replace(/\\u00([0-9a-f]{2})/g, "\\x$1");
}

// ---------------------------------------------------------------- iptables

const MULTICAST: Record<Family, string> = { 4: "224.0.0.0/4", 6: "ff00::/8" };

export interface IptRule {
  chain: string;
  /** Match and target words in iptables-save's order, so a rule compares equal to the dump's line. */
  spec: string[];
}

const familyOf = (c: CIDR): Family => (c.ip.family === 4 ? 4 : 6);

const hostOf = (c: CIDR) => `${formatIP(c.ip)}/${c.ip.family === 4 ? 32 : 128}`;

/** The reference's three rules for one container address, in the order it appends them. */
export function iptablesMasqRules(addr: CIDR, chain: string, comment: string): IptRule[] {
  const tag = ["-m", "comment", "--comment", comment];
  return [
    { chain, spec: ["-d", formatNetwork(addr), ...tag, "-j", "ACCEPT"] },
    { chain, spec: ["!", "-d", MULTICAST[familyOf(addr)], ...tag, "-j", "MASQUERADE"] },
    { chain: "POSTROUTING", spec: ["-s", hostOf(addr), ...tag, "-j", chain] },
  ];
}

export const ruleLine = (op: "-A" | "-D", r: IptRule) => `${op} ${r.chain} ${r.spec.map(restoreQuote).join(" ")}`;

/** Script that adds whichever of `rules` the dump lacks (append-if-absent), creating the chain if needed. */
export function iptablesSetupScript(rules: readonly IptRule[], chain: string, dump: string): string {
  const present = new Set(savedRules(dump));
  const lines: string[] = [];
  if (!savedChains(dump).has(chain)) lines.push(`:${chain} - [0:0]`);
  for (const r of rules) {
    const line = ruleLine("-A", r);
    if (present.has(line)) continue;
    present.add(line);
    lines.push(line);
  }
  return lines.length === 0 ? "" : ["*nat", ...lines, "COMMIT", ""].join("\n");
}

/**
 * Script that removes one container's masquerade: the jumps to its chain (only those from
 * `sources` when they are known), then the chain itself once nothing jumps to it any more (another
 * interface of the same container on the same network shares the chain).
 */
export function iptablesTeardownLines(dump: string, chain: string, sources?: ReadonlySet<string>): string[] {
  const jumps = savedRules(dump).filter((l) => l.endsWith(` -j ${chain}`) && !l.startsWith(`-A ${chain} `));
  const ours = sources ? jumps.filter((l) => sources.has(/ -s (\S+)/.exec(l)?.[1] ?? "")) : jumps;
  const lines = ours.map((l) => `-D${l.slice(2)}`);
  if (savedChains(dump).has(chain) && ours.length === jumps.length) lines.push(`-F ${chain}`, `-X ${chain}`);
  return lines;
}

const script = (lines: string[]) => (lines.length === 0 ? "" : ["*nat", ...lines, "COMMIT", ""].join("\n"));

/** The `-s` values a container address may have been installed with: host form and legacy network form. */
export function sourceForms(addrs: readonly CIDR[]): Set<string> {
  const s = new Set<string>();
  for (const a of addrs) s.add(hostOf(a)).add(formatNetwork(a));
  return s;
}

// ---------------------------------------------------------------- nftables

export const NFT_TABLE = "cni_plugins_masquerade";
const NFT_CHAIN = "masq_checks";
const NFT_COMMENT_MAX = 128;

const hash16 = (s: string) => sha512hex(s).slice(0, 16);
export const nftNetworkHash = (network: string) => hash16(network);
export const nftInstanceHash = (a: Attachment) => `${hash16(a.network)}-${hash16(`${a.ifname}:${a.containerId}`)}`;

export function nftComment(a: Attachment): string {
  const strip = (s: string) => s.replaceAll('"', "");
  const c = `${nftInstanceHash(a)}, net: ${strip(a.network)}, if: ${strip(a.ifname)}, id: ${strip(a.containerId)}`;
  return c.slice(0, NFT_COMMENT_MAX);
}

interface NftRule {
  handle: number;
  comment?: string;
}

function nftMasqRules(): NftRule[] {
  return nftList(["chain", "inet", NFT_TABLE, NFT_CHAIN])
    .map((o) => o.rule as { handle: number; comment?: string } | undefined)
    .filter((r): r is NftRule => r !== undefined);
}

const nftString = (s: string) => {
  if (/["\\\n]/.test(s)) throw new CniError(Code.InvalidConfig, `refusing nft string ${JSON.stringify(s)}`);
  return `"${s}"`;
};

/** One transaction: table and chains declared, postrouting rewritten, stale rules replaced by one per address. */
export function nftSetupScript(addrs: readonly CIDR[], a: Attachment, staleHandles: readonly number[]): string {
  const t = `inet ${NFT_TABLE}`;
  const comment = nftString(nftComment(a));
  return [
    `add table ${t} { comment "Masquerading for plugins from github.com/containernetworking/plugins" ; }`,
    `add chain ${t} ${NFT_CHAIN} { comment "Masquerade traffic from certain IPs to any (non-multicast) IP outside their subnet" ; }`,
    `add chain ${t} postrouting { type nat hook postrouting priority srcnat ; }`,
    `flush chain ${t} postrouting`,
    `add rule ${t} postrouting ip daddr == 224.0.0.0/4 return`,
    `add rule ${t} postrouting ip6 daddr == ff00::/8 return`,
    `add rule ${t} postrouting goto ${NFT_CHAIN}`,
    ...staleHandles.map((h) => `delete rule ${t} ${NFT_CHAIN} handle ${h}`),
    ...addrs.map((c) => {
      const ip = c.ip.family === 4 ? "ip" : "ip6";
      return `add rule ${t} ${NFT_CHAIN} ${ip} saddr == ${formatIP(c.ip)} ${ip} daddr != ${formatNetwork(c)} masquerade comment ${comment}`;
    }),
    "",
  ].join("\n");
}

const nftDeleteScript = (handles: readonly number[]) =>
  `${handles.map((h) => `delete rule inet ${NFT_TABLE} ${NFT_CHAIN} handle ${h}`).join("\n")}\n`;

// ---------------------------------------------------------------- entry points

export function parseAddrs(texts: readonly string[]): CIDR[] {
  return texts.map((t) => {
    const c = parseCIDR(t);
    if (!c) throw new CniError(Code.Internal, `invalid container address ${JSON.stringify(t)}`);
    return c;
  });
}

export function setupMasquerade(backend: NetfilterBackend, addrs: readonly CIDR[], a: Attachment) {
  if (addrs.length === 0) return;
  if (backend === "nftables") {
    const stale = nftMasqRules().filter((r) => r.comment?.startsWith(nftInstanceHash(a)));
    nftApply(
      nftSetupScript(
        addrs,
        a,
        stale.map((r) => r.handle),
      ),
    );
    return;
  }
  const chain = masqChainName(a.network, a.containerId);
  const comment = masqComment(a.network, a.containerId);
  for (const family of [4, 6] as const) {
    const mine = addrs.filter((c) => familyOf(c) === family);
    if (mine.length === 0) continue;
    const rules = mine.flatMap((c) => iptablesMasqRules(c, chain, comment));
    iptablesTransact(family, "nat", (dump) => iptablesSetupScript(rules, chain, dump));
  }
}

/**
 * Removes an attachment's masquerade from both backends (the rules may come from another
 * configuration or implementation). `addrs` are the container's addresses when known; without
 * them every jump to the container's chain goes, which is right once its namespace is gone.
 */
export function teardownMasquerade(a: Attachment, addrs: readonly CIDR[]): string[] {
  const errors: string[] = [];
  const chain = masqChainName(a.network, a.containerId);
  const families: Family[] = addrs.length > 0 ? [...new Set(addrs.map(familyOf))] : [4, 6];
  const sources = addrs.length > 0 ? sourceForms(addrs) : undefined;
  for (const family of families) {
    attempt(errors, "iptables-restore", () =>
      iptablesTransact(family, "nat", (dump) => script(iptablesTeardownLines(dump, chain, sources))),
    );
  }
  attempt(errors, "nft", () => {
    const mine = nftMasqRules().filter((r) => r.comment?.startsWith(nftInstanceHash(a)));
    if (mine.length > 0) nftApply(nftDeleteScript(mine.map((r) => r.handle)));
  });
  return errors;
}

/** Removes the masquerade of every attachment of `network` that is not in `valid` (GC). */
export function gcMasquerade(network: string, valid: readonly { containerId: string; ifname: string }[]): string[] {
  const errors: string[] = [];
  const validIds = new Set(valid.map((v) => v.containerId));
  for (const family of [4, 6] as const) {
    attempt(errors, "iptables-restore", () =>
      iptablesTransact(family, "nat", (dump) =>
        script(staleChains(dump, network, validIds).flatMap((chain) => iptablesTeardownLines(dump, chain))),
      ),
    );
  }
  attempt(errors, "nft", () => {
    const keep = new Set(valid.map((v) => nftComment({ network, containerId: v.containerId, ifname: v.ifname })));
    const prefix = `${nftNetworkHash(network)}-`;
    const stale = nftMasqRules().filter((r) => r.comment?.startsWith(prefix) && !keep.has(r.comment));
    if (stale.length > 0) nftApply(nftDeleteScript(stale.map((r) => r.handle)));
  });
  return errors;
}

/** Masquerade chains of `network` (recognised by name and comment) whose container is not valid. */
export function staleChains(dump: string, network: string, validIds: ReadonlySet<string>): string[] {
  const stale: string[] = [];
  for (const chain of savedChains(dump)) {
    if (!/^CNI-[0-9a-f]{24}$/.test(chain)) continue;
    for (const line of savedRules(dump, chain)) {
      const m = /--comment "name: \\"([^"\\]*)\\" id: \\"([^"\\]*)\\""/.exec(line);
      if (!m) continue;
      if (m[1] === network && masqChainName(network, m[2]!) === chain && !validIds.has(m[2]!)) stale.push(chain);
      break;
    }
  }
  return stale;
}

function attempt(errors: string[], what: string, f: () => void) {
  try {
    f();
  } catch (e) {
    // A backend this host does not have cannot hold rules: its absence is not a failure.
    const msg = (e as Error).message;
    if (/failed to run .*ENOENT/.test(msg)) return;
    errors.push(`${what}: ${msg}`);
  }
}
