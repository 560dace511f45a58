import { SUPPORTED_VERSIONS, resultFamily } from "../cni/versions.ts";
import { isObject } from "./gojson.ts";

/** A result in its wire shape (what plugins print and what the cache stores). */
export type WireResult = Record<string, unknown>;

// lib/cni/result.ts (and zod with it) loads only when a result is actually handled, so `version`,
// `status` and `gc` stay as cheap as the plugins' VERSION path.
const codec = async () => ({ ...(await import("../cni/result.ts")), ...(await import("../cni/result-schema.ts")) });

function checkVersion(version: string) {
  if (!(SUPPORTED_VERSIONS as readonly string[]).includes(version))
    throw new Error(`unsupported CNI result version "${version}"`);
}

/**
 * A plugin's ADD output, as libcni decodes it: a result without cniVersion is in the request's
 * version; it is kept in its own version, with the fields of that version's result type only.
 */
export async function decodePluginResult(stdout: string, requestVersion: string): Promise<WireResult> {
  let raw: unknown;
  try {
    raw = JSON.parse(stdout);
  } catch (e) {
    throw new Error(`failed to unmarshal raw result: ${(e as Error).message}`);
  }
  if (raw !== null && !isObject(raw)) throw new Error(`failed to unmarshal raw result: expected a JSON object`);
  const obj = { ...(raw ?? {}) };
  if (typeof obj.cniVersion !== "string" || obj.cniVersion === "") obj.cniVersion = requestVersion || "0.1.0";
  const version = obj.cniVersion as string;
  checkVersion(version);
  const { parseResult, toWire } = await codec();
  let result: Awaited<ReturnType<typeof codec>>["parseResult"] extends (...a: never[]) => infer R ? R : never;
  try {
    result = parseResult(obj, version);
  } catch (e) {
    throw new Error(`invalid result: ${(e as Error).message}`);
  }
  // A 0.1.0/0.2.0 result with no address (loopback answers so) is {"cniVersion","dns":{}} in Go, not an error.
  if (resultFamily(version) === "legacy" && !result.ips?.length) return { cniVersion: version, dns: result.dns ?? {} };
  return toWire(result, version);
}

/** A stored result converted to `version` (libcni GetAsVersion), so plugins get prevResult in the list's version. */
export async function convertResult(raw: unknown, version: string): Promise<WireResult> {
  if (!isObject(raw) || typeof raw.cniVersion !== "string") throw new Error("cached result has no cniVersion");
  checkVersion(raw.cniVersion);
  const target = version || "0.1.0";
  checkVersion(target);
  const { parseResult, toWire } = await codec();
  try {
    return toWire(parseResult(raw, raw.cniVersion), target);
  } catch (e) {
    throw new Error(
      `failed to convert cached result to config version ${JSON.stringify(target)}: ${(e as Error).message}`,
    );
  }
}
