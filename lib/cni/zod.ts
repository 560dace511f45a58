import { config } from "zod/mini";
import en from "zod/v4/locales/en.js";

// zod/mini, not zod's classic API: the same schemas, parsers and z.infer types, but written as
// functions instead of methods, so the bundle carries only the parts used (about 50 KB against
// 190-360 KB), and every plugin process that parses a config loads and evaluates all of it at
// start-up. Measured in docs/performance.md.
//
// Import it as a namespace, `import * as z from ".../lib/cni/zod.ts"`: a `z` object re-exported
// from here would keep all of zod/mini in the bundle (scripts/check-imports.mjs refuses
// `import { z }`). Classic spellings and their mini forms:
//   s.optional() / .nullable() / .nullish()    z.optional(s) / z.nullable(s) / z.nullish(s)
//   s.default(v)                               z._default(s, v)
//   s.array()                                  z.array(s)
//   Base.extend({...})                         z.extend(Base, {...})
//   z.object({...}).passthrough()              z.looseObject({...})
//   z.number().int().min(a).max(b)             z.number().check(z.int(), z.minimum(a), z.maximum(b))
//   z.string().min(n) / .max(n) (and arrays)   z.string().check(z.minLength(n)) / z.maxLength(n)
//   .nonnegative() .regex(r, m) .trim()        .check(z.nonnegative(), z.regex(r, m), z.trim())
//   .refine(f, m) / .superRefine(f)            .check(z.refine(f, m)) / .check(z.superRefine(f))
//   s.transform(f) / s.pipe(t)                 z.pipe(s, z.transform(f)) / z.pipe(s, t)
//   z.ZodType / z.ZodError (types)             z.ZodMiniType / z.core.$ZodError
// Error texts: zod/mini loads no locale, so issues would only say "Invalid input"; the English
// messages are loaded here, the ones classic zod printed and users and tests see.
//
// Every plugin process parses a handful of small objects once: zod's JIT-compiled validators cost
// more to build (about 2 ms per process, measured in the compiled binary) than they ever save.
config({ jitless: true, ...en() });

export * from "zod/mini";
