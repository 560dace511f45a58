import { CniError, Code } from "../../lib/cni/errors.ts";
import type { IPConfig, Result } from "../../lib/cni/result.ts";
import { parseResult } from "../../lib/cni/result-schema.ts";
import type { PluginImpl, Request } from "../../lib/cni/skel.ts";
import { formatIP, parseIP, sameIP } from "../../lib/ip/address.ts";
import { formatCidr, loadStaticConfig, parseStaticCidr, type StaticConfig } from "./config.ts";

/**
 * static IPAM: the addresses, routes and DNS the configuration (or the runtime) names, returned as
 * an IPAM result without interface indexes. No state: DEL has nothing to release. Never prints or
 * exits, so interface plugins run it in-process as they do host-local.
 */

const fail = (msg: string) => new CniError(Code.Internal, msg);

function add(req: Request<StaticConfig>): Result {
  const c = req.config;
  const ips: IPConfig[] = c.addresses.map((a) => ({
    address: formatCidr(a.cidr),
    ...(a.gateway ? { gateway: formatIP(a.gateway) } : {}),
  }));
  const result: Result = { cniVersion: req.version, ips };
  if (c.routes.length > 0) result.routes = c.routes;
  if (c.dns) result.dns = c.dns;
  return result;
}

/** Every configured address is in prevResult, with the configured gateway when there is one. */
function check(req: Request<StaticConfig>) {
  const c = req.config;
  if (c.prevResult === undefined) throw fail("Required prevResult missing");
  let prev: Result;
  try {
    prev = parseResult(c.prevResult, req.version);
  } catch (e) {
    throw fail((e as Error).message);
  }
  const recorded = (prev.ips ?? []).map((ip) => ({
    ip: parseStaticCidr(ip.address)?.ip,
    gateway: ip.gateway === undefined ? undefined : parseIP(ip.gateway),
  }));
  for (const a of c.addresses) {
    const found = recorded.find((r) => r.ip && sameIP(r.ip, a.cidr.ip));
    const gatewayOk = !a.gateway || (found?.gateway !== undefined && sameIP(found.gateway, a.gateway));
    if (!found || !gatewayOk)
      throw fail(`static: Failed to match addr ${formatIP(a.cidr.ip)} on interface ${req.ifname}`);
  }
}

const staticIpam: PluginImpl<StaticConfig> = {
  // DEL (and STATUS, GC) do nothing and read nothing: a config they cannot parse is no reason to fail.
  parseConfig: (raw, env) =>
    env.command === "ADD" || env.command === "CHECK"
      ? loadStaticConfig(raw, env.args)
      : { cniVersion: String(raw.cniVersion ?? ""), addresses: [], routes: [] },
  add,
  del: () => undefined,
  check,
};
export default staticIpam;
