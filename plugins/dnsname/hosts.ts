/**
 * The `addnhosts` file dnsmasq serves: one line per container address, `<ip>\t<name>[\t<alias>…]`,
 * the layout containers/dnsname writes and reads. Our lines end in `\t#cid=<container ID>`, a
 * comment to dnsmasq (and a trailing field the reference ignores), so a DEL finds a container's
 * lines by its ID, without prevResult and whatever its name; a container without any name still
 * gets a line (`#<ip>\t#cid=…`, all comment) so the file, and with it dnsmasq, lives while it does.
 */

export interface HostLine {
  ip: string;
  names: string[];
  /** The container's ID: ours write it, the reference's lines have none. */
  containerId?: string;
  /** The line as it was read, kept byte for byte when it is not ours to change. */
  raw: string;
}

const ID_MARK = "#cid=";

export function formatLine(ip: string, names: readonly string[], containerId: string): string {
  const hosts = names.length > 0 ? [ip, ...names].join("\t") : `#${ip}`;
  return `${hosts}\t${ID_MARK}${containerId}`;
}

export function parseLine(raw: string): HostLine {
  const fields = raw.split("\t");
  const last = fields.at(-1) ?? "";
  const containerId = last.startsWith(ID_MARK) ? last.slice(ID_MARK.length) : undefined;
  const hosts = containerId === undefined ? fields : fields.slice(0, -1);
  const ip = (hosts[0] ?? "").replace(/^#/, "");
  return { ip, names: hosts.slice(1).filter((n) => n !== "" && !n.startsWith("#")), containerId, raw };
}

export const parseHosts = (text: string): HostLine[] =>
  text
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map(parseLine);

export const renderHosts = (lines: readonly HostLine[]): string => lines.map((l) => `${l.raw}\n`).join("");

/** Which lines belong to a container being deleted. */
export interface Owner {
  containerId: string;
  /** Its addresses (from prevResult, without prefix), for lines the reference wrote. */
  ips: readonly string[];
  /** Its name, for reference lines when nothing better is known (no prevResult). */
  podName?: string;
}

/**
 * A line is the container's when it carries its ID; a line without an ID (the reference's) when it
 * has one of its addresses, or, when no address is known, its name, as the reference matches.
 */
export function ownedBy(line: HostLine, o: Owner): boolean {
  if (line.containerId !== undefined) return line.containerId === o.containerId;
  if (o.ips.length > 0) return o.ips.includes(line.ip);
  return o.podName !== undefined && line.names[0] === o.podName;
}
