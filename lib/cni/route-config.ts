import { CniError, Code } from "./errors.ts";
import type { Route } from "./result.ts";
import { formatIP, parseCIDR, parseIP } from "../ip/address.ts";

/**
 * An IPAM configuration's route as it goes into the result (host-local, static): re-rendered in
 * canonical text as the reference's JSON round trip does, with its messages for a bad one.
 */
export function canonicalRoute(r: Route, i: number): Route {
  const invalid = (msg: string) => new CniError(Code.InvalidConfig, msg);
  const dst = parseCIDR(r.dst);
  if (!dst) throw invalid(`ipam.routes.${i}.dst: invalid CIDR address: ${r.dst}`);
  const out: Route = { ...r, dst: `${formatIP(dst.ip)}/${dst.prefix}` };
  if (r.gw !== undefined) {
    const gw = parseIP(r.gw);
    if (!gw) throw invalid(`ipam.routes.${i}.gw: invalid IP address: ${r.gw}`);
    out.gw = formatIP(gw);
  }
  return out;
}
