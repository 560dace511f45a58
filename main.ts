import { basename } from "node:path";
import { PLUGINS } from "./plugins/index.ts";
import { runPlugin, writeStdout } from "./lib/cni/skel.ts";

// One executable, many names: dispatch on the name we were invoked as (argv0 keeps a link's name).
// Under plain Node the name comes from TSCNI_PLUGIN or the first argument instead.
async function main(): Promise<number> {
  let name = process.env.TSCNI_PLUGIN || basename(process.argv0);
  let rest = process.argv.slice(2);
  if (!Object.hasOwn(PLUGINS, name) && name !== "cnitool" && rest[0] && (Object.hasOwn(PLUGINS, rest[0]) || rest[0] === "cnitool")) {
    name = rest[0];
    rest = rest.slice(1);
  }
  if (name === "cnitool") {
    const { cnitool } = await import("./lib/cnitool/main.ts");
    return cnitool(rest);
  }
  const plugin = Object.hasOwn(PLUGINS, name) ? PLUGINS[name] : undefined;
  if (!plugin) {
    process.stderr.write(`tscni: unknown plugin name "${name}"; link this executable as one of: ${[...Object.keys(PLUGINS), "cnitool"].join(", ")}\n`);
    return 2;
  }
  return runPlugin(plugin, process.env, (type) => (Object.hasOwn(PLUGINS, type) ? PLUGINS[type] : undefined));
}

main().then(
  (code) => process.exit(code),
  (e) => {
    writeStdout(JSON.stringify({ cniVersion: "1.1.0", code: 999, msg: `internal error: ${(e as Error)?.message ?? e}`, details: "" }) + "\n");
    process.exit(1);
  },
);
