import { BaseConfig, parseWith } from "../../lib/cni/config.ts";
import { CniError, Code } from "../../lib/cni/errors.ts";
import * as z from "../../lib/cni/zod.ts";
import { formatNetwork } from "../../lib/ip/address.ts";
import { subnetRange, type SubnetEnv } from "./subnet-env.ts";

/** flannel-io/cni-plugin's keys: where subnet.env and the saved delegate configs are, and the delegate's base. */
const FlannelConfig = z.extend(BaseConfig, {
  subnetFile: z._default(z.string(), "/run/flannel/subnet.env"),
  dataDir: z._default(z.string(), "/var/lib/cni/flannel"),
  delegate: z.optional(z.looseObject({})),
  // The delegate's IPAM base: its type defaults to host-local, so none is required here.
  ipam: z.optional(z.looseObject({ type: z.optional(z.string()) })),
});
export type Config = z.infer<typeof FlannelConfig>;

export function parseConfig(raw: Record<string, unknown>): Config {
  const c = parseWith(FlannelConfig, raw);
  // The delegate's name and IPAM are the plugin's to set, as upstream refuses them.
  if (c.delegate?.name !== undefined)
    throw new CniError(Code.InvalidConfig, '"delegate" field must not contain "name"');
  if (c.delegate?.ipam !== undefined)
    throw new CniError(Code.InvalidConfig, '"delegate" field must not contain "ipam"');
  return c;
}

/**
 * The delegate's configuration, as upstream builds it: bridge by default, the network's name and
 * version, masquerade only when the agent does not, the agent's MTU, the gateway on the bridge,
 * host-local over this node's subnet(s) with a route to each cluster network.
 */
export function delegateConfig(c: Config, env: SubnetEnv): Record<string, unknown> {
  const d: Record<string, unknown> = { ...c.delegate };
  d.type ??= "bridge";
  d.name = c.name;
  d.cniVersion = c.cniVersion;
  d.ipMasq ??= !env.ipMasq;
  d.mtu ??= env.mtu;
  if (d.type === "bridge") d.isGateway ??= true;
  if (c.runtimeConfig !== undefined) d.runtimeConfig = c.runtimeConfig;
  const base = { ...c.ipam };
  const routes = Array.isArray(base.routes) ? [...base.routes] : [];
  d.ipam = {
    ...base,
    type: base.type ?? "host-local",
    ranges: env.subnets.map((s) => [subnetRange(s)]),
    routes: [...routes, ...env.networks.map((n) => ({ dst: formatNetwork(n) }))],
  };
  return d;
}
