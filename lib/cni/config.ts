import { isObject } from "../is-object.ts";
import * as z from "./zod.ts";
import { CniError, Code } from "./errors.ts";
import { DNSSchema } from "./result-schema.ts";

/** Keys every plugin configuration may carry; plugins extend this with their own. */
export const BaseConfig = z.looseObject({
  cniVersion: z._default(z.string(), "0.1.0"),
  name: z.string(),
  type: z.optional(z.string()),
  prevResult: z.optional(z.unknown()),
  runtimeConfig: z.optional(z.record(z.string(), z.unknown())),
  args: z.optional(z.record(z.string(), z.unknown())),
  capabilities: z.optional(z.record(z.string(), z.unknown())),
  ipam: z.optional(z.looseObject({ type: z.string() })),
  dns: z.optional(DNSSchema),
  logFile: z.optional(z.string()),
});
export type BaseConfig = z.infer<typeof BaseConfig>;

const AttachmentList = z.optional(z.array(z.looseObject({ containerID: z.string(), ifname: z.string() })));

/**
 * The GC keys of plugins that keep state: the runtime's attachments to keep, under the spec's key
 * and the key of an earlier spec draft.
 */
export const GcAttachmentKeys = {
  "cni.dev/valid-attachments": AttachmentList,
  "cni.dev/attachments": AttachmentList,
};

/** The attachments a GC must keep, or undefined when the runtime sent no list. */
export function validAttachmentsOf(c: {
  "cni.dev/valid-attachments"?: { containerID: string; ifname: string }[];
  "cni.dev/attachments"?: { containerID: string; ifname: string }[];
}) {
  return c["cni.dev/valid-attachments"] ?? c["cni.dev/attachments"];
}

/** Validates with a zod schema; the error names the offending field and what was wrong with it. */
export function parseWith<S extends z.ZodMiniType>(
  schema: S,
  raw: unknown,
  code: number = Code.InvalidConfig,
): z.infer<S> {
  const r = schema.safeParse(raw);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const field = issue.path.length > 0 ? issue.path.map(String).join(".") : "(config)";
  throw new CniError(
    code,
    `invalid network config: ${field}: ${issue.message}`,
    r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; "),
  );
}

/**
 * An object's keys as Go's encoding/json matches them against struct fields: the exact key first,
 * else a case-insensitive match; later keys win. The reference plugins read runtime arguments this
 * way, and containerd's CRI plugin sends some capitalised ({"HostPort": ...}, {"IngressRate": ...}).
 */
export function foldKeys(value: unknown, keys: readonly string[]): unknown {
  if (!isObject(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    const canon = keys.includes(k) ? k : (keys.find((c) => c.toLowerCase() === k.toLowerCase()) ?? k);
    out[canon] = v;
  }
  return out;
}
