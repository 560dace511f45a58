import { z } from "zod";

// Every plugin process parses a handful of small objects once: zod's JIT-compiled validators cost
// more to build (about 2 ms per process, measured in the compiled binary) than they ever save.
z.config({ jitless: true });

export { z };
