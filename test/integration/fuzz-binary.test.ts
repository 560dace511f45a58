import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { type Sandbox, sandboxed } from "../helpers/sandbox.ts";
import { LONG, runSeed } from "../helpers/reliability.ts";
import { fileTree } from "../helpers/node-state.ts";
import { CRASH, runNamedAsync } from "../helpers/hostile.ts";
import { FUZZ_PLUGINS, describe, makeCase, type FuzzCase } from "../fuzz/harness.ts";
import { fuzzNode, type FuzzNode } from "../fuzz/node.ts";

const inSandbox = sandboxed(test, "reliab");

/**
 * Fuzzing through the real executables, with real effects in a sandbox node: mutated configs and
 * environments for every plugin. Each run must end in success or a CNI error object with exit 1,
 * within a time bound, with no stack trace; a successful ADD is followed by the DEL a runtime
 * would send, which must succeed. After every case the node must hold nothing of a container: no
 * veth toward a container, no iptables or nft rule naming a container address, chain or ID, no
 * reservation or saved-originals file, nothing new in the container namespace, no file written
 * outside the data directories.
 *
 * 50 cases per plugin by default, 400 with TSCNI_LONG=1; TSCNI_SEED=<n> replays a run.
 */
const PER_PLUGIN = LONG ? 400 : 50;
const RUN_TIMEOUT_MS = 20_000;
/**
 * What the node may keep of a container: nothing that matches its addresses, names its chains or
 * its ID. (Per-bridge rules, like the firewall's isolation rules, stay by design; a fuzzed bridge
 * may even be called "10.63.0.300", so addresses count only where rules match or rewrite them.)
 */
const TRACE =
  /(?:-[sd]|--to-destination|saddr|daddr|\bto)\s+(?:!=?\s+)?\[?(?:10\.63\.|fd63:)|CNI-DN-|CNI-SN-|CNI-[0-9a-f]{24}\b|id: \\?"fz-|fz-[a-z-]+-\d+/;

/** One process for the node's whole state: netfilter of both families, nft, links. */
function nodeDump(sb: Sandbox) {
  const script = 'iptables-save; echo "@@"; ip6tables-save; echo "@@"; nft list ruleset; echo "@@"; ip -d -j link show';
  const [v4, v6, nft, links] = sb.inNode(["sh", "-c", script]).stdout.split("@@\n");
  return { netfilter: `${v4}\n${v6}\n${nft}`, links: JSON.parse(links!) as LinkJson[] };
}

interface LinkJson {
  ifname: string;
  ifindex: number;
  link_index?: number;
  link_netnsid?: number;
  linkinfo?: { info_kind?: string };
}

/** Veths toward a container (a peer in another namespace); a VLAN gateway pair (<bridge>.<vlan>) is the node's own. */
function containerVeths(links: LinkJson[]): string[] {
  const byIndex = new Map(links.map((l) => [l.ifindex, l]));
  return links
    .filter((l) => l.linkinfo?.info_kind === "veth")
    .filter((l) => !/\.\d+$/.test(l.ifname) && !/\.\d+$/.test(byIndex.get(l.link_index ?? -1)?.ifname ?? ""))
    .map((l) => l.ifname);
}

/** Reservation and saved-originals files under the data directories. */
function stateFiles(dirs: readonly string[]): string[] {
  const out: string[] = [];
  for (const dir of dirs) {
    if (!existsSync(dir) || !statSync(dir).isDirectory()) continue;
    for (const f of fileTree(dir)) {
      const base = f.split("/").pop()!;
      if ((/^[0-9a-f.:]+$/i.test(base) && /[.:]/.test(base)) || base.endsWith(".json")) out.push(join(dir, f));
    }
  }
  return out;
}

const containerLinks = (sb: Sandbox, ns: string) =>
  sb
    .inNs(ns, ["ip", "-o", "link", "show"])
    .stdout.split("\n")
    .filter(Boolean)
    .map((l) => l.split(":")[1]!.trim())
    .sort();

/** Outcomes per plugin ("ok" or the CNI error code), printed so a run shows how deep it got. */
const outcomes = new Map<string, Map<string, number>>();
function count(plugin: string, outcome: string) {
  const m = outcomes.get(plugin) ?? new Map<string, number>();
  m.set(outcome, (m.get(outcome) ?? 0) + 1);
  outcomes.set(plugin, m);
}

async function runCase(
  node: FuzzNode,
  c: FuzzCase,
  base: { files: string[]; ctrA: string[]; ctrB: string[] },
): Promise<string | undefined> {
  const { sb } = node;
  const run = (env: Record<string, string>) =>
    runNamedAsync(sb, c.plugin, env, c.config, process.env.PATH ?? "", RUN_TIMEOUT_MS, node.cwd);
  const r = await run(c.env);
  count(c.plugin, r.code === 0 ? `ok ${c.env.CNI_COMMAND}` : `code ${r.json?.code}`);
  if (r.timedOut) return `no answer within ${RUN_TIMEOUT_MS} ms`;
  if (CRASH.test(r.stderr) || CRASH.test(r.json?.msg ?? ""))
    return `crash: ${r.json?.msg ?? ""} ${r.stderr.slice(0, 500)}`;
  if (r.code === 1) {
    if (!r.json || typeof r.json.code !== "number" || typeof r.json.msg !== "string")
      return `exit 1 without a CNI error object: ${r.stdout.slice(0, 300)}`;
  } else if (r.code === 0) {
    if (r.stdout.trim() !== "" && (r.json === undefined || typeof r.json !== "object"))
      return `exit 0 with stdout that is not JSON: ${r.stdout.slice(0, 300)}`;
    if (c.env.CNI_COMMAND === "ADD") {
      const del = await run({ ...c.env, CNI_COMMAND: "DEL" });
      if (del.code !== 0)
        return `ADD succeeded, then DEL failed: ${del.stdout.slice(0, 300)} ${del.stderr.slice(0, 300)}`;
    }
  } else return `exit ${r.code}: ${r.stdout.slice(0, 300)} ${r.stderr.slice(0, 300)}`;

  const dump = nodeDump(sb);
  const traces = dump.netfilter.split("\n").filter((l) => TRACE.test(l));
  if (traces.length > 0)
    return `rules left behind (${r.code === 0 ? "after DEL" : "by a failed call"}): ${traces.slice(0, 5).join(" | ")}`;
  const veths = containerVeths(dump.links);
  if (veths.length > 0) return `veth left in the node: ${veths.join(" ")}`;
  const files = stateFiles(node.dataDirs);
  if (files.length > 0) return `state files left: ${files.join(" ")}`;
  if (JSON.stringify(containerLinks(sb, node.ctrA.name)) !== JSON.stringify(base.ctrA))
    return `container A now has ${containerLinks(sb, node.ctrA.name).join(" ")}`;
  if (JSON.stringify(containerLinks(sb, node.ctrB.name)) !== JSON.stringify(base.ctrB))
    return `container B now has ${containerLinks(sb, node.ctrB.name).join(" ")}`;
  const tree = fileTree(sb.tmp, node.skipFiles);
  if (JSON.stringify(tree) !== JSON.stringify(base.files))
    return `files outside the data directories changed: ${tree.filter((f) => !base.files.includes(f)).join(" ")}`;
  if (readdirSync(node.cwd).length > 0)
    return `files created in the working directory: ${readdirSync(node.cwd).join(" ")}`;
  return undefined;
}

inSandbox(
  `fuzz through the executables: ${PER_PLUGIN} mutated cases per plugin end cleanly and leave nothing of a container`,
  async (sb) => {
    const seed = runSeed();
    const machine = () =>
      ["/var/lib/cni/networks", "/run/cni/tuning"].map((d) =>
        existsSync(d) ? `${d}: ${readdirSync(d).sort().join(",")}` : `${d}: absent`,
      );
    const machineBefore = machine();
    const node = fuzzNode(sb);
    const base = {
      files: fileTree(sb.tmp, node.skipFiles),
      ctrA: containerLinks(sb, node.ctrA.name),
      ctrB: containerLinks(sb, node.ctrB.name),
    };
    const problems: string[] = [];
    let runs = 0;
    for (const plugin of FUZZ_PLUGINS) {
      for (let i = 0; i < PER_PLUGIN && problems.length === 0; i++) {
        const c = makeCase(seed, plugin, i, node.paths(plugin));
        const problem = await runCase(node, c, base);
        runs++;
        if (problem) problems.push(`${problem}\n      ${describe(c, seed)}`);
      }
    }
    assert.equal(problems, [], `seed ${seed} (replay with TSCNI_SEED=${seed})`);
    assert.equal(machine(), machineBefore, "nothing written to the machine's own CNI directories");
    console.log(`  binary fuzz: seed ${seed}, ${runs} cases`);
    for (const [plugin, m] of outcomes)
      console.log(
        `    ${plugin}: ${[...m]
          .sort((a, b) => b[1] - a[1])
          .map(([k, v]) => `${k} ×${v}`)
          .join(", ")}`,
      );
  },
);

test.run();
