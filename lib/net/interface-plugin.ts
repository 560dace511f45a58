import { delegate, findInPath } from "../cni/delegate.ts";
import { CniError, Code } from "../cni/errors.ts";
import type { DNS, IPConfig, Result, Route } from "../cni/result.ts";
import { parseResult } from "../cni/result-schema.ts";
import { parseCIDR } from "../ip/address.ts";
import type { Request } from "../cni/skel.ts";

/**
 * What every interface plugin (bridge, and the ones that follow it: macvlan, ipvlan, ptp, vlan,
 * host-device, dummy, tap) does around its own link work: an undo stack for a failed ADD, IPAM
 * delegation that registers its own rollback, the DNS override, and reading prevResult's
 * addresses on DEL. The container side itself is lib/net/container.ts (configureContainer).
 */

/** Steps that undo an ADD, run newest first; each is best effort. */
export class Undo {
  private readonly steps: (() => unknown)[] = [];

  push(step: () => unknown) {
    this.steps.push(step);
  }

  /** Runs every step, newest first; failures are swallowed, the original error is what matters. */
  async run() {
    for (const step of this.steps.reverse()) {
      try {
        await step();
      } catch {
        // Best effort: the original failure is what the runtime needs to see.
      }
    }
    this.steps.length = 0;
  }

  /** Runs `fn`; if it throws, undoes what was registered and rethrows. */
  async guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      await this.run();
      throw e;
    }
  }
}

/** The config keys the IPAM helpers need: the reference's `ipam` object. */
interface WithIpam {
  ipam?: { type?: string };
  dns?: DNS;
}

export const hasIpam = (c: WithIpam) => !!c.ipam?.type;

/** Fails early (before anything is created) when the IPAM plugin is not on CNI_PATH. */
export function requireIpamPlugin(req: Request<WithIpam>) {
  if (hasIpam(req.config)) findInPath(req.config.ipam!.type!, req.path);
}

export interface IpamResult {
  ips: IPConfig[];
  routes?: Route[];
  dns?: DNS;
}

/**
 * ADD of the configured IPAM plugin; its DEL is registered on `undo` first thing, so a later
 * failure releases the address. No address at all is an error, in the reference's words.
 */
export async function addIpam(req: Request<WithIpam>, undo: Undo): Promise<IpamResult> {
  const type = req.config.ipam!.type!;
  const r = await delegate("ADD", type, req);
  undo.push(() => delegate("DEL", type, req));
  if (!r?.ips?.length) throw new CniError(Code.Internal, "IPAM plugin returned missing IP config");
  return { ips: r.ips, routes: r.routes, dns: r.dns };
}

/** DEL, CHECK, STATUS or GC of the configured IPAM plugin; nothing without one. */
export async function delegateIpam(command: "DEL" | "CHECK" | "STATUS" | "GC", req: Request<WithIpam>) {
  if (hasIpam(req.config)) await delegate(command, req.config.ipam!.type!, req);
}

/** A `dns` section in the plugin's own config replaces IPAM's, as in the reference. */
export function applyDnsOverride(result: Result, c: WithIpam) {
  const d = c.dns;
  if (d && (d.nameservers !== undefined || d.search !== undefined || d.options !== undefined || !!d.domain)) {
    result.dns = d;
  }
}

/**
 * The container addresses prevResult records for `ifname` (or without an interface index): what a
 * DEL knows when the namespace is gone. A prevResult it cannot read yields none, and an address
 * that is not a CIDR is skipped: DEL must not fail on a cache.
 */
export function prevResultAddresses(req: Request<{ prevResult?: unknown }>, ifname = req.ifname): string[] {
  if (req.config.prevResult === undefined) return [];
  let prev: Result;
  try {
    prev = parseResult(req.config.prevResult, req.version);
  } catch {
    return [];
  }
  return (prev.ips ?? [])
    .filter((ip) => ip.interface === undefined || prev.interfaces?.[ip.interface]?.name === ifname)
    .map((ip) => ip.address)
    .filter((address) => parseCIDR(address) !== undefined);
}
