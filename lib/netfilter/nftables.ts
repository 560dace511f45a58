import { KernelError } from "../kernel/errors.ts";
import { run, type RunResult } from "../kernel/exec.ts";
import { libcIfLoaded } from "../kernel/libc.ts";
import { nftTableExists } from "../kernel/netlink/nftables.ts";

/**
 * nftables access: a change is one `nft -f -` script, applied as a single transaction; rules are
 * found again by listing the table as JSON and deleted by handle.
 */

// biome-ignore lint/suspicious/noExplicitAny: nft's JSON schema is open-ended; callers pick the fields they know
export type NftObject = Record<string, any>;

/** A rule as `nft -j list` reports it (its table is the one listed). */
export interface NftRule {
  family: string;
  chain: string;
  handle: number;
  comment?: string;
  expr: NftObject[];
}

/**
 * True only when the table is known to be absent (asked over netlink, where libc is loaded): then
 * there is nothing to list or remove and no `nft` process is needed. Unsure means false.
 */
export function nftTableAbsent(family: "inet" | "ip" | "ip6", table: string): boolean {
  const libc = libcIfLoaded();
  if (!libc) return false;
  try {
    return !nftTableExists(libc, family, table);
  } catch {
    return false;
  }
}

/** Applies one nft script as a single transaction. */
export function nftApply(script: string) {
  if (script.trim() === "") return;
  run(["nft", "-f", "-"], { input: script });
}

/**
 * `nft -j list ...` parsed into its list of objects: [] when the object does not exist or nft is
 * not installed (then there are no nft rules to find); any other failure is an error.
 */
export function nftList(args: readonly string[]): NftObject[] {
  let r: RunResult;
  try {
    r = run(["nft", "-j", "list", ...args], { allowFailure: true });
  } catch (e) {
    if (/ENOENT/.test((e as Error).message)) return [];
    throw e;
  }
  if (r.status !== 0) {
    if (/No such file or directory|does not exist/i.test(r.stderr)) return [];
    throw new KernelError(
      "failed",
      `nft list ${args.join(" ")} failed: ${r.stderr.trim() || `exit status ${r.status}`}`,
    );
  }
  return (JSON.parse(r.stdout) as { nftables: NftObject[] }).nftables;
}

/** The rules among listed objects. */
export function nftRules(listing: readonly NftObject[]): NftRule[] {
  return listing.filter((o) => o.rule).map((o) => o.rule as NftRule);
}

/** One `delete rule` line per rule of `table`, by handle (the handle alone names a rule in its chain). */
export function nftDeleteLines(
  table: string,
  rules: readonly Pick<NftRule, "family" | "chain" | "handle">[],
): string[] {
  return rules.map((r) => `delete rule ${r.family} ${table} ${r.chain} handle ${r.handle}`);
}

/** Lines as one `nft -f` script ("" for none). */
export const nftScript = (lines: readonly string[]) => (lines.length === 0 ? "" : `${lines.join("\n")}\n`);
