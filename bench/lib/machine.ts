import { readFileSync } from "node:fs";
import { cpus, loadavg, release } from "node:os";
import { join, resolve } from "node:path";
import { sh } from "../../test/helpers/sandbox.ts";

const ROOT = resolve(import.meta.dirname, "..", "..");

/** What the figures were measured on, as [label, value] rows for the report. */
export function describeMachine(ours: string, reference: string): [string, string][] {
  const text = (f: string) => {
    try {
      return readFileSync(f, "utf8").trim();
    } catch {
      return "unknown";
    }
  };
  const out = (argv: string[]) => {
    try {
      const r = sh(argv, { allowFailure: true });
      return r.code === 0 ? r.stdout.trim() : "unknown";
    } catch {
      return "unknown";
    }
  };
  const cpu = /model name\s*:\s*(.*)/.exec(text("/proc/cpuinfo"))?.[1] ?? cpus()[0]?.model ?? "unknown";
  const commit = out(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]);
  const dirty = out(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"]) !== "";
  const debVersion = (pkg: string) => out(["dpkg-query", "-W", `-f=${"$"}{Version}`, pkg]);
  return [
    ["CPU", `${cpu}, ${cpus().length} cores`],
    ["kernel", release()],
    ["Debian", text("/etc/debian_version")],
    ["bun (compiles ours)", out([join(ROOT, "node_modules", ".bin", "bun"), "--version"])],
    ["node (runs the benchmark)", process.version],
    ["reference plugins", `${reference} (containernetworking-plugins ${debVersion("containernetworking-plugins")})`],
    ["ours", `${ours} (commit ${commit}${dirty ? ", with uncommitted changes" : ""})`],
    ["libcni client", `Debian golang-github-appc-cni-dev ${debVersion("golang-github-appc-cni-dev")}`],
    [
      "load average at start",
      loadavg()
        .map((x) => x.toFixed(2))
        .join(" "),
    ],
  ];
}
