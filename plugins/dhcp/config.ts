import { BaseConfig, parseWith } from "../../lib/cni/config.ts";
import { CniError, Code } from "../../lib/cni/errors.ts";
import * as z from "../../lib/cni/zod.ts";
import { Opt } from "./packet.ts";

/**
 * The dhcp IPAM configuration, read by the plugin (for the socket path) and again by the daemon
 * from the stdin bytes the plugin forwards (for the options), as the reference splits it.
 */

export const DEFAULT_SOCKET = "/run/cni/dhcp.sock";

const OptionName = z.union([z.string(), z.number()]);

const DhcpSchema = z.extend(BaseConfig, {
  ipam: z.looseObject({
    type: z.string(),
    daemonSocketPath: z.optional(z.string()),
    request: z.optional(z.array(z.looseObject({ option: OptionName, skipDefault: z.optional(z.boolean()) }))),
    provide: z.optional(
      z.array(z.looseObject({ option: OptionName, value: z.optional(z.string()), fromArg: z.optional(z.string()) })),
    ),
    priority: z.optional(z.number().check(z.int(), z.minimum(0))),
  }),
});
export type DhcpConfig = z.infer<typeof DhcpSchema>;

export const parseDhcpConfig = (raw: unknown): DhcpConfig => parseWith(DhcpSchema, raw);

/** dhcp-options(5) names the configuration may use instead of numbers (the ones clients set). */
const NAMES: Record<string, number> = {
  "subnet-mask": Opt.SUBNET_MASK,
  routers: Opt.ROUTER,
  "domain-name-servers": Opt.DNS,
  "host-name": Opt.HOST_NAME,
  "domain-name": Opt.DOMAIN_NAME,
  "static-routes": Opt.STATIC_ROUTES,
  "dhcp-lease-time": Opt.LEASE_TIME,
  "dhcp-renewal-time": Opt.RENEWAL_TIME,
  "dhcp-rebinding-time": Opt.REBINDING_TIME,
  "vendor-class-identifier": 60,
  "dhcp-client-identifier": Opt.CLIENT_ID,
  "user-class": 77,
  "classless-static-routes": Opt.CLASSLESS_ROUTES,
};

export function optionCode(o: string | number): number {
  const n = typeof o === "number" ? o : /^\d+$/.test(o) ? Number(o) : NAMES[o];
  if (n === undefined || !Number.isInteger(n) || n < 1 || n > 254)
    throw new CniError(Code.InvalidConfig, `dhcp: unknown or invalid DHCP option "${o}"`);
  return n;
}

/** What the client asks for when the configuration does not say otherwise. */
const DEFAULT_REQUEST = [
  Opt.SUBNET_MASK,
  Opt.ROUTER,
  Opt.DNS,
  Opt.DOMAIN_NAME,
  Opt.STATIC_ROUTES,
  Opt.LEASE_TIME,
  Opt.RENEWAL_TIME,
  Opt.REBINDING_TIME,
  Opt.CLASSLESS_ROUTES,
];

export interface ClientOptions {
  /** Option 55's list. */
  request: number[];
  /** Options the client sends, with their values. */
  provide: [number, Uint8Array][];
}

/** CNI_ARGS as key/value pairs, leniently: `fromArg` may name any key the runtime passes. */
function argsOf(raw: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const piece of raw.split(";")) {
    const at = piece.indexOf("=");
    if (at > 0) out.set(piece.slice(0, at), piece.slice(at + 1));
  }
  return out;
}

export function clientOptions(c: DhcpConfig, cniArgs: string): ClientOptions {
  const asked = (c.ipam.request ?? []).map((r) => ({ code: optionCode(r.option), skip: r.skipDefault === true }));
  const base = asked.some((a) => a.skip) ? [] : DEFAULT_REQUEST;
  const request = [...new Set([...base, ...asked.map((a) => a.code)])];
  const args = argsOf(cniArgs);
  const provide: [number, Uint8Array][] = [];
  for (const p of c.ipam.provide ?? []) {
    const value = p.fromArg !== undefined ? args.get(p.fromArg) : p.value;
    if (value === undefined || value === "") continue; // an absent argument provides nothing
    provide.push([optionCode(p.option), new TextEncoder().encode(value)]);
  }
  return { request, provide };
}
