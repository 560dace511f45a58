import { KernelError } from "./errors.ts";
import { checkBatchWord, run, type RunOptions } from "./exec.ts";

/**
 * Traffic control as typed operations: the token-bucket qdiscs and the ingress redirect that
 * shaping needs, carried out by one `tc -batch` process per call, and the qdiscs of a link as
 * `tc -j` reports them.
 */

/** A token bucket in the kernel's units: bytes per second, bytes. */
export interface TokenBucket {
  rate: number;
  burst: number;
  /** Bytes that may queue behind the bucket before packets drop. */
  limit: number;
}

export type TcOp =
  /** The root token-bucket qdisc, handle 1:. */
  | { op: "tbf-add"; dev: string; bucket: TokenBucket }
  | { op: "root-del"; dev: string }
  /** The ingress qdisc, handle ffff:, where filters see what the link receives. */
  | { op: "ingress-add"; dev: string }
  /** A match-all filter on the ingress qdisc redirecting every packet to the egress of `to`. */
  | { op: "redirect-add"; dev: string; to: string }
  | { op: "ingress-del"; dev: string };

function lineOf(o: TcOp): string[] {
  switch (o.op) {
    case "tbf-add":
      return [
        "qdisc",
        "add",
        "dev",
        o.dev,
        "root",
        "handle",
        "1:",
        "tbf",
        // "bps" is bytes per second in tc's units.
        "rate",
        `${o.bucket.rate}bps`,
        "burst",
        String(o.bucket.burst),
        "limit",
        String(o.bucket.limit),
      ];
    case "root-del":
      return ["qdisc", "del", "dev", o.dev, "root"];
    case "ingress-add":
      return ["qdisc", "add", "dev", o.dev, "handle", "ffff:", "ingress"];
    case "redirect-add":
      return [
        ...["filter", "add", "dev", o.dev, "parent", "ffff:", "protocol", "all", "prio", "1", "u32"],
        ...["match", "u32", "0", "0", "flowid", "1:1", "action", "mirred", "egress", "redirect", "dev", o.to],
      ];
    case "ingress-del":
      return ["qdisc", "del", "dev", o.dev, "ingress"];
  }
}

export interface TcOutcome {
  ok: boolean;
  /** Index of the op that failed, when known. */
  failedOp?: number;
  stderr: string;
}

type NsOpts = Pick<RunOptions, "netns">;

/**
 * Applies the ops in order in one tc process. By default it stops at the first failure; with
 * `force` it goes on past failures (removals of what may already be gone) and reports the first.
 */
export function applyTcOps(ops: readonly TcOp[], opts: NsOpts & { force?: boolean } = {}): TcOutcome {
  if (ops.length === 0) return { ok: true, stderr: "" };
  const lines = ops.map(lineOf);
  for (const l of lines) for (const w of l) checkBatchWord(w, "tc");
  const argv = ["tc", ...(opts.force ? ["-force"] : []), "-batch", "-"];
  const input = `${lines.map((l) => l.join(" ")).join("\n")}\n`;
  const r = run(argv, { netns: opts.netns, input, allowFailure: true });
  if (r.status === 0) return { ok: true, stderr: "" };
  const m = /Command failed -:(\d+)/.exec(r.stderr);
  return {
    ok: false,
    failedOp: m ? Number(m[1]) - 1 : undefined,
    stderr: r.stderr.replace(/\n?Command failed -:\d+[\s\S]*$/, "").trim() || `tc exited ${r.status}`,
  };
}

/** The ops whose failure is an error: a KernelError naming the failing op. */
export function mustApplyTcOps(ops: readonly TcOp[], opts: NsOpts = {}) {
  const r = applyTcOps(ops, opts);
  if (!r.ok) {
    const what = r.failedOp === undefined ? "tc" : lineOf(ops[r.failedOp]!).join(" ");
    throw new KernelError("failed", `${what}: ${r.stderr}`, { line: r.failedOp, stderr: r.stderr });
  }
}

/** A qdisc as `tc -j qdisc show` reports it; a tbf's options in bytes/s, bytes and microseconds. */
export interface TcQdisc {
  kind: string;
  handle: string;
  dev: string;
  root?: boolean;
  parent?: string;
  options?: { rate?: number; burst?: number; lat?: number };
}

/** The qdiscs of one link (empty when the link has none of its own or is gone). */
export function qdiscsOf(dev: string, opts: NsOpts = {}): TcQdisc[] {
  const r = run(["tc", "-j", "qdisc", "show", "dev", dev], { netns: opts.netns, allowFailure: true });
  if (r.status !== 0) {
    if (/Cannot find device/i.test(r.stderr)) return [];
    throw new KernelError("failed", `tc qdisc show dev ${dev}: ${r.stderr.trim() || `exit status ${r.status}`}`);
  }
  const out = r.stdout.trim();
  return out === "" ? [] : (JSON.parse(out) as TcQdisc[]);
}
