import { hexDigest } from "../hash.ts";
import { resolve } from "node:path";

/** The per-attachment arguments of one cnitool run (libcni's RuntimeConf). */
export interface RuntimeConf {
  containerId: string;
  netns: string;
  ifName: string;
  /** CNI_ARGS as ordered pairs, handed to every plugin as "K=V;K2=V2". */
  args: [string, string][];
  /** CAP_ARGS: offered to each plugin as runtimeConfig, for the capabilities it declares. */
  capabilityArgs?: Record<string, unknown>;
}

export const DEFAULT_IFNAME = "eth0";

/** Reads CNI_IFNAME, CNI_CONTAINERID, CNI_ARGS and CAP_ARGS for the netns given on the command line. */
export function runtimeConfFromEnv(netnsArg: string, env: NodeJS.ProcessEnv): RuntimeConf {
  const netns = resolve(netnsArg);
  return {
    containerId: env.CNI_CONTAINERID || containerIdFor(netns),
    netns,
    ifName: env.CNI_IFNAME || DEFAULT_IFNAME,
    args: cniArgsPairs(env.CNI_ARGS ?? ""),
    capabilityArgs: parseCapArgs(env.CAP_ARGS ?? ""),
  };
}

/** Upstream cnitool's container ID: "cnitool-" and the first 20 hex digits of sha512(absolute netns path). */
export function containerIdFor(absNetnsPath: string): string {
  return `cnitool-${hexDigest("sha512", absNetnsPath).slice(0, 20)}`;
}

/** "K1=V1;K2=V2" into pairs; empty pieces are skipped, a value may itself contain '='. */
export function cniArgsPairs(raw: string): [string, string][] {
  const pairs: [string, string][] = [];
  for (const item of raw.split(";")) {
    if (item === "") continue;
    const eq = item.indexOf("=");
    if (eq <= 0) throw new Error(`CNI_ARGS: ${JSON.stringify(item)} is not of the form KEY=VALUE`);
    pairs.push([item.slice(0, eq), item.slice(eq + 1)]);
  }
  return pairs;
}

/** CAP_ARGS must be a JSON object (or empty / null: no capability arguments). */
export function parseCapArgs(raw: string): Record<string, unknown> | undefined {
  if (raw === "") return undefined;
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch (e) {
    throw new Error(`CAP_ARGS is not a JSON object: ${(e as Error).message}`);
  }
  if (v === null) return undefined;
  if (typeof v !== "object" || Array.isArray(v)) {
    throw new Error(`CAP_ARGS is not a JSON object: got ${Array.isArray(v) ? "an array" : `a ${typeof v}`}`);
  }
  return v as Record<string, unknown>;
}
