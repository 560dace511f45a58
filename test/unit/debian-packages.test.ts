import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, realpathSync, statSync } from "node:fs";
import { join, relative } from "node:path";

/**
 * Every external program the suite runs comes from a package in the package list in test/setup.sh or from
 * Debian's base system, so a fresh machine that installs that list runs every stage. Busybox once
 * escaped: only the e2e set-up installed it, after the integration stage that pings with it.
 *
 * The programs are collected from the sources: string literals in argv position (the first word of
 * an argv array handed to a spawning helper, the first argument of spawn/spawnSync/execFile), shebangs
 * (also inside generated scripts), and the first word of each command in the shell scripts. A name is
 * resolved on PATH and its file looked up with dpkg; one that is not on PATH fails, except the
 * shell scripts' words, which count only when they are programs here (a line-based reading of
 * shell cannot tell a missing program from an argument). Runs without root.
 */
const ROOT = join(import.meta.dirname, "..", "..");
const SOURCE_DIRS = ["lib", "plugins", "test", "scripts", "bench"];

/** Programs that are not Debian packages, and why. */
const NOT_DEBIAN: Record<string, string> = {
  node: "the prerequisite Node.js runs the tests and tools",
  npm: "comes with Node.js",
  tsx: "node_modules/.bin",
  bun: "node_modules/.bin",
  cnitool: "ours (dist/bin)",
  tscni: "ours (dist/bin)",
  "libcni-client": "built by test/libcni-client/build.sh",
};

/** Shell words that are builtins, keywords or functions rather than programs. */
const SHELL_WORDS = new Set(
  "if then else elif fi for while until do done case esac in function return local export declare readonly set unset shift exit cd echo printf read test [ [[ true false source . eval exec trap wait kill command type mapfile pushd popd let break continue getopts umask ulimit builtin time load setup teardown run skip".split(
    " ",
  ),
);

function sourceFiles(): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const d of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, d.name);
      if (d.isDirectory()) {
        if (d.name !== "node_modules" && d.name !== "corpus") walk(p);
      } else if (/\.(ts|mjs|sh|bash|bats)$/.test(d.name)) out.push(p);
    }
  };
  for (const d of SOURCE_DIRS) walk(join(ROOT, d));
  return out;
}

const NAME = "[a-z][a-z0-9_.+-]*";
// sh([...]), run([...]), inNode([...]), inNs(ns, [...]), spawnSync([...]) and the like.
const ARGV_CALL = new RegExp(
  String.raw`(?<![.\w])(?:sh|run|runAsync|inNode|inNs|inNsAsync|inNodeAsync|spawnIn|runIn)\((?:[^()\[\]]{0,80},\s*)?\[\s*"(${NAME})"`,
  "g",
);
const SPAWN_CALL = new RegExp(String.raw`(?<![.\w])(?:spawn|spawnSync|execFile|execFileSync)\(\s*"(${NAME})"`, "g");
// A program chosen at run time: `const bin = family === 4 ? "iptables-save" : "ip6tables-save"`.
const CHOSEN_BIN = /\bconst\s+(?:bin|tool|program)\s*=[^;\n]*/g;
// A program run inside a namespace: ["netns", "exec", ns, "iperf3", ...].
const NETNS_EXEC = new RegExp(String.raw`"netns",\s*"exec",\s*[^,\]]+,\s*"(${NAME})"`, "g");
const SHEBANG = new RegExp(String.raw`#!\s*(?:/usr)?/s?bin/(?:env\s+)?(${NAME})`, "g");

interface Use {
  where: string;
  /** Found in argv position or a shebang: it must exist. Shell words only count when they are programs. */
  certain: boolean;
}

/** Each program name with the first place it is used. */
function collectPrograms(): Map<string, Use> {
  const found = new Map<string, Use>();
  const note = (name: string, file: string, certain: boolean) => {
    const seen = found.get(name);
    if (!seen || (certain && !seen.certain)) found.set(name, { where: relative(ROOT, file), certain });
  };
  for (const file of sourceFiles()) {
    const text = readFileSync(file, "utf8");
    for (const re of [ARGV_CALL, SPAWN_CALL, NETNS_EXEC, SHEBANG])
      for (const m of text.matchAll(re)) note(m[1]!, file, true);
    for (const m of text.matchAll(CHOSEN_BIN))
      for (const lit of m[0].matchAll(new RegExp(`"(${NAME})"`, "g"))) note(lit[1]!, file, true);
    if (/\.(sh|bash|bats)$/.test(file)) for (const name of shellCommands(text)) note(name, file, false);
  }
  return found;
}

/** First words of shell commands (line starts, after pipes, &&, ||, ;, $( and !), minus shell words and functions. */
const WRAPPERS = /^(in_[a-z_]+|timeout|exec|nohup|setsid|env)$/;

function shellCommands(text: string): Set<string> {
  const functions = new Set([...text.matchAll(/^\s*(?:function\s+)?([A-Za-z_][\w-]*)\s*\(\)/gm)].map((m) => m[1]!));
  const out = new Set<string>();
  for (const raw of text.split("\n")) {
    const line = raw.replace(/(^|\s)#.*$/, "");
    if (/<<|^\s*@test|^\s*["']/.test(line)) continue;
    for (const seg of line.split(/\|\||&&|[|;]|\$\(|\bthen\b|\bdo\b|\belse\b|!\s/)) {
      const words = seg
        .trim()
        .split(/\s+/)
        .filter((w) => !/^[A-Za-z_]\w*=/.test(w));
      // A wrapper (`in_node_mnt ctr ...`, `timeout 5 curl ...`) runs the program named after it.
      while (words.length > 1 && WRAPPERS.test(words[0]!)) {
        words.shift();
        while (words.length > 1 && /^(-\S*|\d+[smh]?)$/.test(words[0]!)) words.shift();
      }
      const w = words[0];
      if (w && new RegExp(`^${NAME}$`).test(w) && !SHELL_WORDS.has(w) && !functions.has(w)) out.add(w);
    }
  }
  return out;
}

function listedPackages(): Set<string> {
  const setup = readFileSync(join(ROOT, "test", "setup.sh"), "utf8");
  const text = setup.slice(setup.indexOf("<<'LIST'"), setup.indexOf("\nLIST\n"));
  return new Set(
    text
      .split("\n")
      .filter((l) => /^[a-z0-9]/.test(l))
      .map((l) => l.split(/\s+/)[0]!),
  );
}

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(":").concat(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])) {
    const p = join(dir, name);
    try {
      if (dir && statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** The Debian package owning a file, trying the path as found, its target and the usrmerge twins. */
function owningPackage(path: string): string | undefined {
  const real = existsSync(path) ? realpathSync(path) : path;
  const candidates = new Set(
    [path, real].flatMap((p) => [p, p.replace(/^\/usr\//, "/"), p.startsWith("/usr/") ? p : `/usr${p}`]),
  );
  for (const p of candidates) {
    const r = spawnSync("dpkg-query", ["-S", p], { encoding: "utf8" });
    // "pkg: /path" (or "a, b: /path"); "diversion by ..." lines name no owner.
    const owner = r.status === 0 ? r.stdout.split("\n").find((l) => l && !l.startsWith("diversion ")) : undefined;
    const pkg = owner ? owner.split(":")[0]!.split(",")[0]!.trim() : undefined;
    if (pkg) return pkg;
  }
  return undefined;
}

function priority(pkg: string): string {
  return spawnSync("dpkg-query", ["-W", `-f=${"$"}{Priority}`, pkg], { encoding: "utf8" }).stdout.trim();
}

test("the collector finds programs in each of its forms", () => {
  const found = collectPrograms();
  // One of each: an argv literal in lib/, a spawnSync in test/, a shebang in a generated script, a shell command.
  for (const name of ["ip", "iptables-restore", "dbus-daemon", "busybox", "ctr", "iperf3"])
    assert.ok(found.has(name), `${name} collected`);
});

test("every program the sources run is on PATH and comes from a listed package or the base system", () => {
  const listed = listedPackages();
  const problems: string[] = [];
  for (const [name, { where, certain }] of collectPrograms()) {
    if (NOT_DEBIAN[name]) continue;
    const path = onPath(name);
    if (!path) {
      if (certain)
        problems.push(`${name} (${where}): not on PATH; add its package to the package list in test/setup.sh`);
      continue;
    }
    const pkg = owningPackage(path);
    if (!pkg) {
      problems.push(`${name} (${where}): ${path} belongs to no Debian package`);
      continue;
    }
    if (listed.has(pkg) || priority(pkg) === "required") continue;
    problems.push(
      `${name} (${where}): package ${pkg} (priority ${priority(pkg) || "?"}) is not in the package list in test/setup.sh`,
    );
  }
  assert.equal(problems, []);
});

test.run();
