import { CniError, Code } from "../../lib/cni/errors.ts";
import type { Result } from "../../lib/cni/result.ts";
import { parseResult } from "../../lib/cni/result-schema.ts";
import type { PluginImpl, Request } from "../../lib/cni/skel.ts";
import { addShaping, checkShaping, delShaping, hostPeer, ifbName } from "./shaping.ts";
import { parseConfig, type Config } from "./config.ts";

/**
 * bandwidth (meta plugin): token-bucket shaping of a container's traffic on the host end of its
 * veth, both ways, after bridge or ptp. Traffic to the container is shaped by a tbf root qdisc on
 * the host end; traffic from it is redirected to an ifb device (named from the network and the
 * container) whose tbf shapes it. Passes prevResult on, with the ifb added.
 */

/** The reference words it one way in ADD and another in CHECK; users match on both. */
function requirePrev(req: Request<Config>, message = "must be called as chained plugin"): Result {
  if (req.config.prevResult === undefined) throw new CniError(Code.Internal, message);
  return parseResult(req.config.prevResult, req.version);
}

const shaped = (c: Config) => c.shaping.ingress !== undefined || c.shaping.egress !== undefined;

function add(req: Request<Config>): Result {
  const c = req.config;
  // Without a prevResult there is nothing to pass on even when nothing is shaped (the reference
  // crashes there).
  const prev = requirePrev(req);
  if (!shaped(c)) return prev;
  const host = hostPeer(req.netns, req.ifname, prev);
  const ifb = addShaping(host, ifbName(c.name, req.containerId), c.shaping);
  return ifb ? { ...prev, interfaces: [...(prev.interfaces ?? []), ifb] } : prev;
}

function del(req: Request<Config>) {
  // The host end (and its qdiscs) is found through the container's veth; without the namespace or
  // a prevResult only the ifb, which lives on the node, is ours to remove.
  const prev = req.config.prevResult === undefined ? undefined : safeParse(req);
  const host = req.netnsState === "ok" && prev ? tryHostPeer(req, prev) : undefined;
  delShaping(host, ifbName(req.config.name, req.containerId));
}

function safeParse(req: Request<Config>): Result | undefined {
  try {
    return parseResult(req.config.prevResult, req.version);
  } catch {
    return undefined;
  }
}

function tryHostPeer(req: Request<Config>, prev: Result): string | undefined {
  try {
    return hostPeer(req.netns, req.ifname, prev).ifname;
  } catch {
    return undefined;
  }
}

function check(req: Request<Config>) {
  const prev = requirePrev(req, "must be called as a chained plugin");
  const c = req.config;
  if (!shaped(c)) return;
  checkShaping(hostPeer(req.netns, req.ifname, prev).ifname, ifbName(c.name, req.containerId), c.shaping);
}

const plugin: PluginImpl<Config> = { parseConfig, add, del, check };
export default plugin;
