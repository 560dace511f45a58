import { run } from "../kernel/exec.ts";
import type { Family } from "../ip/address.ts";

/**
 * Deletes the UDP conntrack entries whose original destination port is one of `ports`, so a
 * restarted container receives datagrams that an old flow would otherwise steer elsewhere. All
 * deletions run in one `conntrack -R -` batch (conntrack-tools >= 1.4.6), with one process per
 * deletion only as a fallback for older tools. Returns a problem description instead of throwing:
 * the reference only logs these failures.
 */
export function deleteUdpConntrack(ports: readonly number[], families: readonly Family[]): string | undefined {
  const lines: string[][] = [];
  for (const family of families) {
    for (const port of new Set(ports))
      lines.push(["-D", "-f", family === 4 ? "ipv4" : "ipv6", "-p", "udp", "--orig-port-dst", String(port)]);
  }
  if (lines.length === 0) return undefined;
  try {
    const batch = run(["conntrack", "-R", "-"], {
      input: `${lines.map((l) => l.join(" ")).join("\n")}\n`,
      allowFailure: true,
    });
    if (batch.status === 0) return undefined;
    const problems: string[] = [];
    for (const l of lines) {
      // A single -D exits 1 when nothing matched; only report real failures.
      const r = run(["conntrack", ...l], { allowFailure: true });
      if (r.status !== 0 && !/0 flow entries/.test(r.stderr))
        problems.push(r.stderr.trim() || `exit status ${r.status}`);
    }
    return problems.length > 0 ? problems.join("; ") : undefined;
  } catch (e) {
    return (e as Error).message;
  }
}
