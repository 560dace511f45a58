import { hexDigest } from "../../hash.ts";
import type { Attachment } from "../attachment.ts";
import { CniError, Code } from "../../cni/errors.ts";
import { formatIP, formatNetwork, type CIDR } from "../../ip/address.ts";
import {
  nftApply,
  nftDeleteLines,
  nftList,
  nftRules,
  nftScript,
  nftTableAbsent,
  type NftRule,
} from "../../netfilter/nftables.ts";

/**
 * nftables masquerade, with the reference's names: table `inet cni_plugins_masquerade`, one rule
 * per address in `masq_checks` whose comment starts with a hash of (network, ifname, containerID).
 * Unlike the iptables chain, a rule belongs to one interface of the container.
 */

export const NFT_TABLE = "cni_plugins_masquerade";
const NFT_CHAIN = "masq_checks";
const NFT_COMMENT_MAX = 128;

const hash16 = (s: string) => hexDigest("sha512", s).slice(0, 16);
export const nftNetworkHash = (network: string) => hash16(network);
export const nftInstanceHash = (a: Attachment) => `${hash16(a.network)}-${hash16(`${a.ifname}:${a.containerId}`)}`;

export function nftComment(a: Attachment): string {
  const strip = (s: string) => s.replaceAll('"', "");
  const c = `${nftInstanceHash(a)}, net: ${strip(a.network)}, if: ${strip(a.ifname)}, id: ${strip(a.containerId)}`;
  return c.slice(0, NFT_COMMENT_MAX);
}

const masqRules = (): NftRule[] => nftRules(nftList(["chain", "inet", NFT_TABLE, NFT_CHAIN]));

const nftString = (s: string) => {
  if (/["\\\n]/.test(s)) throw new CniError(Code.InvalidConfig, `refusing nft string ${JSON.stringify(s)}`);
  return `"${s}"`;
};

/** One transaction: table and chains declared, postrouting rewritten, stale rules replaced by one per address. */
export function nftSetupScript(addrs: readonly CIDR[], a: Attachment, staleHandles: readonly number[]): string {
  const t = `inet ${NFT_TABLE}`;
  const comment = nftString(nftComment(a));
  const stale = staleHandles.map((handle) => ({ family: "inet", chain: NFT_CHAIN, handle }));
  return [
    `add table ${t} { comment "Masquerading for plugins from github.com/containernetworking/plugins" ; }`,
    `add chain ${t} ${NFT_CHAIN} { comment "Masquerade traffic from certain IPs to any (non-multicast) IP outside their subnet" ; }`,
    `add chain ${t} postrouting { type nat hook postrouting priority srcnat ; }`,
    `flush chain ${t} postrouting`,
    `add rule ${t} postrouting ip daddr == 224.0.0.0/4 return`,
    `add rule ${t} postrouting ip6 daddr == ff00::/8 return`,
    `add rule ${t} postrouting goto ${NFT_CHAIN}`,
    ...nftDeleteLines(NFT_TABLE, stale),
    ...addrs.map((c) => {
      const ip = c.ip.family === 4 ? "ip" : "ip6";
      return `add rule ${t} ${NFT_CHAIN} ${ip} saddr == ${formatIP(c.ip)} ${ip} daddr != ${formatNetwork(c)} masquerade comment ${comment}`;
    }),
    "",
  ].join("\n");
}

export function nftSetup(addrs: readonly CIDR[], a: Attachment) {
  const stale = masqRules().filter((r) => r.comment?.startsWith(nftInstanceHash(a)));
  nftApply(
    nftSetupScript(
      addrs,
      a,
      stale.map((r) => r.handle),
    ),
  );
}

export function nftTeardown(a: Attachment) {
  // The usual case on an iptables node: no nft masquerade table, no nft process.
  if (nftTableAbsent("inet", NFT_TABLE)) return;
  const mine = masqRules().filter((r) => r.comment?.startsWith(nftInstanceHash(a)));
  nftApply(nftScript(nftDeleteLines(NFT_TABLE, mine)));
}

export function nftGc(network: string, valid: readonly { containerId: string; ifname: string }[]) {
  const keep = new Set(valid.map((v) => nftComment({ network, containerId: v.containerId, ifname: v.ifname })));
  if (nftTableAbsent("inet", NFT_TABLE)) return;
  const prefix = `${nftNetworkHash(network)}-`;
  const stale = masqRules().filter((r) => r.comment?.startsWith(prefix) && !keep.has(r.comment));
  nftApply(nftScript(nftDeleteLines(NFT_TABLE, stale)));
}
