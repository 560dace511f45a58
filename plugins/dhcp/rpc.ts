import { connect } from "node:net";

/**
 * The plugin–daemon protocol: one JSON request per connection on the daemon's unix socket, as
 * `{"method": "DHCP.Allocate" | "DHCP.Release", "params": [CmdArgs]}` with CmdArgs named as the
 * reference's skel.CmdArgs (StdinData base64, as Go marshals bytes), answered by one JSON line
 * `{"result": ..., "error": null | string}`. The reference speaks Go net/rpc over HTTP with gob
 * encoding, which this does not: ours and the reference's plugin and daemon do not mix.
 */

export interface CmdArgs {
  ContainerID: string;
  Netns: string;
  IfName: string;
  Args: string;
  Path: string;
  StdinData: string;
}

export type Method = "DHCP.Allocate" | "DHCP.Release";

export interface Reply {
  result?: unknown;
  error?: string | null;
}

/** Thrown when nothing answers on the socket (as opposed to the daemon answering with an error). */
export class DialError extends Error {}

/** Calls the daemon; rejects with a message naming the socket when it cannot be reached. */
export function call(socket: string, method: Method, args: CmdArgs, timeoutMs = 120_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const conn = connect(socket);
    let buf = "";
    let connected = false;
    const timer = setTimeout(() => {
      conn.destroy();
      reject(new Error(`error calling ${method}: no answer from ${socket} within ${timeoutMs / 1000}s`));
    }, timeoutMs);
    conn.on("connect", () => {
      connected = true;
      conn.write(`${JSON.stringify({ method, params: [args] })}\n`);
    });
    conn.on("data", (d) => {
      buf += d.toString("utf8");
      const nl = buf.indexOf("\n");
      if (nl < 0) return;
      clearTimeout(timer);
      conn.end();
      try {
        const r = JSON.parse(buf.slice(0, nl)) as Reply;
        if (r.error) reject(new Error(`error calling ${method}: ${r.error}`));
        else resolve(r.result);
      } catch {
        reject(new Error(`error calling ${method}: the daemon's answer is not JSON`));
      }
    });
    conn.on("error", (e) => {
      clearTimeout(timer);
      const why = (e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file or directory" : e.message;
      reject(
        connected
          ? new Error(`error calling ${method}: ${why}`)
          : new DialError(`error dialing DHCP daemon: dial unix ${socket}: ${why}`),
      );
    });
  });
}
