import type { Result } from "../../lib/cni/result.ts";
import type { Request } from "../../lib/cni/skel.ts";
import { addSublink, checkSublink, sublinkPlugin } from "../../lib/net/sublink.ts";
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

const check = (req: Request<Config>) =>
  checkSublink(req, { type: "dummy", missingPrevResult: "dummy: Required prevResult missing" });

export default sublinkPlugin(parseConfig, add, check);
