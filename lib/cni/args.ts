import { CniError, Code } from "./errors.ts";

/**
 * Parses CNI_ARGS ("K=V;K2=V2") the way the reference does: pairs must have exactly one '=',
 * keys are case-sensitive, and an unknown key is an error unless IgnoreUnknown is true.
 */
export function parseCniArgs(raw: string, known: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  if (raw === "") return out;
  const unknown: string[] = [];
  let ignoreUnknown = false;
  for (const piece of raw.split(";")) {
    const kv = piece.split("=");
    if (kv.length !== 2) throw new CniError(Code.InvalidEnv, `CNI_ARGS: invalid pair "${piece}"`);
    const [k, v] = kv as [string, string];
    if (k === "IgnoreUnknown") {
      const b = v.toLowerCase();
      if (!["1", "true", "0", "false"].includes(b)) {
        throw new CniError(Code.InvalidEnv, `CNI_ARGS: IgnoreUnknown must be true or false, not "${v}"`);
      }
      ignoreUnknown = b === "1" || b === "true";
    } else if (known.includes(k)) out[k] = v;
    else unknown.push(piece);
  }
  if (unknown.length > 0 && !ignoreUnknown) {
    throw new CniError(Code.InvalidEnv, `CNI_ARGS: unknown args [${unknown.join(" ")}]`);
  }
  return out;
}
