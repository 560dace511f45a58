import { BaseConfig, parseWith } from "../../lib/cni/config.ts";
import { z } from "../../lib/cni/zod.ts";

/** The sbr config: the reference's one key of its own, a fixed `table` instead of the first free one. */
const SbrConfig = BaseConfig.extend({
  table: z
    .number()
    .int()
    .min(1)
    .max(2 ** 32 - 1)
    .optional(),
});

export type Config = z.infer<typeof SbrConfig>;

export const parseConfig = (raw: Record<string, unknown>): Config => parseWith(SbrConfig, raw);
