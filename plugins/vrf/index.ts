import { CniError, Code } from "../../lib/cni/errors.ts";
import type { Result } from "../../lib/cni/result.ts";
import type { PluginImpl, Request } from "../../lib/cni/skel.ts";
import { applyLinkOps, type IpLink, type IpRoute, type LinkOp } from "../../lib/kernel/link.ts";
import { prevResultOf } from "../../lib/net/check.ts";
import { inLockedNetns } from "../../lib/net/netns-lock.ts";
import { routeCopyOp } from "../../lib/net/route-ops.ts";
import { sleepMs } from "../../lib/sleep.ts";
import { parseConfig, type Config } from "./config.ts";
import { droppedV6, freeTable, isVrf, nexthopsToMove, routesToMove, slavesOf, vrfTable } from "./plan.ts";

/**
 * vrf (meta plugin): puts CNI_IFNAME into a VRF of the container's namespace, created on first use
 * with its own routing table, so attachments with overlapping address spaces can live side by
 * side. The interface's routes follow it into the VRF's table and the IPv6 addresses the kernel
 * drops while enslaving are added back, as the reference does. DEL releases the interface and
 * removes the VRF with its last one. All of it under the lock on the namespace file.
 */

const internal = (msg: string) => new CniError(Code.Internal, msg);

interface View {
  links: IpLink[];
  routes: IpRoute[];
}

/** Every link of the namespace (with the interface's addresses) and, when asked, every route. */
function read(req: Request<Config>, withRoutes: boolean): View {
  const ops: LinkOp[] = [
    { op: "links" },
    ...(withRoutes ? ([4, 6] as const).map((family) => ({ op: "routes", family }) as const) : []),
  ];
  const r = applyLinkOps(ops, { netns: req.netns });
  if (!r.ok) throw internal(`failed to read the links of the namespace: ${r.stderr}`);
  const [links = [], ...routes] = r.groups as unknown[][];
  return { links: links as IpLink[], routes: routes.flat() as IpRoute[] };
}

/** One link with its addresses, as it is now. */
function show(req: Request<Config>, dev: string): IpLink | undefined {
  return applyLinkOps([{ op: "show", dev }], { netns: req.netns }).shown.find((l) => l.ifname === dev);
}

/** Runs ops in order and throws at the first that fails, in the reference's words for it (by index). */
function must(req: Request<Config>, ops: readonly LinkOp[], what: (index: number) => string) {
  const r = applyLinkOps(ops, { netns: req.netns });
  if (!r.ok) throw internal(`${what(r.failedOp ?? 0)}: ${r.stderr}`);
}

/** Best effort, one op at a time (a batch would stop at the first that fails): for rollback. */
function applyEach(req: Request<Config>, ops: readonly LinkOp[]) {
  for (const o of ops) applyLinkOps([o], { netns: req.netns });
}

/** The existing VRF of that name, refusing a link of another kind under it. */
function findVrf(links: readonly IpLink[], name: string): IpLink | undefined {
  const l = links.find((x) => x.ifname === name);
  if (l && !isVrf(l)) throw internal(`Netlink ${name} is not a VRF`);
  return l;
}

const cidrOf = (a: { local: string; prefixlen: number }) => `${a.local}/${a.prefixlen}`;

/**
 * Waits until the kernel has the local route of each re-added IPv6 address in the VRF's table
 * (after duplicate address detection): the routes moved next may need them, and a container whose
 * ADD succeeded can use its addresses. The reference's bound: 8 retries backing off from 10 ms.
 */
async function awaitLocalRoutes(req: Request<Config>, addrs: readonly string[], table: number) {
  for (const addr of addrs) {
    for (let attempt = 0; ; attempt++) {
      const r = applyLinkOps([{ op: "routes", family: 6 }], { netns: req.netns });
      const routes = (r.groups[0] ?? []) as IpRoute[];
      if (routes.some((x) => x.table === String(table) && x.dev === req.ifname && x.dst === addr)) break;
      if (attempt === 8)
        throw internal(`failed getting local/host addresses for ${req.ifname} in table ${table} with dst ${addr}/128`);
      await sleepMs(10 * 2 ** attempt);
    }
  }
}

async function add(req: Request<Config>): Promise<Result> {
  const { vrfname, table: wanted } = req.config;
  if (req.config.prevResult === undefined) throw internal("missing prevResult from earlier plugin");
  const prev = prevResultOf(req);
  const undo: LinkOp[] = [];
  try {
    await inLockedNetns(req.netns, async () => {
      const view = read(req, true);
      const vrf = findVrf(view.links, vrfname);
      if (vrf && wanted !== undefined && vrfTable(vrf) !== wanted)
        throw internal(`VRF ${vrfname} already exist with different routing table ${vrfTable(vrf)}`);
      const iface = view.links.find((l) => l.ifname === req.ifname);
      if (!iface) throw internal(`could not get link by name ${req.ifname}`);
      if (iface.master) throw internal(`interface ${req.ifname} has already a master set: ${iface.master}`);

      const table = vrf ? vrfTable(vrf)! : (wanted ?? freeTable(view.links));
      if (!vrf) {
        undo.push({ op: "link-del", dev: vrfname });
        must(
          req,
          [
            { op: "link-add", dev: vrfname, kind: { type: "vrf", table } },
            { op: "link-set", dev: vrfname, up: true },
          ],
          (i) => (i === 0 ? `could not add VRF ${vrfname}` : `could not set link up for VRF ${vrfname}`),
        );
      }

      // Read before enslaving: the kernel drops both while it cycles the link.
      const before = show(req, req.ifname);
      const own = routesToMove(view.routes, req.ifname);
      const routes = [...own, ...nexthopsToMove(view.routes, req.ifname)];
      // Undone newest first: release the link, then give it back what it had (its own routes; a
      // multipath route stayed in main).
      undo.push(
        ...own.map((r) => routeCopyOp(r, "replace")),
        ...droppedV6(before, undefined).map(
          (a): LinkOp => ({ op: "addr", verb: "replace", dev: req.ifname, cidr: cidrOf(a) }),
        ),
        { op: "link-set", dev: req.ifname, master: null },
      );
      must(
        req,
        [{ op: "link-set", dev: req.ifname, master: vrfname }],
        () => `could not set vrf ${vrfname} as master of ${req.ifname}`,
      );

      const lost = droppedV6(before, show(req, req.ifname));
      must(
        req,
        lost.map((a): LinkOp => ({ op: "addr", verb: "add", dev: req.ifname, cidr: cidrOf(a) })),
        (i) => `could not restore address ${cidrOf(lost[i]!)} to ${req.ifname} @ ${vrfname}`,
      );
      await awaitLocalRoutes(
        req,
        lost.map((a) => a.local),
        table,
      );
      must(
        req,
        routes.map((r) => routeCopyOp(r, "replace", table)),
        (i) => `could not add route '${routes[i]!.dst}' to table ${table}`,
      );
    });
  } catch (e) {
    applyEach(req, undo.reverse());
    if (e instanceof CniError) throw new CniError(e.code, `cmdAdd failed: ${e.message}`, e.details);
    throw e;
  }
  return prev;
}

/**
 * DEL: the interface leaves the VRF, and the VRF goes when no link is left in it. Nothing to do
 * without the namespace or the VRF; an interface already gone, or in another master, is left as it
 * is (the reference fails the first and releases the second from whatever master it has).
 */
async function del(req: Request<Config>) {
  if (req.netnsState !== "ok") return;
  const { vrfname } = req.config;
  await inLockedNetns(req.netns, () => {
    const { links } = read(req, false);
    const vrf = links.find((l) => l.ifname === vrfname);
    // A link of another kind under the name is not the plugin's to touch.
    if (!vrf || !isVrf(vrf)) return;
    const iface = links.find((l) => l.ifname === req.ifname);
    if (iface?.master === vrfname)
      must(
        req,
        [{ op: "link-set", dev: req.ifname, master: null }],
        () => `resetMaster: could not reset master to ${req.ifname}`,
      );
    if (slavesOf(links, vrfname).every((l) => l.ifname === req.ifname))
      must(req, [{ op: "link-del", dev: vrfname }], () => `could not delete VRF ${vrfname}`);
  });
}

/** CHECK, as the reference: the VRF exists and holds the interface; and has the configured table. */
async function check(req: Request<Config>) {
  const { vrfname, table } = req.config;
  if (req.config.prevResult === undefined) throw internal("missing prevResult from earlier plugin");
  prevResultOf(req);
  const { links } = read(req, false);
  const vrf = findVrf(links, vrfname);
  if (!vrf) throw internal(`VRF ${vrfname} not found`);
  if (!slavesOf(links, vrfname).some((l) => l.ifname === req.ifname))
    throw internal(`Failed to find ${req.ifname} associated to vrf ${vrfname}`);
  if (table !== undefined && vrfTable(vrf) !== table)
    throw internal(`VRF ${vrfname} has routing table ${vrfTable(vrf)}, not ${table}`);
}

const plugin: PluginImpl<Config> = { parseConfig, add, del, check };
export default plugin;
