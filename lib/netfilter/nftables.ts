import { KernelError } from "../kernel/errors.ts";
import { run, type RunResult } from "../kernel/exec.ts";

/** nftables access: a change is one `nft -f -` script, applied as a single transaction. */

// biome-ignore lint/suspicious/noExplicitAny: nft's JSON schema is open-ended; callers pick the fields they know
export type NftObject = Record<string, any>;

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
