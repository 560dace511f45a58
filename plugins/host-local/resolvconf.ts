import { CniError, Code } from "../../lib/cni/errors.ts";
import type { DNS } from "../../lib/cni/result.ts";
import { readRegularFile } from "../../lib/safe-file.ts";

/**
 * The reference's resolv.conf reader for `ipam.resolvConf`: nameserver, domain (last wins), search
 * and options; comments (# ;), blank lines and lines with fewer than two fields are skipped.
 */
export function parseResolvConf(text: string): DNS {
  const dns: DNS = {};
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const [key, ...values] = line.split(/\s+/);
    if (values.length === 0) continue;
    switch (key) {
      case "nameserver":
        dns.nameservers ??= [];
        dns.nameservers.push(values[0]!);
        break;
      case "domain":
        dns.domain = values[0]!;
        break;
      case "search":
        dns.search ??= [];
        dns.search.push(...values);
        break;
      case "options":
        dns.options ??= [];
        dns.options.push(...values);
        break;
    }
  }
  return dns;
}

const MAX_RESOLV_CONF = 1024 * 1024;

/**
 * Reads a regular file of at most 1 MiB: a FIFO would block (opened non-blocking, then refused)
 * and a device like /dev/zero would never end.
 */
export function readResolvConf(path: string): DNS {
  let text: string;
  try {
    text = readRegularFile(path, MAX_RESOLV_CONF);
  } catch (e) {
    throw new CniError(Code.IOFailure, `resolvConf ${path}: ${(e as Error).message}`);
  }
  return parseResolvConf(text);
}
