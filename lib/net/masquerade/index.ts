import { CniError, Code } from "../../cni/errors.ts";
import { parseCIDR, type CIDR, type Family } from "../../ip/address.ts";
import type { NetfilterBackend } from "../../netfilter/backend.ts";
import { iptablesGc, iptablesSetup, iptablesTeardown } from "./iptables.ts";
import type { Attachment } from "../attachment.ts";
import { nftGc, nftSetup, nftTeardown } from "./nftables.ts";

/**
 * Masquerade for container addresses, in either backend. Rule sets are built as data, compared
 * with what the kernel holds, and applied in one transaction per family. Teardown and GC look in
 * both backends: the rules may come from another configuration or implementation.
 */

export function parseAddrs(texts: readonly string[]): CIDR[] {
  return texts.map((t) => {
    const c = parseCIDR(t);
    if (!c) throw new CniError(Code.Internal, `invalid container address ${JSON.stringify(t)}`);
    return c;
  });
}

export function setupMasquerade(backend: NetfilterBackend, addrs: readonly CIDR[], a: Attachment) {
  if (addrs.length === 0) return;
  if (backend === "nftables") nftSetup(addrs, a);
  else iptablesSetup(addrs, a.network, a.containerId);
}

/**
 * Removes an attachment's masquerade from both backends. `addrs` are the container's addresses
 * when known; without them every jump to the container's chain goes, which is right once its
 * namespace is gone.
 */
export function teardownMasquerade(a: Attachment, addrs: readonly CIDR[]): string[] {
  const errors: string[] = [];
  const families: Family[] = addrs.length > 0 ? [...new Set(addrs.map((c) => c.ip.family))] : [4, 6];
  for (const family of families) {
    attempt(errors, "iptables-restore", () => iptablesTeardown(family, a.network, a.containerId, addrs));
  }
  attempt(errors, "nft", () => nftTeardown(a));
  return errors;
}

/** Removes the masquerade of every attachment of `network` that is not in `valid` (GC). */
export function gcMasquerade(network: string, valid: readonly { containerId: string; ifname: string }[]): string[] {
  const errors: string[] = [];
  const validIds = new Set(valid.map((v) => v.containerId));
  for (const family of [4, 6] as const) {
    attempt(errors, "iptables-restore", () => iptablesGc(family, network, validIds));
  }
  attempt(errors, "nft", () => nftGc(network, valid));
  return errors;
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
