import { readFileSync } from "node:fs";
import { endianness } from "node:os";
import { KernelError } from "./errors.ts";
import { writeSysctls } from "./procfs.ts";

/**
 * The interface the node routes an IPv4 address through, from /proc/net/route (the main table of
 * this process's namespace): longest matching prefix, then lowest metric. Reading the file instead
 * of running `ip route get` keeps portmap's ADD to the netfilter transactions it needs.
 */
export function ipv4RouteDevice(addr: number): string | undefined {
  let text: string;
  try {
    text = readFileSync("/proc/net/route", "utf8");
  } catch {
    return undefined;
  }
  const target = addr >>> 0;
  let best: { dev: string; len: number; metric: number } | undefined;
  for (const line of text.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    const flags = parseInt(f[3]!, 16);
    const RTF_UP = 0x1;
    const RTF_REJECT = 0x200;
    if (!(flags & RTF_UP) || flags & RTF_REJECT) continue;
    const dest = fromProc(f[1]!);
    const mask = fromProc(f[7]!);
    if ((target & mask) >>> 0 !== dest) continue;
    const len = popcount(mask);
    const metric = Number(f[6]);
    if (!best || len > best.len || (len === best.len && metric < best.metric)) best = { dev: f[0]!, len, metric };
  }
  return best?.dev;
}

/** Lets 127.0.0.1-sourced (DNATed localhost) traffic leave through `dev`. */
export function enableRouteLocalnet(dev: string) {
  try {
    writeSysctls([[`net/ipv4/conf/${dev}/route_localnet`, "1"]]);
  } catch (e) {
    throw new KernelError("failed", `unable to enable route_localnet: ${(e as Error).message}`);
  }
}

// /proc/net/route prints the network-order address as a host-order hex number.
function fromProc(hex: string): number {
  const n = parseInt(hex, 16) >>> 0;
  if (endianness() === "BE") return n;
  return (((n & 0xff) << 24) | (((n >>> 8) & 0xff) << 16) | (((n >>> 16) & 0xff) << 8) | ((n >>> 24) & 0xff)) >>> 0;
}

function popcount(n: number): number {
  let c = 0;
  for (let x = n >>> 0; x; x >>>= 1) c += x & 1;
  return c;
}
