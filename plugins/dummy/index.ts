import type { Result } from "../../lib/cni/result.ts";
import type { PluginImpl, Request } from "../../lib/cni/skel.ts";
import { delegateIpam } from "../../lib/net/interface-plugin.ts";
import { addSublink, checkSublink, delSublink } from "../../lib/net/sublink.ts";
import { parseConfig, type Config } from "./config.ts";

/**
 * dummy: a dummy link as CNI_IFNAME in the container, holding IPAM's addresses (a stable address
 * that no other interface carries, e.g. for a service IP). The sublink walk of macvlan and ipvlan
 * without a master: created in the container under a temporary name, renamed, configured.
 */

function add(req: Request<Config>): Promise<Result> {
  return addSublink(req, {
    type: "dummy",
    kind: { type: "dummy" },
    mtu: 0,
    linkInContainer: false,
    addresses: { from: "ipam" },
    notify: false,
    ipamDns: true,
  });
}

const plugin: PluginImpl<Config> = {
  parseConfig,
  add,
  del: delSublink,
  check: (req) => checkSublink(req, { type: "dummy", missingPrevResult: "dummy: Required prevResult missing" }),
  status: (req) => delegateIpam("STATUS", req),
  gc: (req) => delegateIpam("GC", req),
};
export default plugin;
