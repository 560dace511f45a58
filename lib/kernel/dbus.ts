import { existsSync } from "node:fs";
import { run, type RunResult } from "./exec.ts";

/**
 * Method calls on the system D-Bus through `busctl` (systemd), which honours DBUS_SYSTEM_BUS_ADDRESS
 * like every D-Bus client. Used only by the firewall plugin's firewalld backend, so a node without
 * firewalld pays nothing beyond one stat.
 */
const DEFAULT_SOCKETS = ["/run/dbus/system_bus_socket", "/var/run/dbus/system_bus_socket"];

/** Whether a system bus could be reached at all, decided without spawning anything. */
export function systemBusPresent(env: NodeJS.ProcessEnv = process.env): boolean {
  const addr = env.DBUS_SYSTEM_BUS_ADDRESS;
  if (addr) {
    // unix:path=/x[,guid=...]: a missing socket file means no bus; other transports we just try.
    const m = /(?:^|;)unix:path=([^,;]+)/.exec(addr);
    return m ? existsSync(m[1]!) : true;
  }
  return DEFAULT_SOCKETS.some((p) => existsSync(p));
}

export interface BusReply {
  ok: boolean;
  /** The reply's values (busctl --json=short "data"), or the error text when !ok. */
  data: unknown[];
  error: string;
}

/** One method call; `signature` and `args` follow busctl's syntax (e.g. "ss", ["trusted", "10.0.0.2/32"]). */
export function busCall(
  dest: string,
  path: string,
  iface: string,
  method: string,
  signature = "",
  args: readonly string[] = [],
): BusReply {
  const argv = ["busctl", "--system", "--json=short", "--timeout=10", "call", dest, path, iface, method];
  if (signature) argv.push(signature, ...args);
  let r: RunResult;
  try {
    r = run(argv, { allowFailure: true });
  } catch (e) {
    // No busctl means no D-Bus client here: firewalld is not reachable, which callers handle.
    return { ok: false, data: [], error: (e as Error).message };
  }
  if (r.status !== 0) return { ok: false, data: [], error: r.stderr.trim() || `busctl exit status ${r.status}` };
  const out = r.stdout.trim();
  if (out === "") return { ok: true, data: [], error: "" };
  try {
    const parsed = JSON.parse(out) as { data?: unknown[] };
    return { ok: true, data: parsed.data ?? [], error: "" };
  } catch {
    return { ok: true, data: [out], error: "" };
  }
}
