import { basename } from "node:path";
import { findEntry, findPlugin, REGISTRY } from "./plugins/index.ts";
import { runPlugin, writeStdout } from "./lib/cni/skel.ts";

// One executable, many names: dispatch on the name we were invoked as (argv0 keeps a link's name).
// Under plain Node the name comes from TSCNI_PLUGIN or the first argument instead.
async function main(): Promise<number> {
  let name = process.env.TSCNI_PLUGIN || basename(process.argv0);
  let rest = process.argv.slice(2);
  if (!findEntry(name) && rest[0] && findEntry(rest[0])) {
    name = rest[0];
    rest = rest.slice(1);
  }
  const entry = findEntry(name);
  if (!entry) {
    const names = REGISTRY.map((e) => e.name).join(", ");
    process.stderr.write(`tscni: unknown plugin name "${name}"; link this executable as one of: ${names}\n`);
    return 2;
  }
  if (entry.kind === "command") return entry.run(rest);
  const sub =
    rest[0] !== undefined && entry.subcommands && Object.hasOwn(entry.subcommands, rest[0])
      ? entry.subcommands[rest[0]]
      : undefined;
  if (sub) return sub(rest.slice(1));
  return runPlugin(entry, process.env, findPlugin);
}

main().then(
  (code) => process.exit(code),
  (e) => {
    writeStdout(
      `${JSON.stringify({ cniVersion: "1.1.0", code: 999, msg: `internal error: ${(e as Error)?.message ?? e}`, details: "" })}\n`,
    );
    process.exit(1);
  },
);
