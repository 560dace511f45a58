import { CniError, Code } from "../../lib/cni/errors.ts";
import type { Result } from "../../lib/cni/result.ts";
import type { Request } from "../../lib/cni/skel.ts";
import { hasIpam } from "../../lib/net/interface-plugin.ts";
import { addSublink, checkSublink, masterFor, sublinkPlugin } from "../../lib/net/sublink.ts";
import { parseConfig, type Config } from "./config.ts";

/**
 * macvlan: a macvlan link of `master` as CNI_IFNAME in the container, with its own MAC on the
 * master's L2 segment; addresses from IPAM, or none (layer 2).
 */

async function add(req: Request<Config>): Promise<Result> {
  const c = req.config;
  const master = masterFor(c, req.netns);
  return addSublink(req, {
    type: "macvlan",
    kind: { type: "macvlan", parent: master.ifname, mode: c.mode, bcqueuelen: c.bcqueuelen || undefined },
    mtu: c.mtu,
    mac: c.mac,
    linkInContainer: c.linkInContainer,
    addresses: hasIpam(c) ? { from: "ipam" } : { from: "none" },
    notify: true,
  });
}

async function check(req: Request<Config>) {
  const c = req.config;
  masterFor(c, req.netns);
  await checkSublink(req, {
    type: "macvlan",
    validate: (link, name) => {
      const mode = link.linkinfo?.info_data?.mode;
      if (mode !== c.mode)
        throw new CniError(
          Code.Internal,
          `Container macvlan mode ${mode} does not match expected value: ${c.mode}`,
          `interface ${name}`,
        );
    },
  });
}

export default sublinkPlugin(parseConfig, add, check);
