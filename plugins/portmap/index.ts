import { CniError, Code } from "../../lib/cni/errors.ts";
import type { Result } from "../../lib/cni/result.ts";
import { parseResult } from "../../lib/cni/result-schema.ts";
import { logLine, type PluginImpl, type Request } from "../../lib/cni/skel.ts";
import type { CIDR, Family } from "../../lib/ip/address.ts";
import {
  containerAddresses,
  mappingsOf,
  parsePortmapConfig,
  selectBackend,
  validAttachments,
  type PortmapConfig,
} from "./config.ts";
import { defaultBackend } from "../../lib/netfilter/backend.ts";
import { netfilterLocked } from "../../lib/netfilter/lock.ts";
import { nodeLinkNames } from "../../lib/kernel/procfs.ts";
import { announceDelete, attachmentStep, readDeleteNotice, type DeleteNotice } from "../../lib/net/delete-notice.ts";
import { attachmentOf, type Attachment } from "../../lib/net/attachment.ts";
import { sleepMs } from "../../lib/sleep.ts";

/**
 * portmap: a chained plugin that forwards host ports to the container addresses of prevResult
 * (DNAT for traffic from outside, from the node and from other containers), masquerading hairpin
 * and localhost traffic so replies come back. A call without port mappings does nothing at all;
 * otherwise each family is programmed in one netfilter transaction.
 */
const portmap: PluginImpl<PortmapConfig> = {
  parseConfig: (raw) => parsePortmapConfig(raw),

  async add(req) {
    const prev = previousResult(req, "portmap must be called as a chained plugin");
    if (mappingsOf(req.config).length === 0) return prev;
    const addrs = containerAddresses(prev, req.ifname);
    const families = [addrs.v4, addrs.v6].filter((a): a is CIDR => a !== undefined);
    if (families.length === 0) return prev;
    const backend = await loadBackend(req.config);
    try {
      await forwardUnlessDeleted(req, prev, backend, families);
      // After the rules, so new flows take them; the reference only logs failures here.
      const udpPorts = mappingsOf(req.config)
        .filter((m) => m.protocol === "udp")
        .map((m) => m.hostPort);
      if (udpPorts.length > 0) {
        const { deleteUdpConntrack } = await import("../../lib/netfilter/conntrack.ts");
        const problem = deleteUdpConntrack(
          udpPorts,
          families.map((a) => a.ip.family),
        );
        if (problem) logLine(req.config.logFile, `portmap: failed to delete stale UDP conntrack entries: ${problem}`);
      }
      if (req.config.snat !== false && addrs.v4) {
        // Lets DNATed 127.0.0.1 traffic leave through the interface toward the container.
        const { ipv4RouteDevice, enableRouteLocalnet } = await import("../../lib/kernel/route-localnet.ts");
        const dev = ipv4RouteDevice(Number(addrs.v4.ip.n));
        if (dev) enableRouteLocalnet(dev);
      }
    } catch (e) {
      try {
        await attachmentStep(attachmentOf(req), () => backend.unforward(req));
      } catch {
        // The original failure is the one to report.
      }
      throw e;
    }
    return prev;
  },

  async del(req) {
    if (mappingsOf(req.config).length === 0) return;
    const backend = await loadBackend(req.config);
    const knewResult = knownResult(req) !== undefined;
    // Announced in the same locked step that removes the rules: a racing ADD either programmed
    // its rules before (and they go now) or reads the notice before it programs any. Only the
    // container's own rules go, so DELs of other pods run beside it.
    const key = attachmentOf(req);
    await attachmentStep(
      key,
      () => {
        announceDelete(key, knewResult);
        backend.unforward(req, programmedFamilies(req));
      },
      true,
    );
  },

  async check(req) {
    const prev = previousResult(req, "Required prevResult missing");
    if (mappingsOf(req.config).length === 0) return;
    const addrs = containerAddresses(prev, req.ifname);
    const families = [addrs.v4, addrs.v6].filter((a): a is CIDR => a !== undefined);
    if (families.length > 0) (await loadBackend(req.config)).check(req, families);
  },

  async gc(req) {
    const backend = await loadBackend(req.config);
    await netfilterLocked(() => backend.gc(req, validAttachments(req.config)));
  },
};
export default portmap;

/**
 * Programs the rules unless a DEL of this container is under way (see lib/net/delete-notice.ts):
 * then it waits for that DEL to end and goes on only if the attachment survived it. After the
 * rules it makes sure the attachment still exists, so a DEL that finished meanwhile cannot leave
 * them behind.
 */
async function forwardUnlessDeleted(
  req: Request<PortmapConfig>,
  prev: Result,
  backend: PortmapBackend,
  families: CIDR[],
) {
  const key = attachmentOf(req);
  let waitedOn: string | undefined;
  for (;;) {
    const pending = await attachmentStep(key, async () => {
      const notice = readDeleteNotice(key);
      if (notice && notice.nonce !== waitedOn && racing(notice)) return notice;
      await forwardCreatingShared(req, backend, families);
      if (!hostSidePresent(prev)) throw deletedMeanwhile(req);
      return undefined;
    });
    if (!pending) return;
    await awaitDeleteEnd(req, key, pending, prev);
    waitedOn = pending.nonce;
  }
}

/**
 * A container's own rules need no lock beyond the attachment's; the first ADD on a node, which
 * creates the shared chains and jumps, takes the node-wide one (see lib/netfilter/lock.ts), as
 * then two ADDs must not both add the same jump.
 */
async function forwardCreatingShared(req: Request<PortmapConfig>, backend: PortmapBackend, families: CIDR[]) {
  if (backend.forward(req, families, false)) return;
  await netfilterLocked(() => backend.forward(req, families, true));
}

/**
 * Only a DEL that knew no result is one racing an ADD that had not finished (libcni caches a
 * result once the whole ADD succeeded). A DEL that knew one was of a finished attachment: an ADD
 * now is a new one, even when it looks the same (host-device moves the same device back in).
 */
const racing = (n: DeleteNotice) => !n.knewResult;

const WAIT_MS = 2000;
const POLL_MS = 20;

/**
 * Waits while the DEL of `notice` is under way. Returns when it is over (our bridge's DEL took the
 * notice away, or a newer DEL replaced it) with this attachment still there; throws when the
 * attachment went. A DEL whose last plugin leaves the notice (the reference bridge) shows no end:
 * WAIT_MS after it began, it is taken to have ended before this attachment existed.
 */
async function awaitDeleteEnd(req: Request<PortmapConfig>, key: Attachment, notice: DeleteNotice, prev: Result) {
  for (;;) {
    if (!hostSidePresent(prev)) throw deletedMeanwhile(req);
    if (readDeleteNotice(key)?.nonce !== notice.nonce || Date.now() >= notice.at + WAIT_MS) return;
    await sleepMs(POLL_MS);
  }
}

const deletedMeanwhile = (req: Request<PortmapConfig>) =>
  new CniError(
    Code.TryAgainLater,
    `container ${req.containerId} is being deleted: its attachment to network ${req.config.name} went while portmap was adding it`,
  );

/** The result a DEL knows (libcni's cached ADD result), if it can be read. */
function knownResult(req: Request<PortmapConfig>): Result | undefined {
  if (req.config.prevResult == null) return undefined;
  try {
    return parseResult(req.config.prevResult, req.version);
  } catch {
    return undefined;
  }
}

function previousResult(req: Request<PortmapConfig>, missing: string): Result {
  if (req.config.prevResult == null) throw new CniError(Code.InvalidConfig, `prevResult: missing; ${missing}`);
  return parseResult(req.config.prevResult, req.version);
}

interface PortmapBackend {
  /** Programs the rules; false when shared chains or jumps are missing and `createShared` is not set. */
  forward(req: Request<PortmapConfig>, addrs: CIDR[], createShared: boolean): boolean;
  unforward(req: Request<PortmapConfig>, families?: Family[]): void;
  check(req: Request<PortmapConfig>, addrs: CIDR[]): void;
  gc(req: Request<PortmapConfig>, valid: Set<string>): void;
}

/**
 * The address families ADD programmed, when DEL's prevResult tells (ADD only programs the families
 * of the container's addresses): a v4-only pod then costs no ip6tables run. Without a usable
 * prevResult, both.
 */
function programmedFamilies(req: Request<PortmapConfig>): Family[] | undefined {
  const prev = knownResult(req);
  if (!prev) return undefined;
  try {
    const addrs = containerAddresses(prev, req.ifname);
    const families = [addrs.v4, addrs.v6].filter((a): a is CIDR => a !== undefined).map((a) => a.ip.family);
    return families.length > 0 ? families : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether the node-side interfaces of the attachment (prevResult's interfaces outside the
 * container, such as the bridge and the host veth) all still exist. With none listed it cannot
 * tell, and says yes.
 */
function hostSidePresent(prev: Result): boolean {
  const names = (prev.interfaces ?? []).filter((i) => !i.sandbox).map((i) => i.name);
  if (names.length === 0) return true;
  const links = nodeLinkNames();
  return links === undefined || names.every((n) => links.has(n));
}

/** Loads only the backend this call uses, after the no-op paths have returned. */
async function loadBackend(c: PortmapConfig): Promise<PortmapBackend> {
  const common = {
    mappings: mappingsOf(c),
    snat: c.snat !== false,
    masqAll: c.masqAll === true,
    conditionsV4: c.conditionsV4 ?? undefined,
    conditionsV6: c.conditionsV6 ?? undefined,
  };
  if (selectBackend(c, defaultBackend) === "iptables") {
    const ipt = await import("./iptables.ts");
    const opts = (req: Request<PortmapConfig>) => ({
      ...common,
      network: c.name,
      containerId: req.containerId,
      markMasqBit: c.markMasqBit ?? 13,
      externalSetMarkChain: c.externalSetMarkChain ?? undefined,
    });
    return {
      forward: (req, addrs, createShared) =>
        ipt.iptablesAdd(
          addrs.map((a) => ipt.iptablesSpec(opts(req), a)),
          createShared,
        ),
      unforward: (req, families) => ipt.iptablesDel(c.name, req.containerId, families),
      check: (req, addrs) => ipt.iptablesCheck(addrs.map((a) => ipt.iptablesSpec(opts(req), a))),
      gc: (_req, valid) => ipt.iptablesGc(c.name, valid),
    };
  }
  const nft = await import("./nftables.ts");
  return {
    // One nft transaction flushes and rewrites the shared chains' entry rules: it needs no lock.
    forward: (req, addrs) => {
      nft.nftAdd({ ...common, containerId: req.containerId }, addrs);
      return true;
    },
    unforward: (req) => nft.nftDel(req.containerId),
    check: (req, addrs) => nft.nftCheck({ ...common, containerId: req.containerId }, addrs),
    // nftables rules carry only the container ID, not the network, so GC cannot tell this
    // network's stale rules from another network's live ones: it leaves them to DEL.
    gc: () => {},
  };
}
