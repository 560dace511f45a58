/** Every spec version this suite speaks; VERSION answers this list. */
export const SUPPORTED_VERSIONS = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] as const;
export const CURRENT_VERSION = "1.1.0";

/** Compares dotted versions numerically; a missing version is 0.1.0 as the spec says. */
export function compareVersions(a: string, b: string): number {
  const pa = (a || "0.1.0").split(".").map(Number);
  const pb = (b || "0.1.0").split(".").map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

export const atLeast = (v: string, min: string) => compareVersions(v, min) >= 0;

/** The result family a version belongs to: legacy ip4/ip6, 0.3-0.4 with ips[].version, or 1.x. */
export type ResultFamily = "legacy" | "v04" | "v1";
export function resultFamily(version: string): ResultFamily {
  if (compareVersions(version, "0.3.0") < 0) return "legacy";
  if (compareVersions(version, "1.0.0") < 0) return "v04";
  return "v1";
}
