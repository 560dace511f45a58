import { CniError, Code } from "../../lib/cni/errors.ts";
import type { Result } from "../../lib/cni/result.ts";
import { parseResult } from "../../lib/cni/result-schema.ts";
import type { PluginImpl, Request } from "../../lib/cni/skel.ts";
import { applyLinkOps, type IpLink, type IpRoute, type IpRule, type LinkOp } from "../../lib/kernel/link.ts";
import { inLockedNetns } from "../../lib/net/netns-lock.ts";
import { addressesOf, freeTable, mainRoutesOf, planAdd, planDel, rulesFrom } from "./plan.ts";
import { parseConfig, type Config } from "./config.ts";

/**
 * sbr (meta plugin): source-based routing for CNI_IFNAME, so that replies leave by the interface
 * their request came in on when a container has several. Each of the interface's addresses gets a
 * rule sending traffic from it to a table of its own (the first free one from 100, or `table`)
 * holding the default route via its gateway and the interface's routes, moved out of main. Works
 * inside the container's namespace holding a lock on its file, as the reference does.
 */

const internal = (msg: string, details?: string) => new CniError(Code.Internal, msg, details);

function requirePrev(req: Request<Config>): Result {
  if (req.config.prevResult === undefined) throw internal("This plugin must be called as chained plugin");
  return parseResult(req.config.prevResult, req.version);
}

interface NetnsView {
  link?: IpLink;
  routes: IpRoute[];
  rules: IpRule[];
}

/**
 * The interface, every route and the rules of the families asked for, in the container: two
 * processes, the IPv6 rules first (a batch of its own) and the rest in one.
 */
function read(req: Request<Config>, families: readonly (4 | 6)[], withRoutes: boolean): NetnsView {
  const ops: LinkOp[] = [
    ...families.map((family) => ({ op: "rules", family }) as const),
    ...(withRoutes ? ([4, 6] as const).map((family) => ({ op: "routes", family }) as const) : []),
    { op: "show", dev: req.ifname },
  ];
  const r = applyLinkOps(ops, { netns: req.netns });
  const groups = r.groups as unknown[][];
  const rules = groups.slice(0, families.length).flat() as IpRule[];
  const routes = withRoutes ? (groups.slice(families.length, families.length + 2).flat() as IpRoute[]) : [];
  const link = r.shown.find((l) => l.ifname === req.ifname);
  if (!r.ok && r.failedOp !== ops.length - 1) throw internal(`failed to read the routing state: ${r.stderr}`);
  return { link, routes, rules };
}

async function add(req: Request<Config>): Promise<Result> {
  const prev = requirePrev(req);
  if (!prev.ips?.length) throw internal(`No IP addresses supplied on interface: ${req.ifname}`);
  const addresses = addressesOf(prev, req.ifname);
  await inLockedNetns(req.netns, () => {
    const view = read(req, [6, 4], true);
    if (!view.link) throw internal(`failed to find interface ${req.ifname}: Link not found`);
    const table = req.config.table ?? freeTable(view.rules, view.routes);
    const plan = planAdd(req.ifname, addresses, mainRoutesOf(view.routes, req.ifname), table);
    const r = applyLinkOps(plan.ops, { netns: req.netns });
    if (r.ok) return;
    // What succeeded before the failing op is undone, newest first.
    const done = r.failedOp ?? plan.ops.length;
    applyEach(plan.undo.slice(0, done).reverse(), req.netns);
    const op = r.failedOp === undefined ? "" : ` (${describe(plan.ops[r.failedOp]!)})`;
    throw internal(`failed to set up source-based routing in table ${table}${op}: ${r.stderr}`);
  });
  return prev;
}

/** Best effort, one op at a time: a batch would stop at the first that fails. */
function applyEach(ops: readonly LinkOp[], netns: string) {
  for (const o of ops) applyLinkOps([o], { netns });
}

function describe(o: LinkOp): string {
  if (o.op === "rule") return `rule from ${o.src}`;
  if (o.op === "route") return `route ${o.dst}${o.table ? ` in table ${o.table}` : " in main"}`;
  return o.op;
}

/**
 * DEL: the rules whose source is one of the interface's addresses (those it has now and those
 * prevResult gives it), only of `table` when configured, and the routes of their tables back to
 * main (plan.ts planDel). Nothing to do without the namespace or the interface: their rules and
 * routes went with them.
 */
async function del(req: Request<Config>) {
  if (req.netnsState !== "ok") return;
  const prev = req.config.prevResult === undefined ? undefined : tryParse(req);
  await inLockedNetns(req.netns, () => {
    const view = read(req, [6, 4], true);
    if (!view.link) return;
    const current = (view.link.addr_info ?? []).map((a) => a.local);
    const recorded = prev ? addressesOf(prev, req.ifname).map((a) => a.address.split("/")[0]!) : [];
    const doomed = rulesFrom(view.rules, [...current, ...recorded], req.config.table);
    if (doomed.length === 0) return;
    // Rules first: once they are gone, whatever else fails leaves no routing decision changed.
    const r = applyLinkOps(planDel(req.ifname, doomed, view.routes), { netns: req.netns });
    if (!r.ok) throw internal(`failed to remove source-based routing of ${req.ifname}: ${r.stderr}`);
  });
}

function tryParse(req: Request<Config>): Result | undefined {
  try {
    return parseResult(req.config.prevResult, req.version);
  } catch {
    return undefined;
  }
}

/**
 * CHECK (the reference's always succeeds): every address of the interface has its rule, and the
 * table it looks up holds the default route via the address's gateway.
 */
async function check(req: Request<Config>) {
  const prev = requirePrev(req);
  const addresses = addressesOf(prev, req.ifname);
  const view = read(req, [6, 4], true);
  if (!view.link) throw internal(`failed to find interface ${req.ifname}: Link not found`);
  for (const a of addresses) {
    const ip = a.address.split("/")[0]!;
    const rule = rulesFrom(view.rules, [ip], req.config.table)[0];
    if (!rule) throw internal(`no source-based routing rule for ${ip}`);
    if (!a.gateway) continue;
    const hasDefault = view.routes.some(
      (r) => r.table === rule.table && r.dst === "default" && r.gateway === a.gateway && r.dev === req.ifname,
    );
    if (!hasDefault) throw internal(`table ${rule.table} has no default route via ${a.gateway} dev ${req.ifname}`);
  }
}

const plugin: PluginImpl<Config> = { parseConfig, add, del, check };
export default plugin;
