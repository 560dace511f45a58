import { CniError, Code } from "../../lib/cni/errors.ts";
import { canonicalIp, formatIP, formatNetwork, type CIDR, type Family } from "../../lib/ip/address.ts";
import {
  nftApply,
  nftDeleteLines,
  nftList,
  nftRules,
  nftScript,
  type NftObject,
  type NftRule,
} from "../../lib/netfilter/nftables.ts";
import { hostPortTarget, mappingsForFamily, type PortMapping } from "./config.ts";

/**
 * nftables backend, with the reference's layout: tables `ip cni_hostport` and `ip6 cni_hostport`,
 * base chains prerouting/output (`fib daddr type local jump hostports_all`) and masquerading
 * (postrouting), regular chains hostports_all -> hostip_hostports, hostports. Every per-container
 * rule carries the container ID as its comment; that is how DEL finds them. One `nft -f -` per call
 * covers both families.
 */
const TABLE = "cni_hostport";
const RULE_CHAINS = ["hostports", "hostip_hostports", "masquerading"] as const;

export interface NftOptions {
  containerId: string;
  mappings: readonly PortMapping[];
  snat: boolean;
  masqAll: boolean;
  conditionsV4?: readonly string[];
  conditionsV6?: readonly string[];
}

const fam = (v6: boolean) => (v6 ? "ip6" : "ip");

/** The DNAT rule of one mapping, in the form `nft list` prints it (so CHECK can compare). */
function dnatRule(m: ReturnType<typeof mappingsForFamily>[number], addr: CIDR): string {
  const v6 = addr.ip.family === 6;
  const dst = m.matchDst ? `${fam(v6)} daddr ${m.matchDst} ` : "";
  return `${dst}${m.protocol} dport ${m.hostPort} dnat to ${hostPortTarget(formatIP(addr.ip), m.containerPort, v6)}`;
}

/**
 * Masquerade rules for hairpin and localhost traffic to the container. Hairpin covers the
 * container's whole subnet, as the iptables layout does (the reference's nftables rule matches only
 * the container's own address, so a neighbour on the bridge reaching it through a host port gets
 * replies straight from the container unless br_netfilter undoes the DNAT). `ct status dnat` keeps
 * it to port-mapped connections, so direct traffic between containers keeps its source address.
 */
function masqRules(o: NftOptions, addr: CIDR): string[] {
  const v6 = addr.ip.family === 6;
  const f = fam(v6);
  const ip = formatIP(addr.ip);
  if (o.masqAll) return [`${f} saddr ${v6 ? "::/0" : "0.0.0.0/0"} ${f} daddr ${ip} masquerade`];
  return [
    `${f} saddr ${formatNetwork(addr)} ${f} daddr ${ip} ct status dnat masquerade`,
    ...(v6 ? [] : [`ip saddr 127.0.0.1 ip daddr ${ip} masquerade`]),
  ];
}

/** The whole ADD transaction for the container's addresses (one per family). */
export function nftAddScript(o: NftOptions, addrs: readonly CIDR[]): string {
  const out: string[] = [];
  for (const addr of addrs) {
    const v6 = addr.ip.family === 6;
    const t = `${fam(v6)} ${TABLE}`;
    const conditions = ((v6 ? o.conditionsV6 : o.conditionsV4) ?? []).join(" ");
    const entry = `${conditions ? `${conditions} ` : ""}fib daddr type local jump hostports_all`;
    const comment = ` comment ${JSON.stringify(o.containerId)}`;
    out.push(
      `add table ${t} { comment "CNI portmap plugin" ; }`,
      `add chain ${t} hostports`,
      `add chain ${t} hostip_hostports`,
      `add chain ${t} hostports_all`,
      `flush chain ${t} hostports_all`,
      `add rule ${t} hostports_all jump hostip_hostports`,
      `add rule ${t} hostports_all jump hostports`,
      // The shared entry rules are rewritten on every ADD, so the last ADD's conditions apply.
      `add chain ${t} prerouting { type nat hook prerouting priority -100 ; }`,
      `flush chain ${t} prerouting`,
      `add rule ${t} prerouting ${entry}`,
      `add chain ${t} output { type nat hook output priority -100 ; }`,
      `flush chain ${t} output`,
      `add rule ${t} output ${entry}`,
    );
    if (o.snat) out.push(`add chain ${t} masquerading { type nat hook postrouting priority 100 ; }`);
    // Inserted at the top (in reverse, to keep mapping order), so the most recent container to
    // claim a host port receives it.
    const dnat = mappingsForFamily(o.mappings, v6).map((m) => dnatRule(m, addr));
    for (const r of dnat.reverse()) out.push(`insert rule ${t} hostports ${r}${comment}`);
    if (o.snat) for (const r of masqRules(o, addr)) out.push(`add rule ${t} masquerading ${r}${comment}`);
  }
  return out.length > 0 ? `${out.join("\n")}\n` : "";
}

// ---- reading `nft -j list table` ----

/** DEL: one delete per rule carrying the container ID in the chains the plugin writes to. */
export function nftDeleteScript(rules: readonly NftRule[], containerId: string): string {
  const mine = rules.filter((r) => r.comment === containerId && (RULE_CHAINS as readonly string[]).includes(r.chain));
  return nftScript(nftDeleteLines(TABLE, mine));
}

/**
 * What a DNAT rule does, decoded from nft's JSON: `[ip daddr X] <proto> dport N dnat to A:P`, also
 * in the older `ip protocol tcp th dport N` spelling. Undefined for anything else.
 */
export function decodeDnat(expr: readonly NftObject[]): string | undefined {
  let proto: string | undefined;
  let dport: number | undefined;
  let daddr: string | undefined;
  let to: { addr: string; port: number } | undefined;
  for (const e of expr) {
    const m = e?.match;
    const p = m?.left?.payload;
    if (m && m.op === "==" && p) {
      if (p.field === "dport") {
        dport = Number(m.right);
        if (p.protocol !== "th") proto = p.protocol;
      } else if (p.field === "daddr") daddr = canonicalIp(String(m.right));
      else if (p.field === "protocol" || p.field === "nexthdr") proto = String(m.right);
    } else if (m && m.op === "==" && m.left?.meta?.key === "l4proto") proto = String(m.right);
    else if (e?.dnat) {
      const d = e.dnat;
      if (typeof d.addr === "string") to = { addr: d.addr, port: Number(d.port) };
      else if (Array.isArray(d.addr?.concat)) to = { addr: String(d.addr.concat[0]), port: Number(d.addr.concat[1]) };
    }
  }
  if (!proto || dport === undefined || !to) return undefined;
  return `${daddr ?? "*"} ${proto} ${dport} -> ${canonicalIp(to.addr) ?? to.addr} ${to.port}`;
}

/** CHECK for one family: every mapping's DNAT rule and the masquerade rules exist. */
export function verifyNft(rules: readonly NftRule[], o: NftOptions, addr: CIDR): string | undefined {
  const v6 = addr.ip.family === 6;
  const mine = rules.filter((r) => r.comment === o.containerId);
  const have = mine
    .filter((r) => r.chain === "hostports" || r.chain === "hostip_hostports")
    .map((r) => decodeDnat(r.expr));
  const ip = formatIP(addr.ip);
  for (const m of mappingsForFamily(o.mappings, v6)) {
    const want = `${m.matchDst ?? "*"} ${m.protocol} ${m.hostPort} -> ${ip} ${m.containerPort}`;
    if (!have.includes(want))
      return `missing hostport rule for ${m.protocol}/${m.hostPort} in table ${fam(v6)} ${TABLE}`;
  }
  if (o.snat && mine.filter((r) => r.chain === "masquerading").length < masqRules(o, addr).length) {
    return `missing hostport rules in "masquerading" chain of table ${fam(v6)} ${TABLE}`;
  }
  return undefined;
}

// ---- applying ----

/** The rules of one family's table; none when the table, or nft itself, is missing (nftList). */
function listTable(family: Family): NftRule[] {
  return nftRules(nftList(["table", family === 4 ? "ip" : "ip6", TABLE]));
}

export function nftAdd(o: NftOptions, addrs: readonly CIDR[]) {
  try {
    nftApply(nftAddScript(o, addrs));
  } catch (e) {
    throw new CniError(
      Code.Internal,
      `unable to set up nftables rules for port mappings: ${(e as Error).message}`,
      (e as CniError).details ?? "",
    );
  }
}

/** Deletes the container's rules from both tables; absent tables or rules are not an error. */
export function nftDel(containerId: string) {
  const plan = () => nftDeleteScript([...listTable(4), ...listTable(6)], containerId);
  const script = plan();
  try {
    nftApply(script);
  } catch {
    // A concurrent DEL may have removed a handle in between: plan again from a fresh listing.
    nftApply(plan());
  }
}

export function nftCheck(o: NftOptions, addrs: readonly CIDR[]) {
  for (const addr of addrs) {
    const problem = verifyNft(listTable(addr.ip.family === 6 ? 6 : 4), o, addr);
    if (problem) throw new CniError(Code.Internal, problem);
  }
}
