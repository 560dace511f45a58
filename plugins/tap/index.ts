import { CniError, Code } from "../../lib/cni/errors.ts";
import type { Result } from "../../lib/cni/result.ts";
import type { Request } from "../../lib/cni/skel.ts";
import { applyLinkOps, type IpLink, type LinkOp } from "../../lib/kernel/link.ts";
import { hasIpam } from "../../lib/net/interface-plugin.ts";
import { addSublink, checkSublink, sublinkPlugin } from "../../lib/net/sublink.ts";
import { randomVethName } from "../../lib/net/veth.ts";
import { parseConfig, type Config } from "./config.ts";

/**
 * tap: a persistent tap device as CNI_IFNAME in the container, for a VM monitor there (QEMU,
 * Firecracker, Kata) to open by name; `owner`/`group` may open it unprivileged. With `bridge` it
 * is a port of that bridge of the container's namespace (which the VM's traffic then crosses).
 * Addresses from IPAM, or none (layer 2). ADD's rollback, DEL and CHECK are the sublink walk.
 */

const internal = (msg: string) => new CniError(Code.Internal, msg);

/**
 * Creates the tap in the container under a temporary name (a node interface named CNI_IFNAME must
 * not collide on the way), gives it its MTU, MAC and final name, makes it a port of `bridge`
 * and up, in one run there. A failure removes what the run made.
 */
function createTap(c: Config, ifname: string, netns: string): IpLink {
  const tmp = randomVethName();
  const ops: LinkOp[] = [
    // vnet_hdr always, as upstream's netlink path; an opener sets its own header and PI flags anyway.
    { op: "tuntap-add", dev: tmp, multiQueue: c.multiQueue, vnetHdr: true, user: c.owner, group: c.group },
    { op: "link-set", dev: tmp, mtu: c.mtu || undefined, mac: c.mac, name: ifname },
    ...(c.bridge ? [{ op: "link-set", dev: ifname, master: c.bridge } as const] : []),
    { op: "link-set", dev: ifname, up: true },
    { op: "show", dev: ifname },
  ];
  const r = applyLinkOps(ops, { netns, execLabel: c.selinuxContext });
  const link = r.shown.find((l) => l.ifname === ifname);
  if (r.ok && link) return link;
  const failed = r.failedOp ?? 0;
  if (failed === 0) throw internal(`failed to create tap: ${r.stderr}`);
  applyLinkOps([{ op: "link-del", dev: failed === 1 ? tmp : ifname }], { netns });
  if (failed === 1) throw internal(`failed to rename tap to "${ifname}": ${r.stderr}`);
  if (c.bridge && failed === 2)
    throw internal(`failed to set tap ${ifname} as a port of bridge ${c.bridge}: ${r.stderr}`);
  throw internal(`failed to set tap interface up: ${r.stderr || "not found after the rename"}`);
}

function add(req: Request<Config>): Promise<Result> {
  const c = req.config;
  return addSublink(req, {
    type: "tap",
    create: (ifname, netns) => createTap(c, ifname, netns),
    addresses: hasIpam(c) ? { from: "ipam" } : { from: "none" },
    notify: true,
  });
}

const check = (req: Request<Config>) =>
  checkSublink(req, {
    type: "tap",
    kind: "tun",
    validate: (link, name) => {
      const data = link.linkinfo?.info_data;
      if (data?.type !== "tap") throw internal(`Error: Container interface ${name} is not a tap device`);
      if (!!data.multi_queue !== req.config.multiQueue)
        throw internal(
          `Error: Container tap ${name} multi_queue is ${!!data.multi_queue}, configured ${req.config.multiQueue}`,
        );
    },
  });

export default sublinkPlugin(parseConfig, add, check);
