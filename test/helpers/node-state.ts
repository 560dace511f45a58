import { existsSync, readdirSync } from "node:fs";
import { join, relative } from "node:path";
import type { Sandbox } from "./sandbox.ts";

/**
 * The one reading of what a plugin run can leave in a node (links, netfilter, files), normalised so
 * that two readings of an unchanged node compare equal: what the kernel counts or numbers by itself
 * (packet and byte counters, nft handles, ifindexes) is left out, everything a plugin sets is kept.
 */

/** iptables-save lines without the dated comment lines, chain counters zeroed. */
export const normaliseIptables = (dump: string): string[] =>
  dump
    .split("\n")
    .filter((l) => l !== "" && !l.startsWith("#"))
    .map((l) => l.replace(/\[\d+:\d+\]/, "[0:0]"));

/** nft ruleset text without counter values and handles; a `counter` statement itself stays. */
export const normaliseNft = (ruleset: string): string =>
  ruleset.replace(/ packets \d+ bytes \d+/g, "").replace(/ ?# handle \d+/g, "");

/**
 * One family's rules in the node, all tables or one. `program` reads another backend's tables
 * (iptables-legacy-save) where a test puts the plugins on it.
 */
export function iptablesRules(
  sb: Sandbox,
  family: 4 | 6,
  opts: { table?: string; program?: string; ns?: string } = {},
): string[] {
  const program = opts.program ?? (family === 6 ? "ip6tables-save" : "iptables-save");
  const argv = opts.table ? [program, "-t", opts.table] : [program];
  return normaliseIptables(sb.inNs(opts.ns ?? sb.node, argv).stdout);
}

export const nftRuleset = (sb: Sandbox, ns = sb.node): string =>
  normaliseNft(sb.inNs(ns, ["nft", "list", "ruleset"]).stdout);

/** Both iptables families as one text (v4, "--", v6) and the nft ruleset. */
export function netfilterState(sb: Sandbox): { iptables: string; nft: string } {
  const iptables = ([4, 6] as const).map((f) => iptablesRules(sb, f).join("\n")).join("\n--\n");
  return { iptables, nft: nftRuleset(sb) };
}

/** Links as "name kind [master]", without ifindexes or addresses (they change with every pair). */
export function nodeLinks(sb: Sandbox, ns = sb.node): string[] {
  const links = JSON.parse(sb.inNs(ns, ["ip", "-d", "-j", "link", "show"]).stdout) as {
    ifname: string;
    master?: string;
    linkinfo?: { info_kind?: string };
  }[];
  return links.map((l) => [l.ifname, l.linkinfo?.info_kind ?? "-", l.master ?? ""].join(" ").trim()).sort();
}

/**
 * Every file and directory under `root` (relative, directories with a trailing "/"), except under
 * `skip`; none when `root` does not exist (/var/lib/cni on a machine that never ran a plugin).
 */
export function fileTree(root: string, skip: readonly string[] = []): string[] {
  if (!existsSync(root)) return [];
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const d of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, d.name);
      if (skip.includes(p)) continue;
      out.push(relative(root, p) + (d.isDirectory() ? "/" : ""));
      if (d.isDirectory()) walk(p);
    }
  };
  walk(root);
  return out.sort();
}

export interface NodeSnapshot {
  links: string[];
  iptables: string;
  nft: string;
}

/** The node's links and netfilter; the areas add what they own (files, reservations). */
export const nodeSnapshot = (sb: Sandbox): NodeSnapshot => ({ links: nodeLinks(sb), ...netfilterState(sb) });
