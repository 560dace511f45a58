import { parseCniArgs } from "../cni/args.ts";
import { CniError, Code } from "../cni/errors.ts";

/**
 * A MAC address to give an interface (bridge's container end, tuning), in any of Go's spellings
 * (aa:bb:.., aa-bb-.., aabb.ccdd.eeff), normalised to lowercase colons. Multicast and all-zero
 * addresses are refused here, naming the field, rather than by the kernel halfway through an ADD.
 */
export function parseUnicastMac(raw: string, field: string): string {
  const bad = (why: string) => new CniError(Code.InvalidConfig, `invalid network config: ${field}: ${why}`, raw);
  const m = /^([0-9a-f]{2})([:-])([0-9a-f]{2})\2([0-9a-f]{2})\2([0-9a-f]{2})\2([0-9a-f]{2})\2([0-9a-f]{2})$/i.exec(raw);
  const dotted = /^([0-9a-f]{4})\.([0-9a-f]{4})\.([0-9a-f]{4})$/i.exec(raw);
  let bytes: number[];
  if (m) bytes = [m[1], m[3], m[4], m[5], m[6], m[7]].map((h) => parseInt(h!, 16));
  else if (dotted) bytes = dotted.slice(1).flatMap((q) => [parseInt(q!.slice(0, 2), 16), parseInt(q!.slice(2), 16)]);
  else throw bad(`invalid MAC address ${JSON.stringify(raw)}`);
  if ((bytes[0]! & 1) === 1) throw bad(`MAC address ${raw} is not unicast (multicast bit set)`);
  if (bytes.every((b) => b === 0)) throw bad("MAC address must not be all zeros");
  return bytes.map((b) => b.toString(16).padStart(2, "0")).join(":");
}

/**
 * The MAC macvlan and tap give their link, last wins as in the reference: the config's `mac`, then
 * CNI_ARGS `MAC`, then the runtime's (the mac capability); undefined for the kernel's own.
 */
export function requestedMac(c: { mac?: string; runtimeConfig?: { mac?: string } }, cniArgs: string) {
  const mac = c.runtimeConfig?.mac || parseCniArgs(cniArgs, ["MAC"]).MAC || c.mac || undefined;
  return mac === undefined ? undefined : parseUnicastMac(mac, "mac");
}
