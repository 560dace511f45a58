import { readdirSync } from "node:fs";
import { isAbsolute, join, normalize } from "node:path";
import { CniError, Code } from "../../lib/cni/errors.ts";
import type { IpLink } from "../../lib/kernel/link.ts";

/**
 * Which node device a config names, as the reference's getLink looks it up: by name, by MAC, by the
 * sysfs path of its kernel device, or by PCI address (its `net` directory, or a virtio child's).
 * `sysRoot` is where sysfs is mounted (/sys; a test gives a tree of its own).
 */

export interface Selector {
  device: string;
  hwaddr: string;
  kernelpath: string;
  pciBusID: string;
}

const notFound = (why: string) => new CniError(Code.Internal, `failed to find host device: ${why}`);

/** Go's net.ParseMAC for the 6-byte forms (colons, hyphens or dotted quads), lower-case. */
export function parseHwaddr(raw: string): string | undefined {
  let hex: string[] | undefined;
  if (/^[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}$/i.test(raw)) hex = raw.split(/[:-]/);
  else if (/^[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}$/i.test(raw))
    hex = raw.replaceAll(".", "").match(/../g) ?? undefined;
  return hex?.map((h) => h.toLowerCase()).join(":");
}

/** Entries of a sysfs directory, or undefined when it cannot be read. */
function entries(dir: string): string[] | undefined {
  try {
    return readdirSync(dir).sort();
  } catch {
    return undefined;
  }
}

/** The sysfs directory of a `kernelpath`, refused unless it is a device path (no way out of /sys/devices). */
function kernelNetDir(kernelpath: string, sysRoot: string): string {
  const clean = normalize(kernelpath);
  if (!isAbsolute(kernelpath) || !clean.startsWith("/sys/devices/") || clean !== kernelpath.replace(/\/+$/, ""))
    throw notFound(`kernel device path "${kernelpath}" must be absolute and begin with /sys/devices/`);
  return join(sysRoot, clean.slice("/sys".length), "net");
}

/** The `net` directory of a PCI device (or of its virtio child); the address is one path component. */
function pciNetDir(pci: string, sysRoot: string): string {
  if (pci.includes("/") || pci === "." || pci === ".." || pci.includes("\0"))
    throw notFound(`no net directory under pci device ${pci}`);
  const dev = join(sysRoot, "bus/pci/devices", pci);
  const direct = join(dev, "net");
  if (entries(direct) !== undefined) return direct;
  const virtio = (entries(dev) ?? [])
    .filter((e) => e.startsWith("virtio"))
    .map((e) => join(dev, e, "net"))
    .find((d) => entries(d) !== undefined);
  if (!virtio) throw notFound(`no net directory under pci device ${pci}`);
  return virtio;
}

/** The device the selector names among the node's links, in the reference's order of keys. */
export function findHostDevice(s: Selector, links: IpLink[], sysRoot = "/sys"): IpLink {
  const byName = (name: string) => links.find((l) => l.ifname === name);
  if (s.device) return byName(s.device) ?? throwIt(notFound("Link not found"));
  if (s.hwaddr) {
    const mac = parseHwaddr(s.hwaddr);
    if (!mac) throw notFound(`failed to parse MAC address "${s.hwaddr}": address ${s.hwaddr}: invalid MAC address`);
    return links.find((l) => l.address === mac) ?? throwIt(notFound("failed to find physical interface"));
  }
  if (s.kernelpath) {
    const dir = kernelNetDir(s.kernelpath, sysRoot);
    const names = entries(dir);
    if (names === undefined) throw notFound(`failed to find network devices at "${dir}"`);
    // The first entry that really is an interface here.
    for (const n of names) {
      const l = byName(n);
      if (l) return l;
    }
    throw notFound("failed to find physical interface");
  }
  const dir = pciNetDir(s.pciBusID, sysRoot);
  const names = entries(dir);
  if (!names?.length) throw notFound(`failed to find network devices at "${dir}"`);
  return byName(names[0]!) ?? throwIt(notFound("Link not found"));
}

function throwIt(e: Error): never {
  throw e;
}
