import { checkBatchWord, ipBatch, run, type RunOptions } from "./exec.ts";

/**
 * Batches whose failure the caller must reason about: which line failed tells whether a link was
 * already created (and must be rolled back) or a name collided (and a new one can be tried).
 */
export interface BatchOutcome {
  ok: boolean;
  /** The elements of every JSON array the batch's show commands printed, in order. */
  shown: unknown[];
  /** The same, one array per show command. */
  groups: unknown[][];
  /** 0-based index of the line that failed, when ip says which. */
  failedLine?: number;
  stderr: string;
}

export function tryIpBatch(
  lines: readonly string[][],
  opts: Pick<RunOptions, "netns"> & { json?: boolean } = {},
): BatchOutcome {
  const r = ipBatch(lines, { ...opts, allowFailure: true });
  const m = /Command failed -:(\d+)/.exec(r.stderr);
  const groups = opts.json ? splitJsonArrays(r.stdout) : [];
  return {
    ok: r.status === 0,
    shown: groups.flat(),
    groups,
    failedLine: m ? Number(m[1]) - 1 : undefined,
    stderr: r.stderr.replace(/\n?Command failed -:\d+\s*$/, "").trim(),
  };
}

/** `ip -j -batch` prints one JSON array per show command, back to back. */
export function splitJsonArrays(out: string): unknown[][] {
  const groups: unknown[][] = [];
  let depth = 0;
  let start = -1;
  let inString = false;
  for (let i = 0; i < out.length; i++) {
    const c = out[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === "[" || c === "{") {
      if (depth++ === 0) start = i;
    } else if (c === "]" || c === "}") {
      if (--depth === 0) {
        const v = JSON.parse(out.slice(start, i + 1)) as unknown;
        groups.push(Array.isArray(v) ? (v as unknown[]) : [v]);
      }
    }
  }
  return groups;
}

/** Bridge port VLAN changes (`bridge -batch -`), the one thing ip cannot do. */
export function bridgeBatch(lines: readonly string[][]) {
  if (lines.length === 0) return;
  for (const l of lines) for (const w of l) checkBatchWord(w, "bridge");
  run(["bridge", "-batch", "-"], { input: `${lines.map((l) => l.join(" ")).join("\n")}\n` });
}
