import { CniError, Code } from "../../lib/cni/errors.ts";
import { nftApply, nftDeleteLines, nftList, nftRules, nftScript } from "../../lib/netfilter/nftables.ts";

/**
 * MAC spoof check (`macspoofchk`), laid out as the reference does so either side can remove the
 * other's: table `bridge nat`, base chain PREROUTING (filter, priority -300), and per attachment
 * `cni-br-iface-<id>` and `cni-br-iface-<id>-mac` where frames from the host veth pass only with
 * the container's source MAC. Every rule carries the comment `macspoofchk-<id>`.
 */
const FAMILY = "bridge";
const TABLE_NAME = "nat";
const TABLE = `${FAMILY} ${TABLE_NAME}`;
const BASE = "PREROUTING";

export const spoofRefId = (containerId: string, ifname: string) => `${containerId}-${ifname}`;
const ifaceChain = (refId: string) => `cni-br-iface-${refId}`;
const macChain = (refId: string) => `${ifaceChain(refId)}-mac`;
const comment = (refId: string) => `macspoofchk-${refId}`;

const q = (s: string) => {
  if (/["\\\n]/.test(s)) throw new CniError(Code.InvalidConfig, `refusing nft string ${JSON.stringify(s)}`);
  return `"${s}"`;
};
// nft 1.0.x takes chain names only as bare identifiers.
const ident = (s: string) => {
  if (!/^[A-Za-z_.][A-Za-z0-9/_.-]*$/.test(s))
    throw new CniError(Code.InvalidConfig, `cannot name an nft chain ${JSON.stringify(s)}`);
  return s;
};

/** One transaction (the reference needs two): declare, flush this attachment's chains, add its rules. */
export function spoofCheckScript(hostIface: string, mac: string, refId: string): string {
  const c = `comment ${q(comment(refId))}`;
  const iface = ident(ifaceChain(refId));
  const macc = ident(macChain(refId));
  return [
    `add table ${TABLE}`,
    `add chain ${TABLE} ${BASE} { type filter hook prerouting priority -300 ; policy accept ; }`,
    `add chain ${TABLE} ${iface}`,
    `add chain ${TABLE} ${macc}`,
    `flush chain ${TABLE} ${iface}`,
    `flush chain ${TABLE} ${macc}`,
    `add rule ${TABLE} ${BASE} iifname ${q(hostIface)} jump ${iface} ${c}`,
    `add rule ${TABLE} ${iface} jump ${macc} ${c}`,
    `add rule ${TABLE} ${macc} ether saddr ${mac} return ${c}`,
    `add rule ${TABLE} ${macc} drop ${c}`,
    "",
  ].join("\n");
}

export function setupSpoofCheck(hostIface: string, mac: string, refId: string) {
  nftApply(spoofCheckScript(hostIface, mac, refId));
}

/** Removes the base-chain jump(s) and both per-attachment chains; the table and base chain stay. */
export function teardownSpoofCheck(refId: string) {
  const objects = nftList(["table", FAMILY, TABLE_NAME]);
  const chains = new Set(
    objects.map((o) => (o.chain as { name?: string } | undefined)?.name).filter((n) => n !== undefined),
  );
  const jumps = nftRules(objects).filter((r) => r.chain === BASE && r.comment === comment(refId));
  const lines = nftDeleteLines(TABLE_NAME, jumps);
  for (const chain of [ifaceChain(refId), macChain(refId)]) {
    if (chains.has(chain)) lines.push(`flush chain ${TABLE} ${ident(chain)}`, `delete chain ${TABLE} ${ident(chain)}`);
  }
  nftApply(nftScript(lines));
}
