import { realpathSync } from "node:fs";
import { basename, join } from "node:path";
import type { Family } from "../ip/address.ts";
import { KernelError } from "../kernel/errors.ts";
import { run } from "../kernel/exec.ts";
import { libcIfLoaded } from "../kernel/libc.ts";
import { nftChainExists } from "../kernel/netlink/nftables.ts";

/**
 * iptables access: every change is one transaction (iptables-restore --noflush), never rule by
 * rule, so a call takes the xtables lock once and a failure leaves nothing half-programmed. All of
 * it runs in the plugin's own (node) namespace.
 */
const LOCK_WAIT_SECONDS = 10;

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
 * `known` is a dump the caller can vouch for as far as its plan looks (see iptablesChainAbsent):
 * the first plan starts from it without running iptables-save.
 */
export function iptablesTransact(family: Family, table: string, plan: (dump: string) => string, known?: string) {
  let dump = known ?? iptablesSave(family, table);
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

/**
 * True only when `chain` of `table` is known not to exist, so that nothing in the table refers to
 * it either: asked over NETLINK_NETFILTER, which sees iptables' chains when iptables-restore on
 * PATH is the nf_tables variant. Legacy iptables, or no libc, means unsure: false.
 */
export function iptablesChainAbsent(family: Family, table: string, chain: string): boolean {
  const libc = libcIfLoaded();
  if (!libc || !restoreIsNft(family)) return false;
  try {
    return !nftChainExists(libc, family === 4 ? "ip" : "ip6", table, chain);
  } catch {
    return false;
  }
}

const nftVariant = new Map<Family, boolean>();

/** Whether the iptables-restore found on PATH resolves to xtables-nft-multi: read from its links, no process. */
function restoreIsNft(family: Family): boolean {
  let known = nftVariant.get(family);
  if (known === undefined) {
    const bin = family === 4 ? "iptables-restore" : "ip6tables-restore";
    known = false;
    for (const dir of (process.env.PATH ?? "").split(":").filter(Boolean)) {
      try {
        known = basename(realpathSync(join(dir, bin))) === "xtables-nft-multi";
        break;
      } catch {
        // not in this directory
      }
    }
    nftVariant.set(family, known);
  }
  return known;
}
