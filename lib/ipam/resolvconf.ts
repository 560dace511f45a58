import { readFileSync } from "node:fs";
import { CniError, Code } from "../cni/errors.ts";
import type { DNS } from "../cni/result.ts";

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
        (dns.nameservers ??= []).push(values[0]!);
        break;
      case "domain":
        dns.domain = values[0]!;
        break;
      case "search":
        (dns.search ??= []).push(...values);
        break;
      case "options":
        (dns.options ??= []).push(...values);
        break;
    }
  }
  return dns;
}

export function readResolvConf(path: string): DNS {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new CniError(Code.IOFailure, `resolvConf ${path}: ${(e as Error).message}`);
  }
  return parseResolvConf(text);
}
