import { statSync } from "node:fs";
import { join } from "node:path";

/** The two ways the suite programs netfilter; portmap and the bridge's masquerade take either. */
export const NETFILTER_BACKENDS = ["iptables", "nftables"] as const;
export type NetfilterBackend = (typeof NETFILTER_BACKENDS)[number];

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
