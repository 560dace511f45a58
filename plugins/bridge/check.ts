import { CniError, Code } from "../../lib/cni/errors.ts";
import type { Result } from "../../lib/cni/result.ts";
import { checkAddressesAndRoutes } from "../../lib/net/check.ts";
import { applyLinkOps, isBridge, type IpLink, type IpRoute } from "../../lib/kernel/link.ts";

/**
 * CHECK of a bridge attachment against its prevResult, with the reference's walk and messages:
 * the bridge, the container interface (a veth with the recorded MAC), a host veth that is its peer
 * and a port of the bridge, then the container's addresses and routes. Two tool processes in all.
 */
export interface CheckInput {
  bridge: string;
  promisc: boolean;
  ifname: string;
  netns: string;
  prev: Result;
}

const fail = (msg: string) => new CniError(Code.Internal, msg);

export function checkAttachment(c: CheckInput) {
  const ifaces = c.prev.interfaces ?? [];
  const brEntry = ifaces.find((i) => i.name === c.bridge);
  const contEntry = ifaces.find((i) => i.name === c.ifname && i.sandbox === c.netns);
  const hostEntries = ifaces.filter((i) => i.name !== c.bridge && i.name !== contEntry?.name);

  // Node side: the bridge first, then the candidates in order; a batch stops at the first missing one.
  const names = [brEntry?.name ?? c.bridge, ...hostEntries.map((i) => i.name)];
  const node = applyLinkOps(names.map((dev) => ({ op: "show", dev }) as const));
  const seen = new Map(node.shown.map((l) => [l.ifname, l]));
  const missingAt = node.ok ? Infinity : (node.failedOp ?? 0);

  if (!brEntry) throw fail(`CNI created bridge ${c.bridge} in host namespace was not found`);
  const br = seen.get(brEntry.name);
  if (!br || missingAt === 0) throw fail(`Interface name ${brEntry.name} not found`);
  if (brEntry.sandbox) throw fail(`Interface ${brEntry.name} should not be in sandbox`);
  if (!isBridge(br)) throw fail(`Interface ${brEntry.name} does not have link type of bridge`);
  if (brEntry.mac && brEntry.mac !== br.address)
    throw fail(`Bridge interface ${brEntry.name} Mac doesn't match: ${brEntry.mac}`);
  const promisc = br.flags.includes("PROMISC");
  if (promisc !== c.promisc)
    throw fail(
      `Bridge interface ${brEntry.name} configured Promisc Mode ${c.promisc} doesn't match current state: ${promisc} `,
    );

  if (!contEntry) {
    const named = ifaces.find((i) => i.name === c.ifname);
    throw fail(`Sandbox in prevResult ${named?.sandbox ?? ""} doesn't match configured netns: ${c.netns}`);
  }

  // Container side: the interface, and the routes of both families.
  const cont = applyLinkOps(
    [
      { op: "show", dev: c.ifname },
      { op: "routes", family: 4 },
      { op: "routes", family: 6 },
    ],
    { netns: c.netns },
  );
  if (!cont.ok && cont.failedOp === 0) throw fail(`Interface name ${c.ifname} not found`);
  if (!cont.ok) throw fail(`failed to read routes in ${c.netns}: ${cont.stderr}`);
  const contLink = cont.groups[0]?.[0] as IpLink;
  const routes = { 4: (cont.groups[1] ?? []) as IpRoute[], 6: (cont.groups[2] ?? []) as IpRoute[] };
  if (contLink.linkinfo?.info_kind !== "veth") throw fail(`Error: Container interface ${c.ifname} not of type veth`);
  if (contEntry.mac && contEntry.mac !== contLink.address)
    throw fail(`Interface ${c.ifname} Mac ${contEntry.mac} doesn't match container Mac: ${contLink.address}`);

  let vethFound = false;
  for (const [i, entry] of hostEntries.entries()) {
    const link = seen.get(entry.name);
    if (!link || i + 1 >= missingAt) throw fail(`Interface name ${entry.name} not found`);
    if (entry.sandbox) throw fail(`Interface ${entry.name} should not be in sandbox`);
    if (!isPeerPort(link, contLink, br)) continue;
    if (entry.mac && entry.mac !== link.address)
      throw fail(`Interface ${entry.name} Mac doesn't match: ${entry.mac} not found`);
    vethFound = true;
    break;
  }
  if (!vethFound) throw fail(`CNI veth created for bridge ${c.bridge} was not found`);

  checkAddressesAndRoutes(c.ifname, contLink, routes, c.prev);
}

function isPeerPort(link: IpLink, cont: IpLink, br: IpLink): boolean {
  return (
    link.linkinfo?.info_kind === "veth" &&
    link.link_index === cont.ifindex &&
    cont.link_index === link.ifindex &&
    link.master === br.ifname
  );
}
