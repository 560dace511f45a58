import { CniError, Code } from "../../lib/cni/errors.ts";
import type { Result } from "../../lib/cni/result.ts";
import type { Request } from "../../lib/cni/skel.ts";
import { hasIpam } from "../../lib/net/interface-plugin.ts";
import { type Addresses, addSublink, checkSublink, masterFor, sublinkPlugin } from "../../lib/net/sublink.ts";
import { prevResultOf } from "../../lib/net/check.ts";
import { parseConfig, type Config } from "./config.ts";

/**
 * ipvlan: an ipvlan link of `master` as CNI_IFNAME in the container. It shares the master's MAC
 * (one MAC on the segment however many containers), so the switch sees the node only. The mode is
 * a property of the master's ipvlan port in the kernel: every ipvlan of one master has the same.
 */

/**
 * Chained (a prevResult) without a master: the one interface prevResult names, as the reference;
 * without prevResult the default-route interface (masterFor).
 */
function masterName(req: Request<Config>): string {
  const c = req.config;
  if (c.master !== "" || c.prevResult === undefined) return c.master;
  const prev = prevResultOf(req);
  const only = prev.interfaces?.length === 1 ? prev.interfaces[0]!.name : "";
  if (!only) throw new CniError(Code.Internal, "chained master failure. PrevResult lacks a single named interface");
  return only;
}

/** IPAM's addresses when configured; chained without IPAM, prevResult's. */
function addressesOf(req: Request<Config>): Addresses {
  if (hasIpam(req.config)) return { from: "ipam" };
  const prev = req.config.prevResult === undefined ? undefined : prevResultOf(req);
  if (prev?.ips?.length) return { from: "prev", ips: prev.ips, routes: prev.routes };
  throw new CniError(
    Code.InvalidConfig,
    "ipvlan needs addresses: an ipam section, or a prevResult with IPs when chained",
  );
}

async function add(req: Request<Config>): Promise<Result> {
  const c = req.config;
  const addresses = addressesOf(req);
  const master = masterFor(c, req.netns, masterName(req));
  return addSublink(req, {
    type: "ipvlan",
    kind: { type: "ipvlan", parent: master.ifname, mode: c.mode },
    mtu: c.mtu,
    linkInContainer: c.linkInContainer,
    addresses,
    notify: true,
  });
}

async function check(req: Request<Config>) {
  const c = req.config;
  await checkSublink(
    { ...req, config: { ...c, master: masterName(req) } },
    {
      type: "ipvlan",
      validate: (link) => {
        const mode = link.linkinfo?.info_data?.mode;
        if (mode !== c.mode)
          throw new CniError(Code.Internal, `Container IPVlan mode ${mode} does not match expected value: ${c.mode}`);
      },
    },
  );
}

export default sublinkPlugin(parseConfig, add, check);
