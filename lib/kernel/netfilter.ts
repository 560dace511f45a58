import { KernelError } from "./errors.ts";
import { mkdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { run, type RunResult } from "./exec.ts";
import { lockExclusive } from "./flock.ts";

/**
 * iptables and nftables access: every change is one transaction (iptables-restore --noflush, or
 * one `nft -f -`), never rule by rule, so a call takes the xtables lock once and a failure leaves
 * nothing half-programmed. All of it runs in the plugin's own (node) namespace.
 */
export type Family = 4 | 6;

const LOCK_WAIT_SECONDS = 10;

export type NetfilterBackend = "iptables" | "nftables";

/** The reference's default: iptables, unless only nftables is there. Decided without spawning anything. */
export function defaultBackend(): NetfilterBackend {
  return !onPath("iptables-restore") && onPath("nft") ? "nftables" : "iptables";
}

function onPath(bin: string): boolean {
  for (const dir of (process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin").split(":")) {
    try {
      if (dir && statSync(join(dir, bin)).isFile()) return true;
    } catch {
      // not here
    }
  }
  return false;
}

const LOCK_DIR = "/run/tscni";

/**
 * Runs one read-plan-apply of netfilter rules holding this suite's node-wide lock. Plans are made
 * from a dump and then applied, and iptables-nft does not fail a transaction that lost a race: it
 * replays it on the newer ruleset, skipping a `-N` whose chain now exists, so two first ADDs could
 * both add the same shared jump (seen: 1 run in 30 with four concurrent restores). Serialising our
 * own plugins' plans closes that; each holds the lock for a few milliseconds.
 */
export async function netfilterLocked<T>(fn: () => T): Promise<Awaited<T>> {
  mkdirSync(LOCK_DIR, { recursive: true, mode: 0o700 });
  const lock = await lockExclusive(`${LOCK_DIR}/netfilter.lock`, 0o600);
  try {
    return await fn();
  } finally {
    lock.release();
  }
}

/** Applies an iptables-restore script (with its own *table ... COMMIT sections) without flushing. */
export function iptablesRestore(family: Family, script: string) {
  if (script.trim() === "") return;
  const bin = family === 4 ? "iptables-restore" : "ip6tables-restore";
  const r = run([bin, "--noflush", `--wait=${LOCK_WAIT_SECONDS}`], { input: script, allowFailure: true });
  if (r.status === 0) return;
  // Only a lock someone else holds is worth retrying; "can't open lock file" is a broken node.
  if (/currently holding the xtables lock/i.test(r.stderr)) {
    throw new KernelError("busy", `${bin}: xtables lock is held by another process; try again later`, {
      details: r.stderr.trim(),
    });
  }
  throw new KernelError("failed", `${bin} failed: ${r.stderr.trim() || `exit status ${r.status}`}`, {
    details: script,
  });
}

/**
 * The current rules of one table, as iptables-save prints them ("" when the table is absent). Any
 * other failure is an error: a DEL that could not read the rules must not report them removed.
 */
export function iptablesSave(family: Family, table: string): string {
  const bin = family === 4 ? "iptables-save" : "ip6tables-save";
  const r = run([bin, "-t", table], { allowFailure: true });
  if (r.status === 0 || /does not exist/i.test(r.stderr)) return r.status === 0 ? r.stdout : "";
  throw new KernelError("failed", `${bin} -t ${table} failed: ${r.stderr.trim() || `exit status ${r.status}`}`);
}

/**
 * Reads one table, plans a script from it and applies it in one transaction. If the transaction
 * fails because the table changed between the read and the apply (another plugin's ADD), it plans
 * again from a fresh read, up to three times; a failure on an unchanged table is a real error.
 */
export function iptablesTransact(family: Family, table: string, plan: (dump: string) => string) {
  let dump = iptablesSave(family, table);
  for (let attempt = 1; ; attempt++) {
    try {
      return iptablesRestore(family, plan(dump));
    } catch (e) {
      if (!(e instanceof KernelError) || e.fault === "busy" || attempt >= 3) throw e;
      const again = iptablesSave(family, table);
      if (again === dump) throw e;
      dump = again;
    }
  }
}

/** Chains declared in an iptables-save dump of one table. */
export function savedChains(dump: string): Set<string> {
  const chains = new Set<string>();
  for (const line of dump.split("\n")) if (line.startsWith(":")) chains.add(line.slice(1).split(" ")[0]!);
  return chains;
}

/** "-A" rules of an iptables-save dump, optionally only those of one chain. */
export function savedRules(dump: string, chain?: string): string[] {
  return dump.split("\n").filter((l) => l.startsWith("-A ") && (chain === undefined || l.startsWith(`-A ${chain} `)));
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

/** Applies one nft script as a single transaction. */
export function nftApply(script: string) {
  if (script.trim() === "") return;
  run(["nft", "-f", "-"], { input: script });
}

/**
 * `nft -j list ...` parsed into its list of objects: [] when the object does not exist or nft is
 * not installed (then there are no nft rules to find); any other failure is an error.
 */
// biome-ignore lint/suspicious/noExplicitAny: nft's JSON schema is open-ended; callers pick the fields they know
export type NftObject = Record<string, any>;

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
