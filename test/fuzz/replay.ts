/**
 * Replays one binary fuzz case verbosely, in a fresh sandbox:
 *
 *   TSCNI_BIN=$PWD/dist/bin node --import tsx test/fuzz/replay.ts <seed> <plugin> <index>
 *
 * prints the case, each plugin run (the ADD, then the DEL a runtime would send after a success)
 * with its exit code, stdout and stderr, then what the node and the data directories hold.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { withSandbox } from "../helpers/sandbox.ts";
import { runNamedAsync } from "../helpers/hostile.ts";
import { fileTree } from "../helpers/node-state.ts";
import { describe, makeCase, type FuzzPlugin } from "./harness.ts";
import { fuzzNode } from "./node.ts";

const [seedText, plugin, indexText] = process.argv.slice(2);
if (!seedText || !plugin || !indexText) {
  process.stderr.write("usage: replay.ts <seed> <plugin> <index>\n");
  process.exit(2);
}
const seed = Number(seedText);
await withSandbox("reliab", async (sb) => {
  const { ctrA, ctrB, paths, cwd } = fuzzNode(sb);
  const c = makeCase(seed, plugin as FuzzPlugin, Number(indexText), paths(plugin));
  console.log(describe(c, seed));
  const show = (what: string, r: Awaited<ReturnType<typeof runNamedAsync>>) =>
    console.log(
      `\n${what}: exit ${r.code}${r.timedOut ? " (timed out)" : ""}\nstdout: ${r.stdout.trim()}\nstderr: ${r.stderr.trim()}`,
    );
  const run = (env: Record<string, string>) =>
    runNamedAsync(sb, c.plugin, env, c.config, process.env.PATH ?? "", 20_000, cwd);
  const first = await run(c.env);
  show(c.env.CNI_COMMAND ?? "(no command)", first);
  if (first.code === 0 && c.env.CNI_COMMAND === "ADD") show("DEL", await run({ ...c.env, CNI_COMMAND: "DEL" }));
  console.log("\nnode links:", sb.inNode(["ip", "-br", "link"]).stdout);
  console.log("container links:", sb.inNs(c.plugin === "tuning" ? ctrB.name : ctrA.name, ["ip", "-br", "link"]).stdout);
  for (const dir of ["ipam", "ipam2", "tuning"].map((d) => join(sb.tmp, d)))
    if (existsSync(dir)) console.log(`${dir}:`, fileTree(dir).join(" "));
});
