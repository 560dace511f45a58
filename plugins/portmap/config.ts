import * as z from "../../lib/cni/zod.ts";
import { isObject } from "../../lib/is-object.ts";
import { BaseConfig, foldKeys, parseWith } from "../../lib/cni/config.ts";
import { CniError, Code } from "../../lib/cni/errors.ts";
import type { Result } from "../../lib/cni/result.ts";
import { formatIP, parseCIDR, parseIP, type CIDR } from "../../lib/ip/address.ts";
import { NETFILTER_BACKENDS, type NetfilterBackend } from "../../lib/netfilter/backend.ts";

/**
 * Port-mapping configuration and the facts both backends derive from it: which mappings apply to
 * which address family, the container addresses, address text as iptables and nft print it. Pure
 * data, no kernel access, and light to load: a call without mappings stops after parsing this.
 */
export const PROTOCOLS = ["tcp", "udp", "sctp"] as const;
export type Protocol = (typeof PROTOCOLS)[number];

const port = z
  .number({ error: "must be a number" })
  .check(
    z.int({ error: "must be an integer" }),
    z.minimum(1, { error: "must be between 1 and 65535" }),
    z.maximum(65535, { error: "must be between 1 and 65535" }),
  );

export const PortMapping = z.object({
  hostPort: port,
  containerPort: port,
  // A missing protocol means tcp, as for `docker run -p`; anything else must be a protocol we can
  // program in both iptables and nftables.
  protocol: z.pipe(
    z.pipe(
      z.nullish(z.string({ error: "must be a string" })),
      z.transform((p) => (p ? p.toLowerCase() : "tcp")),
    ),
    z.enum(PROTOCOLS, { error: `must be one of ${PROTOCOLS.join(", ")}` }),
  ),
  // Kept in canonical text so rules compare equal to what iptables-save and nft print.
  hostIP: z.optional(
    z.pipe(
      z.nullish(z.string({ error: "must be a string" })),
      z.transform((ip, ctx) => {
        if (!ip) return undefined;
        const a = parseIP(ip);
        if (!a) {
          ctx.issues.push({ code: "custom", message: `invalid IP address ${JSON.stringify(ip)}`, input: ip });
          return z.NEVER;
        }
        return formatIP(a);
      }),
    ),
  ),
});
export type PortMapping = z.infer<typeof PortMapping>;

// Match words end up inside iptables-restore and nft scripts, which are line based.
const condition = z
  .string()
  .check(z.refine((s) => !/[\n\r\0;#]/.test(s), { error: "must not contain newlines, ';' or '#'" }));
const chainName = /^[A-Za-z0-9_.-]{1,28}$/;

export const PortmapConfig = z
  .extend(BaseConfig, {
    snat: z.nullish(z.boolean()),
    markMasqBit: z.nullish(
      z
        .number()
        .check(
          z.int(),
          z.minimum(0, { error: "must be between 0 and 31" }),
          z.maximum(31, { error: "must be between 0 and 31" }),
        ),
    ),
    externalSetMarkChain: z.nullish(z.string().check(z.regex(chainName, { error: "must be an iptables chain name" }))),
    conditionsV4: z.nullish(z.array(condition)),
    conditionsV6: z.nullish(z.array(condition)),
    masqAll: z.nullish(z.boolean()),
    backend: z.nullish(z.enum(NETFILTER_BACKENDS, { error: 'must be "iptables" or "nftables"' })),
    runtimeConfig: z.optional(z.looseObject({ portMappings: z.nullish(z.array(PortMapping)) })),
  })
  .check(
    z.superRefine((c, ctx) => {
      if (c.markMasqBit != null && c.externalSetMarkChain != null) {
        ctx.addIssue({
          code: "custom",
          path: ["externalSetMarkChain"],
          message: "cannot specify both externalSetMarkChain and markMasqBit",
        });
      }
      const seen = new Map<string, number>();
      (c.runtimeConfig?.portMappings ?? []).forEach((m, i) => {
        const key = `${m.hostPort}/${m.protocol}/${m.hostIP ?? ""}`;
        const first = seen.get(key);
        if (first !== undefined) {
          ctx.addIssue({
            code: "custom",
            path: ["runtimeConfig", "portMappings", i],
            message: `duplicate of portMappings.${first}: hostPort ${m.hostPort}/${m.protocol}${m.hostIP ? ` on ${m.hostIP}` : ""} mapped twice`,
          });
        } else seen.set(key, i);
      });
      if (c.backend) {
        const foreign = backendSpecificOptions(c, c.backend === "iptables" ? "nftables" : "iptables");
        if (foreign.length > 0) {
          ctx.addIssue({
            code: "custom",
            path: [foreign[0]!],
            message: `${c.backend} backend was requested but configuration contains ${c.backend === "iptables" ? "nftables" : "iptables"}-specific options [${foreign.join(" ")}]`,
          });
        }
      }
    }),
  );
export type PortmapConfig = z.infer<typeof PortmapConfig>;

// Go's encoding/json matches object keys case-insensitively, so the reference accepts the
// capitalised keys containerd's CRI plugin sends ({"HostPort": 8080, ...}); so do we.
const TOP_KEYS = [
  "snat",
  "markMasqBit",
  "externalSetMarkChain",
  "conditionsV4",
  "conditionsV6",
  "masqAll",
  "backend",
  "runtimeConfig",
  "prevResult",
];
const RUNTIME_KEYS = ["portMappings"];
const MAPPING_KEYS = ["hostPort", "containerPort", "protocol", "hostIP"];

export function parsePortmapConfig(raw: Record<string, unknown>): PortmapConfig {
  const top = foldKeys(raw, TOP_KEYS) as Record<string, unknown>;
  const rc = foldKeys(top.runtimeConfig, RUNTIME_KEYS);
  if (isObject(rc) && Array.isArray(rc.portMappings))
    rc.portMappings = rc.portMappings.map((m) => foldKeys(m, MAPPING_KEYS));
  if (rc !== undefined) top.runtimeConfig = rc;
  return parseWith(PortmapConfig, top);
}

export function mappingsOf(c: PortmapConfig): PortMapping[] {
  return c.runtimeConfig?.portMappings ?? [];
}

/**
 * Options only one backend understands. Conditions are classified like the reference: by the first
 * character of the first word, '-' or '!' meaning iptables syntax.
 */
function backendSpecificOptions(
  c: Pick<PortmapConfig, "externalSetMarkChain" | "conditionsV4" | "conditionsV6">,
  backend: NetfilterBackend,
): string[] {
  const out: string[] = [];
  if (backend === "iptables" && c.externalSetMarkChain != null) out.push("externalSetMarkChain");
  for (const key of ["conditionsV4", "conditionsV6"] as const) {
    const first = c[key]?.[0]?.[0];
    if (first === undefined) continue;
    const iptablesSyntax = first === "-" || first === "!";
    if (iptablesSyntax === (backend === "iptables")) out.push(key);
  }
  return out;
}

/**
 * The backend for this call: the configured one, else `auto()` (the reference's default, decided by
 * the caller from what is installed). Called only when there is work to do.
 */
export function selectBackend(c: PortmapConfig, auto: () => NetfilterBackend): NetfilterBackend {
  if (c.backend) return c.backend;
  const backend = auto();
  const foreign = backendSpecificOptions(c, backend === "iptables" ? "nftables" : "iptables");
  if (foreign.length > 0) {
    throw new CniError(
      Code.InvalidConfig,
      `${backend} backend was selected but configuration contains ${backend === "iptables" ? "nftables" : "iptables"}-specific options [${foreign.join(" ")}]; set "backend"`,
    );
  }
  return backend;
}

/** The container's first IPv4 and first IPv6 address (with prefix), chosen as the reference does. */
export interface ContainerAddrs {
  v4?: CIDR;
  v6?: CIDR;
}

export function containerAddresses(prev: Result, ifname: string): ContainerAddrs {
  const out: ContainerAddrs = {};
  const ifaces = prev.interfaces ?? [];
  for (const ip of prev.ips ?? []) {
    const cidr = parseCIDR(ip.address);
    if (!cidr) throw new CniError(Code.DecodingFailure, `prevResult: invalid address ${JSON.stringify(ip.address)}`);
    const fam = cidr.ip.family === 6 ? "v6" : "v4";
    if (out[fam]) continue;
    // Skip addresses on interfaces known not to be this attachment's container interface.
    if (ip.interface !== undefined && ip.interface < ifaces.length) {
      const iface = ifaces[ip.interface]!;
      if (iface.name !== ifname || !iface.sandbox) continue;
    }
    out[fam] = cidr;
  }
  return out;
}

export interface FamilyMapping extends PortMapping {
  /** Destination address to match, absent for "any local address". */
  matchDst?: string;
}

/**
 * The mappings that apply to one address family: a hostIP of the other family excludes the
 * mapping, and an unspecified hostIP (0.0.0.0, ::) means "any address of this family".
 */
export function mappingsForFamily(mappings: readonly PortMapping[], v6: boolean): FamilyMapping[] {
  const out: FamilyMapping[] = [];
  for (const m of mappings) {
    if (!m.hostIP) {
      out.push({ ...m });
      continue;
    }
    const a = parseIP(m.hostIP)!;
    if ((a.family === 6) !== v6) continue;
    out.push(a.n === 0n ? { ...m } : { ...m, matchDst: m.hostIP });
  }
  return out;
}

/** Attachments the runtime still holds, from a GC request (with libcni's older key as fallback). */
export function validAttachments(raw: Record<string, unknown>): Set<string> {
  const list = raw["cni.dev/valid-attachments"] ?? raw["cni.dev/attachments"];
  const parsed = parseWith(z.nullish(z.array(z.looseObject({ containerID: z.string() }))), list);
  return new Set((parsed ?? []).map((a) => a.containerID));
}

/** IPv6 needs brackets around the address in ip:port targets. */
export function hostPortTarget(addr: string, port: number, v6: boolean): string {
  return v6 ? `[${addr}]:${port}` : `${addr}:${port}`;
}
