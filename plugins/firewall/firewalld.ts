import { CniError, Code } from "../../lib/cni/errors.ts";
import { busCall, systemBusPresent } from "../../lib/kernel/dbus.ts";

/**
 * The firewall plugin's firewalld backend: each container address becomes a source of a firewalld
 * zone (runtime configuration only, as the reference does through the same D-Bus methods).
 */
const NAME = "org.fedoraproject.FirewallD1";
const PATH = "/org/fedoraproject/FirewallD1";
const ZONE_IFACE = `${NAME}.zone`;

/** Whether firewalld answers on the system bus (the reference asks it for its default zone). */
export function firewalldRunning(): boolean {
  if (!systemBusPresent()) return false;
  return busCall(NAME, PATH, NAME, "getDefaultZone").ok;
}

/** The error for a config that asks for firewalld on a node where it is not running. */
export function firewalldNotRunning(): CniError {
  const where = systemBusPresent() ? `${NAME} does not answer on the system D-Bus` : "no system D-Bus socket found";
  return new CniError(Code.Internal, `firewall: backend "firewalld" selected but firewalld is not running (${where})`);
}

/** Puts each source in the zone; on failure removes the ones this call added, then throws. */
/** Binds the sources to `zone`; returns the ones this call bound (not those already bound). */
export function addSources(zone: string, sources: readonly string[]): string[] {
  const added: string[] = [];
  for (const src of sources) {
    const r = busCall(NAME, PATH, ZONE_IFACE, "addSource", "ss", [zone, src]);
    // ZONE_ALREADY_SET: the source is already bound to this zone, which is what we want.
    if (r.ok || r.error.includes("ZONE_ALREADY_SET")) {
      if (r.ok) added.push(src);
      continue;
    }
    removeSources(zone, added);
    throw new CniError(Code.Internal, `failed to add the address ${src} to ${zone} zone: ${r.error}`);
  }
  return added;
}

/** Best effort, as DEL must be: a source that is not bound is fine. */
export function removeSources(zone: string, sources: readonly string[]) {
  for (const src of sources) busCall(NAME, PATH, ZONE_IFACE, "removeSource", "ss", [zone, src]);
}

/** Sources that are not bound to `zone`, with the zone firewalld reports for them instead. */
export function sourcesOutsideZone(zone: string, sources: readonly string[]): string[] {
  const bad: string[] = [];
  for (const src of sources) {
    const r = busCall(NAME, PATH, ZONE_IFACE, "getZoneOfSource", "s", [src]);
    const got = r.ok ? String(r.data[0] ?? "") : "";
    if (got !== zone) bad.push(`${src} (zone ${got ? JSON.stringify(got) : "none"})`);
  }
  return bad;
}
