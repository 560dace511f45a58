import * as z from "../../lib/cni/zod.ts";
import { CniError, Code } from "../../lib/cni/errors.ts";
import { BaseConfig, parseWith } from "../../lib/cni/config.ts";
import { validateIfname } from "../../lib/cni/env.ts";
import type { Result } from "../../lib/cni/result.ts";
import { parseResult } from "../../lib/cni/result-schema.ts";
import type { PluginImpl, Request } from "../../lib/cni/skel.ts";
import type { Family } from "../../lib/ip/address.ts";
import { iptablesSave, iptablesTransact } from "../../lib/netfilter/iptables.ts";
import { netfilterLocked } from "../../lib/netfilter/lock.ts";
import type { RuleSet } from "../../lib/netfilter/plan.ts";
import { parseDump } from "../../lib/netfilter/rules.ts";
import { addSources, firewalldNotRunning, firewalldRunning, removeSources, sourcesOutsideZone } from "./firewalld.ts";
import {
  combine,
  containerRules,
  DEFAULT_ADMIN_CHAIN,
  deleteScript,
  ensureScript,
  forwardSkeleton,
  hostCidr,
  isolationRules,
  missing,
  validChainName,
  type IngressPolicy,
} from "./iptables.ts";

/**
 * firewall (meta plugin): lets forwarded traffic reach the container addresses of the prevResult.
 * Backend iptables (rules in CNI-FORWARD, jumped from FORWARD, with the operator's admin chain
 * first) or firewalld (addresses become sources of a zone). ingressPolicy same-bridge/isolated
 * adds bridge isolation rules in iptables whatever the backend, as the reference does.
 */
const FirewallConfig = z.extend(BaseConfig, {
  backend: z.optional(z.enum(["", "iptables", "firewalld"])),
  iptablesAdminChainName: z.optional(
    z
      .string()
      .check(
        z.refine(
          (n) => n === "" || validChainName(n),
          "must be an iptables chain name (at most 28 characters, no spaces, not a built-in)",
        ),
      ),
  ),
  firewalldZone: z.optional(z.string().check(z.regex(/^[A-Za-z0-9_.+-]*$/, "must be a firewalld zone name"))),
  ingressPolicy: z.optional(z.enum(["", "open", "same-bridge", "isolated"])),
});
type FirewallConfig = z.infer<typeof FirewallConfig>;

interface Plan {
  prev: Result | undefined;
  /** Container host addresses (a.b.c.d/32, x::y/128) grouped by family. */
  addrs: Map<Family, string[]>;
  adminChain: string;
  zone: string;
  policy: IngressPolicy;
  /** The bridge the isolation rules name (prevResult interfaces[0]); only for a non-open policy. */
  bridge: string;
}

/** What a call works on; DEL (`forDel`) needs neither a prevResult nor the bridge of a policy. */
function plan(req: Request<FirewallConfig>, forDel = false): Plan {
  const c = req.config;
  if (c.prevResult === undefined && !forDel)
    throw new CniError(Code.InvalidConfig, "missing prevResult from earlier plugin");
  const prev = c.prevResult === undefined ? undefined : parseResult(c.prevResult, req.version);
  const addrs = new Map<Family, string[]>();
  for (const ip of prev?.ips ?? []) {
    const { family, cidr } = hostCidr(ip.address);
    addrs.set(family, [...(addrs.get(family) ?? []), cidr]);
  }
  const policy: IngressPolicy = c.ingressPolicy || "open";
  let bridge = "";
  if (policy !== "open" && prev && !forDel) {
    const first = prev.interfaces?.[0];
    if (!first)
      throw new CniError(
        Code.InvalidConfig,
        `interface needs to be set for ingress policy "${policy}", make sure to chain "firewall" plugin with "bridge"`,
      );
    if (!first.name) throw new CniError(Code.InvalidConfig, "got empty bridge name");
    validateIfname(first.name, "prevResult.interfaces[0].name", Code.InvalidConfig);
    bridge = first.name;
  }
  return {
    prev,
    addrs,
    adminChain: c.iptablesAdminChainName || DEFAULT_ADMIN_CHAIN,
    zone: c.firewalldZone || "trusted",
    policy,
    bridge,
  };
}

/**
 * The reference's choice: the configured backend, else firewalld when it is running, else iptables.
 * Asking for firewalld where it is not running is an error, never a silent fallback to iptables.
 */
function useFirewalld(c: FirewallConfig): boolean {
  if (c.backend === "iptables") return false;
  const running = firewalldRunning();
  if (c.backend === "firewalld" && !running) throw firewalldNotRunning();
  return running;
}

/** The shared chains and rules one family needs (the container's own rules come separately). */
function sharedRules(p: Plan, firewalld: boolean): RuleSet {
  return combine(
    firewalld ? { chains: [], wanted: [] } : forwardSkeleton(p.adminChain),
    isolationRules(p.policy, p.bridge),
  );
}

/**
 * Reads the filter table, then applies what is missing in one iptables-restore transaction. A
 * concurrent ADD/DEL can change the table between the read and the write (the transaction then
 * fails, e.g. on -N of a chain that now exists), so the plan is rebuilt from a fresh read.
 */
function containerRulesOf(cidrs: readonly string[]) {
  return cidrs.flatMap(containerRules);
}

function deleteContainerRules(p: Plan, families: Iterable<Family>) {
  for (const f of families) {
    const rules = containerRulesOf(p.addrs.get(f) ?? []);
    iptablesTransact(f, "filter", (dump) => deleteScript(parseDump(dump, "filter"), rules));
  }
}

function addRules(req: Request<FirewallConfig>): Result {
  const p = plan(req);
  const firewalld = useFirewalld(req.config);
  const bound = firewalld ? addSources(p.zone, [...p.addrs.values()].flat()) : [];
  const done: Family[] = [];
  try {
    for (const [family, cidrs] of p.addrs) {
      const own = firewalld ? [] : containerRulesOf(cidrs);
      iptablesTransact(family, "filter", (dump) =>
        ensureScript(parseDump(dump, "filter"), sharedRules(p, firewalld), own),
      );
      done.push(family);
    }
  } catch (e) {
    // Undo this container's rules in the families already done; shared chains stay, as they would.
    if (!firewalld) tryQuietly(() => deleteContainerRules(p, done));
    // Only what this ADD bound: a source that was already in the zone belongs to a live attachment.
    if (firewalld) removeSources(p.zone, bound);
    throw e;
  }
  return p.prev!;
}

function delRules(req: Request<FirewallConfig>) {
  const p = plan(req, true);
  if (p.addrs.size === 0) return;
  // firewalld keeps sources only at runtime: if it is not running there is nothing to remove.
  const firewalld = req.config.backend !== "iptables" && firewalldRunning();
  if (firewalld) removeSources(p.zone, [...p.addrs.values()].flat());
  // The container's iptables rules go whatever the backend, so switching backends never leaks them.
  try {
    deleteContainerRules(p, p.addrs.keys());
  } catch (e) {
    if (!firewalld) throw e;
  }
}

const firewall: PluginImpl<FirewallConfig> = {
  parseConfig: (raw) => parseWith(FirewallConfig, raw),

  add: (req) => netfilterLocked(() => addRules(req)),
  del: (req) => netfilterLocked(() => delRules(req)),

  check(req) {
    const p = plan(req);
    const firewalld = useFirewalld(req.config);
    if (firewalld) {
      const bad = sourcesOutsideZone(p.zone, [...p.addrs.values()].flat());
      if (bad.length > 0)
        throw new CniError(
          Code.Internal,
          `firewall CHECK: addresses not in firewalld zone ${p.zone}: ${bad.join(", ")}`,
        );
    }
    for (const [family, cidrs] of p.addrs) {
      const state = parseDump(iptablesSave(family, "filter"), "filter");
      const absent = missing(state, sharedRules(p, firewalld), firewalld ? [] : containerRulesOf(cidrs));
      if (absent.length > 0) {
        throw new CniError(
          Code.Internal,
          `firewall CHECK: expected ${family === 4 ? "iptables" : "ip6tables"} ${absent[0]} not found`,
          absent.join("; "),
        );
      }
    }
  },
};
export default firewall;

function tryQuietly(f: () => void) {
  try {
    f();
  } catch {
    // Rollback is best effort; the original error is what the runtime needs to see.
  }
}
