// Bundles the suite with esbuild (dist/bundle/main.js and its chunks, runnable by plain Node),
// compiles it with `bun build --compile` into one self-contained executable, and hard-links it
// under each plugin name.
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { linkSync, mkdirSync, readFileSync, rmSync, renameSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(fileURLToPath(import.meta.url));
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
// Link names come from the registry itself (bundled alone, its lazy imports left out), so adding
// an entry there is all it takes.
async function registryNames() {
  const out = await build({
    entryPoints: [join(root, "plugins", "index.ts")],
    bundle: true,
    write: false,
    format: "esm",
    platform: "node",
    logLevel: "warning",
    plugins: [
      {
        name: "registry-only",
        setup: (b) =>
          b.onResolve({ filter: /^\./ }, (a) =>
            a.kind === "dynamic-import" ? { path: a.path, external: true } : undefined,
          ),
      },
    ],
  });
  const mod = await import(`data:text/javascript;base64,${Buffer.from(out.outputFiles[0].text).toString("base64")}`);
  return mod.REGISTRY.map((e) => e.name);
}
const NAMES = await registryNames();

// TSCNI_DIST lets parallel work build into separate trees.
const dist = process.env.TSCNI_DIST ? join(root, process.env.TSCNI_DIST) : join(root, "dist");
const bin = join(dist, "bin");
mkdirSync(bin, { recursive: true });

// zod needs no trimming here: lib/cni/zod.ts re-exports zod/mini and schemas import it as a
// namespace, so esbuild keeps only the functions used (no locale but English, no JSON-Schema
// importer). The classic API's `z` object defeated that and took a plugin to cut.

// Split into chunks at the registry's lazy imports, and compiled with --splitting too: a process
// loads the code of the plugin it runs as (and what that imports), not the whole suite. Measured
// on loopback ADD, which needs no zod: 11.5 ms against 18 ms as one bundle (a Go plugin: 3.6 ms).
const bundleDir = join(dist, "bundle");
rmSync(bundleDir, { recursive: true, force: true });
rmSync(join(dist, "tscni.mjs"), { force: true }); // the single bundle of earlier builds
await build({
  entryPoints: [join(root, "main.ts")],
  outdir: bundleDir,
  splitting: true,
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  external: ["bun:ffi"],
  define: { __PKG_VERSION__: JSON.stringify(`version ${pkg.version}`) },
  legalComments: "none",
  logLevel: "warning",
});

const exe = join(bin, "tscni");
const tmp = `${exe}.tmp`;
execFileSync(
  join(root, "node_modules", ".bin", "bun"),
  [
    "build",
    "--compile",
    "--format=esm",
    "--splitting",
    "--minify",
    "--bytecode",
    "--no-compile-autoload-dotenv",
    "--no-compile-autoload-bunfig",
    join(bundleDir, "main.js"),
    "--outfile",
    tmp,
  ],
  { stdio: ["ignore", "ignore", "inherit"] },
);
renameSync(tmp, exe);
for (const name of NAMES) {
  const link = join(bin, name);
  rmSync(link, { force: true });
  linkSync(exe, link);
}
console.log(`built ${exe} (+ links: ${NAMES.join(", ")})`);
