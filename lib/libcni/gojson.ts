/**
 * JSON as Go's encoding/json writes a map[string]interface{}: compact, object keys sorted at every
 * level, and <, >, & (plus U+2028/U+2029) escaped. libcni re-serialises every plugin configuration
 * through such a map, so this is the byte form a plugin receives from a libcni runtime.
 * Hand-written rather than JSON.stringify on re-built objects because JS enumerates integer-like
 * keys ("10", "9") before the others, whatever order they were inserted in.
 */
export function goMarshal(value: unknown): string {
  return htmlEscape(encode(value));
}

/** An object whose keys keep the given order (a Go struct), values encoded as goMarshal does. */
export function goMarshalStruct(fields: readonly (readonly [string, unknown])[]): string {
  const parts = fields.filter(([, v]) => v !== undefined).map(([k, v]) => `${JSON.stringify(k)}:${encode(v)}`);
  return htmlEscape(`{${parts.join(",")}}`);
}

function encode(v: unknown): string {
  if (v === null || v === undefined) return "null";
  if (Array.isArray(v)) return `[${v.map(encode).join(",")}]`;
  if (typeof v === "object") {
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${encode(o[k])}`).join(",")}}`;
  }
  return JSON.stringify(v);
}

// These characters only ever occur inside JSON strings, so replacing them in the whole text is safe.
const htmlEscape = (s: string) =>
  s.replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);

/** Go's %T for a decoded JSON value, for error messages that match libcni's. */
export function goTypeName(v: unknown): string {
  if (v === null) return "<nil>";
  if (Array.isArray(v)) return "[]interface {}";
  switch (typeof v) {
    case "number":
      return "float64";
    case "boolean":
      return "bool";
    case "string":
      return "string";
    default:
      return "map[string]interface {}";
  }
}

export { isObject } from "../is-object.ts";
