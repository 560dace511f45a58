import { BaseConfig, parseWith } from "../../lib/cni/config.ts";
import * as z from "../../lib/cni/zod.ts";

/** The sbr config: the reference's one key of its own, a fixed `table` instead of the first free one. */
const SbrConfig = z.extend(BaseConfig, {
  table: z.optional(z.number().check(z.int(), z.minimum(1), z.maximum(2 ** 32 - 1))),
});

export type Config = z.infer<typeof SbrConfig>;

export const parseConfig = (raw: Record<string, unknown>): Config => parseWith(SbrConfig, raw);
