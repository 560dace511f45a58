#!/usr/bin/env node
// The layering rules of docs/architecture.md, checked over the import graph of every TypeScript
// file (type-only imports included: a type that crosses a layer is a dependency too):
//   - no import cycle anywhere;
//   - nothing in lib/ imports plugins/ or main.ts;
//   - lib/kernel/ imports nothing of the suite outside lib/kernel/ but the leaf helpers
//     (lib/hash.ts, lib/sleep.ts): the kernel layer knows nothing of CNI;
//   - lib/netfilter/ imports only lib/netfilter/, lib/kernel/, lib/ip/ and the leaf helpers: rule
//     sets are plain data, and the plugins map its errors to CNI errors;
//   - a plugin's folder imports no other plugin's folder;
//   - zod is loaded only through lib/cni/zod.ts (its jitless setting and English messages must
//     come first), and as a namespace (`import * as z`): a named `z` would bundle all of zod/mini.
// Exits 1 listing every violation. `node scripts/check-imports.mjs` (npm run lint runs it).
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const root = resolve(dirname(new URL(import.meta.url).pathname), "..");
const DIRS = ["lib", "plugins", "test", "bench", "scripts"];
const LEAF_HELPERS = new Set(["lib/hash.ts", "lib/sleep.ts"]);

function walk(dir, out) {
  for (const d of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, d.name);
    if (d.isDirectory()) {
      if (d.name !== "node_modules" && d.name !== "corpus") walk(p, out);
    } else if (/\.(ts|mts|mjs)$/.test(d.name)) out.push(p);
  }
  return out;
}

const files = [join(root, "main.ts"), join(root, "build.mjs"), ...DIRS.flatMap((d) => walk(join(root, d), []))];
const rel = (p) => relative(root, p);
// Static imports and re-exports (with or without `type`), and dynamic import("...").
const IMPORT =
  /(?:^|\n)\s*(?:import|export)\s+(?:type\s+)?(?:[^'";]*?\sfrom\s+)?["']([^"']+)["']|\bimport\(\s*["']([^"']+)["']\s*\)/g;

const graph = new Map();
const problems = [];
const ZOD =
  /(?:^|\n)\s*import\s+(?!type\s)[^;]*?from\s+["']zod(?:\/[^"']*)?["']|\bimport\(\s*["']zod(?:\/[^"']*)?["']\s*\)/;
const NAMED_Z = /(?:^|\n)\s*import\s+(?!type\s)\{[^}]*\bz\b[^}]*\}\s*from\s+["'][^"']*\/zod\.ts["']/;
for (const file of files) {
  const text = readFileSync(file, "utf8");
  const deps = new Set();
  if (/^(lib|plugins)\//.test(rel(file)) && rel(file) !== "lib/cni/zod.ts" && ZOD.test(text)) {
    problems.push(`${rel(file)} imports zod directly: use lib/cni/zod.ts`);
  }
  if (NAMED_Z.test(text)) {
    problems.push(`${rel(file)} imports { z } from lib/cni/zod.ts: use import * as z (tree-shaking)`);
  }
  for (const m of text.matchAll(IMPORT)) {
    const spec = m[1] ?? m[2];
    if (!spec.startsWith(".")) continue;
    const target = resolve(dirname(file), spec);
    try {
      if (statSync(target).isFile()) deps.add(rel(target));
    } catch {
      // a generated or missing file: typecheck reports it
    }
  }
  graph.set(rel(file), deps);
}

const pluginOf = (f) => /^plugins\/([^/]+)\//.exec(f)?.[1];
for (const [file, deps] of graph) {
  for (const dep of deps) {
    if (file.startsWith("lib/") && (dep.startsWith("plugins/") || dep === "main.ts"))
      problems.push(`${file} imports ${dep}: lib/ must not depend on plugins`);
    if (file.startsWith("lib/kernel/") && !dep.startsWith("lib/kernel/") && !LEAF_HELPERS.has(dep))
      problems.push(`${file} imports ${dep}: the kernel layer must not depend on the layers above it`);
    if (file.startsWith("lib/netfilter/") && !/^lib\/(netfilter|kernel|ip)\//.test(dep) && !LEAF_HELPERS.has(dep))
      problems.push(`${file} imports ${dep}: lib/netfilter may only depend on lib/kernel and lib/ip`);
    const [a, b] = [pluginOf(file), pluginOf(dep)];
    if (a && b && a !== b) problems.push(`${file} imports ${dep}: a plugin must not import another plugin`);
  }
}

// Tarjan's strongly connected components: each one with more than one file (or a self-import) is a cycle.
let index = 0;
const stack = [];
const state = new Map();
function strongConnect(v) {
  state.set(v, { index, low: index, onStack: true });
  index++;
  stack.push(v);
  for (const w of graph.get(v) ?? []) {
    if (!graph.has(w)) continue;
    if (!state.has(w)) {
      strongConnect(w);
      state.get(v).low = Math.min(state.get(v).low, state.get(w).low);
    } else if (state.get(w).onStack) state.get(v).low = Math.min(state.get(v).low, state.get(w).index);
  }
  if (state.get(v).low === state.get(v).index) {
    const component = [];
    let w;
    do {
      w = stack.pop();
      state.get(w).onStack = false;
      component.push(w);
    } while (w !== v);
    if (component.length > 1 || graph.get(v).has(v)) problems.push(`import cycle: ${component.sort().join(" <-> ")}`);
  }
}
for (const v of graph.keys()) if (!state.has(v)) strongConnect(v);

if (problems.length > 0) {
  for (const p of problems) console.error(p);
  console.error(`check-imports: ${problems.length} problem(s) in ${graph.size} files`);
  process.exit(1);
}
console.log(`check-imports: ${graph.size} files, no cycle, layers respected`);
