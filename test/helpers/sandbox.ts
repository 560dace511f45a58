import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

/**
 * Integration-test sandbox: a "node" network namespace where every plugin runs, container namespaces
 * created from the root namespace, and optionally an "external host" wired to the node. Everything
 * it creates is removed by cleanup(), so tests never touch the machine's own namespace.
 */
export const BIN = resolve(process.env.TSCNI_BIN ?? join(import.meta.dirname, "..", "..", "dist", "bin"));
export const REF_BIN = "/usr/lib/cni";

export interface Exec {
  code: number;
  stdout: string;
  stderr: string;
}

export function sh(
  argv: string[],
  opts: { input?: string; env?: NodeJS.ProcessEnv; allowFailure?: boolean; timeoutMs?: number } = {},
): Exec {
  const r: SpawnSyncReturns<string> = spawnSync(argv[0]!, argv.slice(1), {
    input: opts.input ?? "",
    encoding: "utf8",
    env: opts.env ?? process.env,
    timeout: opts.timeoutMs ?? 60_000,
  });
  const out = { code: r.status ?? (r.signal ? 128 : 1), stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
  if (r.error) throw r.error;
  if (out.code !== 0 && !opts.allowFailure) {
    throw new Error(`${argv.join(" ")} exited ${out.code}: ${out.stderr}${out.stdout}`);
  }
  return out;
}

let counter = 0;
const uniq = () => `${process.pid.toString(36)}${(counter++).toString(36)}${Math.random().toString(36).slice(2, 5)}`;

export class Sandbox {
  readonly node: string;
  readonly tmp: string;
  private readonly namespaces: string[] = [];

  constructor(readonly label: string) {
    this.node = this.addNamespace("node");
    this.tmp = mkdtempSync(join(tmpdir(), `tscni-${label}-`));
    this.inNode(["ip", "link", "set", "lo", "up"]);
  }

  /** Netns names stay short: they become part of nothing but must be unique across parallel runs. */
  addNamespace(role: string): string {
    const name = `tc-${this.label.slice(0, 6)}-${role.slice(0, 4)}-${uniq()}`;
    sh(["ip", "netns", "add", name]);
    this.namespaces.push(name);
    return name;
  }

  /** A container namespace; returns its name and the path a runtime would pass as CNI_NETNS. */
  addContainer(): { name: string; path: string } {
    const name = this.addNamespace("ctr");
    return { name, path: `/var/run/netns/${name}` };
  }

  /**
   * An "external host" namespace linked to the node by a veth pair: node side `nodeAddr` (CIDR),
   * external side `extAddr` (CIDR). Returns the external namespace's name.
   */
  addExternalHost(nodeAddr = "192.0.2.1/24", extAddr = "192.0.2.2/24"): string {
    const ext = this.addNamespace("ext");
    const nodeIf = `ext${uniq()}`.slice(0, 15);
    sh(["ip", "link", "add", nodeIf, "netns", this.node, "type", "veth", "peer", "name", "eth0", "netns", ext]);
    this.inNode(["ip", "addr", "add", nodeAddr, "dev", nodeIf]);
    this.inNode(["ip", "link", "set", nodeIf, "up"]);
    this.inNs(ext, ["ip", "addr", "add", extAddr, "dev", "eth0"]);
    this.inNs(ext, ["ip", "link", "set", "eth0", "up"]);
    this.inNs(ext, ["ip", "link", "set", "lo", "up"]);
    return ext;
  }

  inNode(argv: string[], opts: Parameters<typeof sh>[1] = {}): Exec {
    return this.inNs(this.node, argv, opts);
  }

  inNs(ns: string, argv: string[], opts: Parameters<typeof sh>[1] = {}): Exec {
    return sh(["ip", "netns", "exec", ns, ...argv], opts);
  }

  cleanup() {
    for (const ns of this.namespaces.reverse()) sh(["ip", "netns", "del", ns], { allowFailure: true });
    rmSync(this.tmp, { recursive: true, force: true });
  }
}

/** Runs `fn` in a fresh sandbox and removes the sandbox whatever happens. */
export async function withSandbox<T>(label: string, fn: (sb: Sandbox) => T | Promise<T>): Promise<T> {
  const sb = new Sandbox(label);
  try {
    return await fn(sb);
  } finally {
    sb.cleanup();
  }
}

/** Registers tests (uvu's `test`, or a `test.skip` chosen at load) that each get a fresh sandbox. */
export const sandboxed =
  (test: (name: string, fn: () => Promise<void>) => void, label: string) =>
  (name: string, fn: (sb: Sandbox) => void | Promise<void>) =>
    test(name, () => withSandbox(label, fn));

/** Builds a CNI environment for one call. */
export function cniEnv(
  command: string,
  extra: Partial<Record<"CNI_CONTAINERID" | "CNI_NETNS" | "CNI_IFNAME" | "CNI_ARGS" | "CNI_PATH", string>> = {},
) {
  return { CNI_COMMAND: command, CNI_CONTAINERID: "ctr1", CNI_IFNAME: "eth0", CNI_PATH: BIN, ...extra } as Record<
    string,
    string
  >;
}
