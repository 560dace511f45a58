import { CniError, Code } from "../cni/errors.ts";
import { parseUnicastMac } from "./mac.ts";

/** Config values the bridge plugin normalises, with the reference's error messages. */

export interface TrunkEntry {
  minID?: number;
  maxID?: number;
  id?: number;
}

const bad = (msg: string) => new CniError(Code.InvalidConfig, msg);
const inRange = (v: number) => v > 0 && v <= 4094;

/** vlanTrunk entries (ranges and/or single ids) as one sorted list without duplicates. */
export function collectVlanTrunk(entries: readonly TrunkEntry[] | undefined): number[] {
  const vlans = new Set<number>();
  for (const e of entries ?? []) {
    if (e.minID !== undefined && e.maxID !== undefined) {
      if (!inRange(e.minID)) throw bad("incorrect trunk minID parameter");
      if (!inRange(e.maxID)) throw bad("incorrect trunk maxID parameter");
      if (e.maxID < e.minID) throw bad("minID is greater than maxID in trunk parameter");
      for (let v = e.minID; v <= e.maxID; v++) vlans.add(v);
    } else if (e.maxID !== undefined) {
      throw bad("minID and maxID should be configured simultaneously, minID is missing");
    } else if (e.minID !== undefined) {
      throw bad("minID and maxID should be configured simultaneously, maxID is missing");
    }
    if (e.id !== undefined) {
      if (!inRange(e.id)) throw bad("incorrect trunk id parameter");
      vlans.add(e.id);
    }
  }
  return [...vlans].sort((a, b) => a - b);
}

/**
 * A 48-bit MAC in any of Go's notations (aa:bb:.., aa-bb-.., aabb.ccdd.eeff), as lowercase
 * colon-separated text. A multicast address cannot be an interface's and is refused here rather
 * than half-way through creating the pair.
 */
/** The container MAC (config, args or CNI_ARGS). */
export const parseMac = (text: string): string => parseUnicastMac(text, "mac");
