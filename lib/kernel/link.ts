import { splitJsonArrays } from "./batch.ts";
import { ipBatch, ipJson, type RunOptions } from "./exec.ts";

/** The subset of `ip -j -d addr show` output the suite reads: the one shape of a link everywhere. */
export interface IpLink {
  ifindex: number;
  ifname: string;
  flags: string[];
  mtu: number;
  address?: string;
  master?: string;
  link_type?: string;
  /** A veth's peer ifindex (in the namespace link_netnsid names). */
  link_index?: number;
  operstate?: string;
  promiscuity?: number;
  linkinfo?: { info_kind?: string; info_slave_kind?: string; info_data?: { vlan_default_pvid?: number } };
  addr_info?: { family: "inet" | "inet6"; local: string; prefixlen: number; scope?: string }[];
}

export const isBridge = (l: IpLink) => l.linkinfo?.info_kind === "bridge";

type NsOpts = Pick<RunOptions, "netns">;

/** Runs link changes then reads the link back, all in one `ip` process. */
export function changeAndShow(changes: string[][], dev: string, opts: NsOpts = {}): IpLink | undefined {
  const out = ipBatch([...changes, ["addr", "show", "dev", dev]], { ...opts, json: true }).stdout;
  const parsed = splitJsonArrays(out).flat() as IpLink[];
  return parsed.find((l) => l.ifname === dev);
}

/** Details of one link, or undefined when it does not exist. */
export function showLink(dev: string, opts: NsOpts = {}): IpLink | undefined {
  const links = ipJson<IpLink[]>(["-d", "addr", "show", "dev", dev], { ...opts, allowFailure: true });
  return links.find((l) => l.ifname === dev);
}
