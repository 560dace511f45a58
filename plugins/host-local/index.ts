import { CniError, Code } from "../../lib/cni/errors.ts";
import type { Result } from "../../lib/cni/result.ts";
import type { PluginImpl, Request } from "../../lib/cni/skel.ts";
import { AllocationError, allocateAll, assignRequested, toIPConfig } from "./allocator.ts";
import { loadIpamConfig, type IpamConfig } from "./config.ts";
import { formatIP } from "../../lib/ip/address.ts";
import { readResolvConf } from "./resolvconf.ts";
import { DiskStore, type StoreTransaction } from "./store.ts";

/**
 * host-local IPAM: one address per range set from a store on local disk shared with the reference
 * plugin. Returns an IPAM result (no interfaces); never prints or exits, so bridge can run it
 * in-process.
 */
const hostLocal: PluginImpl<IpamConfig> = {
  parseConfig: (raw, env) => loadIpamConfig(raw, env.args),

  async add(req) {
    const c = req.config;
    const dns = c.resolvConf ? readResolvConf(c.resolvConf) : undefined;
    // A requested address no range set can take fails the same way later; refuse it before touching disk.
    const { leftover } = assignRequested(c.rangeSets, c.requested);
    if (leftover.length > 0)
      throw allocationFailure(
        new AllocationError(`failed to allocate all requested IPs: ${leftover.map(formatIP).join(" ")}`, undefined),
      );

    const store = DiskStore.open(c.dataDir, c.network, { create: true })!;
    const allocations = await store.locked((tx) => {
      try {
        return allocateAll(c.rangeSets, c.requested, req.containerId, tx.forAttachment(req.containerId, req.ifname));
      } catch (e) {
        throw e instanceof AllocationError ? allocationFailure(e) : e;
      }
    });
    const result: Result = { cniVersion: c.cniVersion, ips: allocations.map(toIPConfig), routes: c.routes };
    if (dns) result.dns = dns;
    return result;
  },

  async del(req) {
    await withExistingStore(req, (tx) => tx.releaseAttachment(req.containerId, req.ifname));
  },

  async check(req) {
    const held = await withExistingStore(req, (tx) => tx.heldBy(req.containerId, req.ifname));
    if (!held?.length)
      throw new CniError(Code.Internal, `host-local: Failed to find address added by container ${req.containerId}`);
  },

  status(req) {
    DiskStore.checkUsable(req.config.dataDir, req.config.network);
  },

  async gc(req) {
    const valid = req.config.validAttachments;
    // Without the runtime's list we cannot tell a leak from a live pod: release nothing.
    if (valid) await withExistingStore(req, (tx) => tx.collectGarbage(valid));
  },
};
export default hostLocal;

/** DEL, CHECK and GC on a network with no directory yet have nothing to do and create nothing. */
async function withExistingStore<T>(req: Request<IpamConfig>, fn: (tx: StoreTransaction) => T): Promise<T | undefined> {
  const store = DiskStore.open(req.config.dataDir, req.config.network, { create: false });
  return store ? store.locked(fn) : undefined;
}

function allocationFailure(e: AllocationError): CniError {
  return new CniError(
    Code.Internal,
    e.setIndex === undefined ? e.message : `failed to allocate for range ${e.setIndex}: ${e.message}`,
  );
}
