import * as z from "../../lib/cni/zod.ts";
import { join } from "node:path";
import { CniError, Code } from "../../lib/cni/errors.ts";
import { BaseConfig } from "../../lib/cni/config.ts";
import { parseCniArgs } from "../../lib/cni/args.ts";
import { compact } from "../../lib/cni/compact.ts";
import type { Result } from "../../lib/cni/result.ts";
import { parseUnicastMac } from "../../lib/net/mac.ts";
import type { IpLink, LinkSet } from "../../lib/kernel/link.ts";

/**
 * The tuning plugin's rules as pure functions: which settings a request asks for (config, CNI_ARGS
 * MAC, runtimeConfig.mac, args.cni overrides, in the reference's order), which sysctl files they
 * name, the saved-original file (`<dataDir>/<containerID>_<ifname>.json`, the reference's format),
 * and the ip commands that apply or restore link attributes.
 */
export const DEFAULT_DATA_DIR = "/run/cni/tuning";
export const ALLOWLIST_FILE = "/etc/cni/tuning/allowlist.conf";

const MAX_INT = 2 ** 31 - 1;
const Mtu = z.number().check(z.int(), z.minimum(0, "must not be negative"), z.maximum(MAX_INT));
const TxQLen = z.number().check(z.int(), z.minimum(0, "must not be negative"), z.maximum(MAX_INT));
const Sysctls = z.record(z.string(), z.string());

// The attributes a config sets, and args.cni may override one by one.
const Attributes = {
  sysctl: z.nullish(Sysctls),
  mac: z.nullish(z.string()),
  promisc: z.nullish(z.boolean()),
  mtu: z.nullish(Mtu),
  allmulti: z.nullish(z.boolean()),
  txQLen: z.nullish(TxQLen),
};

export const TuningConfig = z.extend(BaseConfig, {
  ...Attributes,
  dataDir: z.nullish(z.string()),
  runtimeConfig: z.optional(z.looseObject({ mac: z.nullish(z.string()) })),
  args: z.nullish(z.looseObject({ cni: z.nullish(z.looseObject(Attributes)) })),
});
export type TuningConfig = z.infer<typeof TuningConfig>;

export interface SysctlSetting {
  /** The key as the user wrote it (used in messages and allow-list matching). */
  key: string;
  /** Slash-separated path under /proc/sys, IFNAME substituted. */
  path: string;
  value: string;
}

/** What one request asks to change on the container interface and in its namespace. */
export interface Settings {
  sysctls: SysctlSetting[];
  mac?: string;
  mtu?: number;
  /** Only true is acted on, as in the reference (false leaves the flag alone). */
  promisc: boolean;
  allmulti?: boolean;
  txQLen?: number;
}

export interface LinkSettings {
  mac?: string;
  mtu?: number;
  promisc?: boolean;
  allmulti?: boolean;
  txQLen?: number;
}

/** The data directory for saved originals (the reference's `dataDir`, default /run/cni/tuning). */
export function dataDirOf(c: TuningConfig): string {
  return c.dataDir || DEFAULT_DATA_DIR;
}

/** CNI_ARGS as tuning reads it: only MAC is known (IgnoreUnknown rules as everywhere). */
export function cniArgsMac(raw: string): string | undefined {
  return parseCniArgs(raw, ["MAC"]).MAC || undefined;
}

/** Resolves and validates everything a request asks for; throws a CniError naming the field. */
export function resolveSettings(c: TuningConfig, cniArgs: string, ifname: string): Settings {
  const o = c.args?.cni ?? undefined;
  // Later sources win: config, CNI_ARGS MAC, runtimeConfig.mac, args.cni.mac.
  let mac: { value: string; field: string } | undefined;
  for (const [value, field] of [
    [c.mac, "mac"],
    [cniArgsMac(cniArgs), "CNI_ARGS MAC"],
    [c.runtimeConfig?.mac, "runtimeConfig.mac"],
    [o?.mac, "args.cni.mac"],
  ] as const) {
    if (value) mac = { value, field };
  }
  const merged: [string, string, string][] = [];
  for (const [k, v] of Object.entries(c.sysctl ?? {})) merged.push([k, v, "sysctl"]);
  for (const [k, v] of Object.entries(o?.sysctl ?? {})) {
    const i = merged.findIndex(([key]) => key === k);
    if (i >= 0) merged.splice(i, 1);
    merged.push([k, v, "args.cni.sysctl"]);
  }
  const sysctls: SysctlSetting[] = [];
  const byPath = new Map<string, string>();
  for (const [key, value, field] of merged) {
    const path = sysctlPath(key, ifname, field);
    checkSysctlValue(value, `${field}.${key}`);
    const other = byPath.get(path);
    if (other !== undefined)
      throw new CniError(
        Code.InvalidConfig,
        `invalid network config: ${field}: duplicated sysctl keys ${JSON.stringify(other)} and ${JSON.stringify(key)}`,
      );
    byPath.set(path, key);
    sysctls.push({ key, path, value });
  }
  const mtu = o?.mtu ?? c.mtu ?? 0;
  const txQLen = o?.txQLen ?? c.txQLen ?? undefined;
  const allmulti = o?.allmulti ?? c.allmulti ?? undefined;
  return {
    sysctls,
    mac: mac ? parseUnicastMac(mac.value, mac.field) : undefined,
    mtu: mtu > 0 ? mtu : undefined,
    promisc: (o?.promisc ?? c.promisc) === true,
    allmulti,
    txQLen,
  };
}

export function linkSettings(s: Settings): LinkSettings {
  return { mac: s.mac, mtu: s.mtu, promisc: s.promisc || undefined, allmulti: s.allmulti, txQLen: s.txQLen };
}

export function hasLinkSettings(l: LinkSettings): boolean {
  return (
    l.mac !== undefined ||
    l.mtu !== undefined ||
    l.promisc !== undefined ||
    l.allmulti !== undefined ||
    l.txQLen !== undefined
  );
}

/**
 * Turns a sysctl key into its path under /proc/sys. Keys use dots or slashes as separators: with
 * dots, dots and slashes swap (so "net.ipv4.conf.eth0/100.rp_filter" names interface eth0.100); with
 * slashes they are taken as they are; the first separator decides, as in the reference. A component
 * "IFNAME" becomes CNI_IFNAME. The result must stay under net/: no empty, "." or ".." component.
 */
export function sysctlPath(key: string, ifname: string, field = "sysctl"): string {
  const bad = (why: string) =>
    new CniError(
      Code.InvalidConfig,
      `invalid network config: ${field}: invalid net sysctl key ${JSON.stringify(key)}: ${why}`,
    );
  if (key.includes("..")) throw bad('must not contain ".."');
  if (/[\s\x00-\x1f\x7f]/.test(key)) throw bad("must not contain whitespace or control characters");
  const firstSep = key.search(/[./]/);
  const slashed = firstSep >= 0 && key[firstSep] === "." ? key.replace(/[./]/g, (c) => (c === "." ? "/" : ".")) : key;
  const parts = slashed.split("/");
  const i = parts.indexOf("IFNAME");
  if (i >= 0) parts[i] = ifname;
  if (parts[0] !== "net" || parts.length < 2) throw bad("only keys under net. are allowed");
  if (parts.some((p) => p === "" || p === "." || p === "..")) throw bad('empty, "." or ".." component');
  return parts.join("/");
}

// Values go to the kernel in one write(2): proc's integer handlers refuse writes at an offset.
const MAX_SYSCTL_VALUE = 512;

function checkSysctlValue(value: string, field: string) {
  if (/[\x00-\x08\x0a-\x1f\x7f]/.test(value)) {
    throw new CniError(
      Code.InvalidConfig,
      `invalid network config: ${field}: value must not contain control characters`,
    );
  }
  if (value.length > MAX_SYSCTL_VALUE)
    throw new CniError(
      Code.InvalidConfig,
      `invalid network config: ${field}: value longer than ${MAX_SYSCTL_VALUE} characters`,
    );
}

/** Ethernet MAC in any of the usual spellings, returned as lowercase colon form; must be unicast. */
/** Allow-list lines (one regular expression each); every sysctl key must match one of them. */
export function checkAllowlist(keys: readonly string[], allowlist: string): void {
  const patterns = allowlist
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "")
    .map((l) => {
      try {
        return new RegExp(l);
      } catch (e) {
        throw new CniError(
          Code.InvalidConfig,
          `invalid regular expression in ${ALLOWLIST_FILE}: ${JSON.stringify(l)}`,
          (e as Error).message,
        );
      }
    });
  for (const k of keys) {
    if (!patterns.some((p) => p.test(k))) {
      throw new CniError(
        Code.InvalidConfig,
        `Sysctl ${k} is not allowed. Only the following sysctls are allowed: ${patterns.map((p) => p.source).join(", ")}`,
      );
    }
  }
}

// --- saved originals ---------------------------------------------------------------------------

/** The reference's file (keys mac, promisc, mtu, allmulti, txQLen) plus our sysctl originals. */
export const Backup = z.looseObject({
  mac: z.optional(z.string()),
  promisc: z.optional(z.boolean()),
  mtu: z.optional(z.number().check(z.int())),
  allmulti: z.optional(z.boolean()),
  txQLen: z.optional(z.number().check(z.int())),
  /** Original sysctl values by path under /proc/sys (ignored by the reference plugin). */
  sysctl: z.optional(z.record(z.string(), z.string())),
});
export type Backup = z.infer<typeof Backup>;

export function backupPath(dataDir: string, containerId: string, ifname: string): string {
  return join(dataDir, `${containerId}_${ifname}.json`);
}

/** What `ip -j link show` reports that tuning reads. */
export type LinkState = Pick<IpLink, "address" | "mtu" | "flags" | "txqlen">;

/** The originals to save before `want` is applied: only what will change, as the reference does. */
export function buildBackup(
  want: LinkSettings,
  link: LinkState | undefined,
  sysctls: readonly SysctlSetting[],
  originals: readonly (string | undefined)[],
): Backup {
  const b: Backup = {};
  if (link) {
    if (want.mac !== undefined && link.address) b.mac = link.address;
    if (want.promisc) b.promisc = link.flags.includes("PROMISC");
    if (want.mtu !== undefined) b.mtu = link.mtu;
    if (want.allmulti !== undefined) b.allmulti = link.flags.includes("ALLMULTI");
    if (want.txQLen !== undefined && link.txqlen !== undefined) b.txQLen = link.txqlen;
  }
  const saved: Record<string, string> = {};
  sysctls.forEach((s, i) => {
    const v = originals[i];
    if (v !== undefined) saved[s.path] = v;
  });
  if (Object.keys(saved).length > 0) b.sysctl = saved;
  return b;
}

/** Keeps originals already on disk (a repeated ADD must not save its own changes as originals). */
export function mergeBackups(existing: Backup | undefined, fresh: Backup): Backup {
  if (!existing) return fresh;
  const out: Backup = { ...fresh, ...compact(existing) };
  if (fresh.sysctl || existing.sysctl) out.sysctl = { ...fresh.sysctl, ...existing.sysctl };
  return ordered(out);
}

/** Go's json.MarshalIndent(v, "", " ") of the reference struct, field order included. */
export function renderBackup(b: Backup): string {
  return JSON.stringify(ordered(b), null, 1);
}

export function isEmptyBackup(b: Backup): boolean {
  return Object.keys(compact(b)).length === 0;
}

function ordered(b: Backup): Backup {
  const { mac, promisc, mtu, allmulti, txQLen, sysctl, ...rest } = b;
  return compact({ mac, promisc, mtu: mtu || undefined, allmulti, txQLen, sysctl, ...rest });
}

// --- link commands -----------------------------------------------------------------------------

/** One link change per attribute, in the reference's order, so a failure names its attribute. */
export function linkCommands(ifname: string, l: LinkSettings): { field: string; op: LinkSet }[] {
  const out: { field: string; op: LinkSet }[] = [];
  const set = (field: string, change: Omit<LinkSet, "op" | "dev">) =>
    out.push({ field, op: { op: "link-set", dev: ifname, ...change } });
  if (l.mac !== undefined) set("mac", { mac: l.mac });
  if (l.promisc !== undefined) set("promisc", { promisc: l.promisc });
  if (l.mtu !== undefined) set("mtu", { mtu: l.mtu });
  if (l.allmulti !== undefined) set("allmulti", { allmulti: l.allmulti });
  if (l.txQLen !== undefined) set("txQLen", { txqlen: l.txQLen });
  return out;
}

/** Link attributes to put back from a saved file. */
export function restoreSettings(b: Backup): LinkSettings {
  return {
    mac: b.mac || undefined,
    mtu: b.mtu || undefined,
    promisc: b.promisc,
    allmulti: b.allmulti,
    txQLen: b.txQLen,
  };
}

/** Differences between what was asked and what the link has, as CHECK reports them. */
export function linkMismatches(ifname: string, want: LinkSettings, link: LinkState): string[] {
  const out: string[] = [];
  if (want.mac !== undefined && want.mac !== link.address?.toLowerCase())
    out.push(`Tuning configured Ethernet of ${ifname} is ${want.mac}, current value is ${link.address}`);
  if (want.promisc && !link.flags.includes("PROMISC"))
    out.push(`Tuning link ${ifname} configured promisc is true, current value is false`);
  if (want.mtu !== undefined && want.mtu !== link.mtu)
    out.push(`Tuning configured MTU of ${ifname} is ${want.mtu}, current value is ${link.mtu}`);
  if (want.allmulti !== undefined && want.allmulti !== link.flags.includes("ALLMULTI")) {
    out.push(
      `Tuning configured all-multicast mode of ${ifname} is ${want.allmulti}, current value is ${!want.allmulti}`,
    );
  }
  if (want.txQLen !== undefined && want.txQLen !== link.txqlen)
    out.push(`Tuning configured Transmit Queue Length of ${ifname} is ${want.txQLen}, current value is ${link.txqlen}`);
  return out;
}

/** Sysctl values compare by their words: the kernel prints "4096 87380" back as "4096\t87380". */
export function sameSysctlValue(a: string, b: string): boolean {
  return a.trim().split(/\s+/).join(" ") === b.trim().split(/\s+/).join(" ");
}

/** The prevResult with the container interface's MAC replaced (entries in the sandbox preferred). */
export function withMac(result: Result, ifname: string, mac: string): Result {
  const ifaces = result.interfaces;
  if (!ifaces) return result;
  const inSandbox = ifaces.some((i) => i.name === ifname && i.sandbox);
  return {
    ...result,
    interfaces: ifaces.map((i) => (i.name === ifname && (!inSandbox || i.sandbox) ? { ...i, mac } : i)),
  };
}
