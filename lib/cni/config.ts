import { z } from "./zod.ts";
import { CniError, Code } from "./errors.ts";

/** Keys every plugin configuration may carry; plugins extend this with their own. */
export const BaseConfig = z.looseObject({
  cniVersion: z.string().default("0.1.0"),
  name: z.string(),
  type: z.string().optional(),
  prevResult: z.unknown().optional(),
  runtimeConfig: z.record(z.string(), z.unknown()).optional(),
  args: z.record(z.string(), z.unknown()).optional(),
  capabilities: z.record(z.string(), z.unknown()).optional(),
  ipam: z.looseObject({ type: z.string() }).optional(),
  dns: z
    .object({
      nameservers: z.array(z.string()).optional(),
      domain: z.string().optional(),
      search: z.array(z.string()).optional(),
      options: z.array(z.string()).optional(),
    })
    .optional(),
  logFile: z.string().optional(),
});
export type BaseConfig = z.infer<typeof BaseConfig>;

/** Validates with a zod schema; the error names the offending field and what was wrong with it. */
export function parseWith<S extends z.ZodType>(schema: S, raw: unknown, code: number = Code.InvalidConfig): z.infer<S> {
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
