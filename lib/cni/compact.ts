/**
 * Drops undefined, empty-string and empty-array fields: Go's omitempty on the string, slice and
 * pointer fields of the reference's structs, so the JSON (results, saved state) matches byte for byte.
 */
export function compact<T extends Record<string, unknown>>(o: T): T {
  for (const k of Object.keys(o)) {
    const v = o[k];
    if (v === undefined || v === "" || (Array.isArray(v) && v.length === 0)) delete o[k];
  }
  return o;
}
