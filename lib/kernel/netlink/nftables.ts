import type { Libc } from "../libc.ts";
import { MessageWriter, NLM_F_REQUEST } from "./codec.ts";
import { NETLINK_NETFILTER, RtnlSocket } from "./socket.ts";

const NFNL_SUBSYS_NFTABLES = 10;
const NFT_MSG_GETTABLE = 1;
const NFT_MSG_GETCHAIN = 4;
const NFTA_TABLE_NAME = 1;
const NFTA_CHAIN_TABLE = 1;
const NFTA_CHAIN_NAME = 3;
const ENOENT = 2;
const NFPROTO = { inet: 1, ip: 2, ip6: 10 } as const;

type NftFamily = keyof typeof NFPROTO;

/**
 * Whether nftables holds table `name` of `family` in this network namespace, asked with one
 * NFT_MSG_GETTABLE on a NETLINK_NETFILTER socket: the answer to "is there anything to remove?"
 * without starting `nft`, which a DEL on an iptables node would otherwise run only to find nothing.
 */
export function nftTableExists(libc: Libc, family: NftFamily, name: string): boolean {
  return exists(libc, family, NFT_MSG_GETTABLE, (m) => m.str(NFTA_TABLE_NAME, name), `table ${family} ${name}`);
}

/** Whether chain `chain` of table `table` exists (iptables-nft keeps its chains as nftables chains). */
export function nftChainExists(libc: Libc, family: NftFamily, table: string, chain: string): boolean {
  return exists(
    libc,
    family,
    NFT_MSG_GETCHAIN,
    (m) => m.str(NFTA_CHAIN_TABLE, table).str(NFTA_CHAIN_NAME, chain),
    `chain ${family} ${table} ${chain}`,
  );
}

function exists(
  libc: Libc,
  family: NftFamily,
  type: number,
  attrs: (m: MessageWriter) => MessageWriter,
  what: string,
): boolean {
  const sock = RtnlSocket.open(libc, NETLINK_NETFILTER);
  try {
    const seq = sock.nextSeq();
    // struct nfgenmsg: family, version (NFNETLINK_V0), resource id (big endian, 0).
    const header = Uint8Array.of(NFPROTO[family], 0, 0, 0);
    const msg = attrs(new MessageWriter((NFNL_SUBSYS_NFTABLES << 8) | type, NLM_F_REQUEST).raw(header)).finish(seq);
    const reply = sock.request(msg, seq);
    if (!reply.error) return reply.messages.length > 0;
    if (reply.error.errno === ENOENT) return false;
    throw new Error(`nftables: cannot look up ${what}: errno ${reply.error.errno}`);
  } finally {
    sock.close();
  }
}
