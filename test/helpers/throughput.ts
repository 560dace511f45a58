import { spawn } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { sh } from "./sandbox.ts";

/**
 * One bounded TCP transfer (iperf3, one stream, `seconds` long): the server in `serverNs` on
 * `serverPort`, the client in `clientNs` connecting to target:port (a published port may differ
 * from the server's). Resolves to the bits per second the server received.
 */
export async function tcpThroughput(
  serverNs: string,
  clientNs: string,
  target: string,
  port: number,
  serverPort: number,
  seconds: number,
): Promise<number> {
  const server = spawn("ip", ["netns", "exec", serverNs, "iperf3", "-s", "-1", "-p", String(serverPort)], {
    stdio: "ignore",
  });
  try {
    for (let attempt = 0; ; attempt++) {
      const r = sh(
        ["ip", "netns", "exec", clientNs, "iperf3", "-c", target, "-p", String(port), "-t", String(seconds), "-J"],
        { allowFailure: true, timeoutMs: (seconds + 20) * 1000 },
      );
      if (r.code === 0) {
        const bps = JSON.parse(r.stdout)?.end?.sum_received?.bits_per_second;
        if (typeof bps === "number") return bps;
      }
      // The server may not be listening yet.
      if (attempt >= 20)
        throw new Error(`iperf3 ${clientNs} -> ${target}:${port} failed: ${r.stderr}${r.stdout.slice(0, 500)}`);
      await sleep(100);
    }
  } finally {
    server.kill();
  }
}
