import { CniError, Code } from "../../lib/cni/errors.ts";
import type { Result } from "../../lib/cni/result.ts";
import type { Request } from "../../lib/cni/skel.ts";
import { addSublink, checkSublink, masterFor, sublinkPlugin } from "../../lib/net/sublink.ts";
import { parseConfig, type Config } from "./config.ts";

/**
 * vlan: an 802.1Q sub-interface of `master` (tagged with `vlanId`) as CNI_IFNAME in the container,
 * holding IPAM's addresses. Frames the container sends leave the master tagged; only frames of that
 * VLAN reach it.
 */

async function add(req: Request<Config>): Promise<Result> {
  const c = req.config;
  const master = masterFor(c, req.netns);
  return addSublink(req, {
    type: "vlan",
    kind: { type: "vlan", parent: master.ifname, id: c.vlanId },
    mtu: c.mtu,
    linkInContainer: c.linkInContainer,
    addresses: { from: "ipam" },
    // The reference sets no arp_notify/ndisc_notify on a VLAN link.
    notify: false,
    ipamErrorPrefix: "failed to execute IPAM delegate: ",
  });
}

const fail = (msg: string) => new CniError(Code.Internal, msg);

const check = (req: Request<Config>) =>
  checkSublink(req, {
    type: "vlan",
    ipamAlways: true,
    missingPrevResult: "vlan: Required prevResult missing",
    validate: (link, name) => {
      const c = req.config;
      const id = link.linkinfo?.info_data?.id;
      if (id !== c.vlanId)
        throw fail(`Error: VLAN link ${name} configured VLAN ID is ${c.vlanId}, current value is ${id}`);
      if (c.mtu !== 0 && c.mtu !== link.mtu)
        throw fail(`Error: Tuning configured MTU of ${name} is ${c.mtu}, current value is ${link.mtu}`);
    },
  });

export default sublinkPlugin(parseConfig, add, check);
