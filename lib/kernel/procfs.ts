import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { KernelError } from "./errors.ts";
import type { RunOptions } from "./exec.ts";
import { listLinks } from "./link.ts";
import { withNetns } from "./setns.ts";

/**
 * Per-namespace kernel files. /proc/sys/net shows the namespace of the reading process, so our own
 * namespace is written directly (no spawn) and a container's through one `sysctl` run inside it.
 * Keys are slash paths below /proc/sys ("net/ipv4/conf/eth0.5/arp_notify"): interface names may
 * contain dots, which the dotted sysctl syntax would split.
 */
export type SysctlPath = string;

const SAFE_PATH = /^net\/[A-Za-z0-9_.@+/-]+$/;

const safePath = (path: string) =>
  SAFE_PATH.test(path) && !path.split("/").some((p) => p === "" || p === "." || p === "..");

/**
 * Writes sysctls. `bestEffort` ignores keys that do not exist or cannot be written, as the
 * reference does for the per-interface DAD, ARP and accept_ra settings.
 */
export function writeSysctls(
  values: readonly (readonly [SysctlPath, string])[],
  opts: Pick<RunOptions, "netns"> & { bestEffort?: boolean } = {},
) {
  // An interface name sysctl cannot address is refused, or with bestEffort skipped like a missing key.
  const bad = values.find(([k]) => !safePath(k));
  if (bad && !opts.bestEffort) throw new KernelError("refused", `refusing sysctl path ${JSON.stringify(bad[0])}`);
  values = values.filter(([k]) => safePath(k));
  if (values.length === 0) return;
  const writeHere = () => {
    for (const [k, v] of values) {
      const file = `/proc/sys/${k}`;
      try {
        if (readFileSync(file, "utf8").trim() !== v) writeFileSync(file, v);
      } catch (e) {
        if (!opts.bestEffort)
          throw new KernelError("failed", `failed to set sysctl ${k}=${v}: ${(e as Error).message}`);
      }
    }
  };
  if (!opts.netns) return writeHere();
  // /proc/sys/net shows the namespace of the thread that opens it: write from inside.
  withNetns(opts.netns, writeHere);
}

/** The names of our namespace's links (/proc/thread-self/net/dev always shows it), without a spawn. */
export function nodeLinkNames(): Set<string> | undefined {
  try {
    return new Set(
      readFileSync("/proc/thread-self/net/dev", "utf8")
        .split("\n")
        .slice(2)
        .map((l) => l.split(":")[0]!.trim())
        .filter((n) => n !== ""),
    );
  } catch {
    return undefined;
  }
}

/** The names of the links in the namespace at `netns`: read from inside it, or listed by ip. */
export function linkNamesIn(netns: string): Set<string> {
  const inside = withNetns(netns, nodeLinkNames);
  if (inside) return inside;
  return new Set(listLinks({ netns }).map((l) => l.ifname));
}

/**
 * A link's operational state from sysfs in our own namespace, without a spawn. Undefined when sysfs
 * does not show the link (absent, or /sys mounted for another namespace): callers then ask ip.
 */
export function sysfsOperstate(dev: string): string | undefined {
  if (dev.includes("/") || dev === "." || dev === "..") return undefined;
  try {
    return readFileSync(`/sys/class/net/${dev}/operstate`, "utf8").trim();
  } catch {
    return undefined;
  }
}

/**
 * What a link name is in our namespace, read without a spawn: /proc/self/net/dev always shows our
 * namespace, /sys/class/net the one sysfs was mounted for. Only when both list the same links is
 * sysfs trusted for the kind; otherwise undefined, and the caller asks ip.
 */
export function linkKindNoSpawn(name: string): "absent" | "bridge" | "other" | undefined {
  try {
    const ours = [...(nodeLinkNames() ?? [])];
    if (ours.length === 0) return undefined;
    const sysfs = new Set(readdirSync("/sys/class/net"));
    if (ours.length !== sysfs.size || ours.some((n) => !sysfs.has(n))) return undefined;
    if (!ours.includes(name)) return "absent";
    return existsSync(`/sys/class/net/${name}/bridge`) ? "bridge" : "other";
  } catch {
    return undefined;
  }
}
