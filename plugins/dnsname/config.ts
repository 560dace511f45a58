import { parseCniArgs } from "../../lib/cni/args.ts";
import { BaseConfig, GcAttachmentKeys, parseWith } from "../../lib/cni/config.ts";
import type { CniEnv } from "../../lib/cni/env.ts";
import { CniError, Code } from "../../lib/cni/errors.ts";
import * as z from "../../lib/cni/zod.ts";

/**
 * containers/dnsname's configuration: the network's `domainName` and, through the `aliases`
 * capability, the container's aliases; its name comes from CNI_ARGS K8S_POD_NAME. Every name and
 * the domain are checked here, before anything is written: they end up in dnsmasq's hosts file and
 * configuration, where a newline or a space would add a record or an option of its own.
 */

/** Podman sends aliases keyed by network name; CONVENTIONS.md documents a plain list: both count. */
const Aliases = z.union([z.record(z.string(), z.array(z.string())), z.array(z.string())]);

const DnsnameConfig = z.extend(BaseConfig, {
  ...GcAttachmentKeys,
  domainName: z.string(),
  runtimeConfig: z.optional(z.looseObject({ aliases: z.optional(Aliases) })),
});

export type Config = z.infer<typeof DnsnameConfig> & {
  /** The container's name (K8S_POD_NAME), when the runtime gave one. */
  podName?: string;
  /** Its aliases on this network, checked and without duplicates or the name itself. */
  aliases: string[];
};

/** The keys kubelet and Podman put in CNI_ARGS; any other needs IgnoreUnknown, as in the reference. */
const POD_ARGS = ["K8S_POD_NAME", "K8S_POD_NAMESPACE", "K8S_POD_INFRA_CONTAINER_ID", "K8S_POD_UID"];

// RFC 1123 labels: what a resolver asks for and what dnsmasq's hosts-file parser takes as one name.
const LABEL = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
// Container names and aliases as Podman allows them ([a-zA-Z0-9][a-zA-Z0-9_.-]*), cut into labels
// of at most 63: dnsmasq serves `_` and dotted names, and none of these characters can end a
// hosts-file field or line, so no record can be injected through them.
const HOST_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}(\.[A-Za-z0-9_-]{1,63})*$/;
const isHostName = (name: string) => name.length <= 253 && HOST_NAME.test(name);

const bad = (msg: string, details = "") => new CniError(Code.InvalidConfig, msg, details);

export function checkName(name: string, what: string): string {
  if (!isHostName(name))
    throw bad(
      `${what} ${JSON.stringify(name)} is not a DNS name`,
      "letters, digits, '_' and '-', starting with a letter or digit, in dot-separated labels of 1 to 63",
    );
  return name;
}

export function checkDomain(domain: string): string {
  const labels = domain.split(".");
  if (domain.length > 253 || labels.some((l) => !LABEL.test(l)))
    throw bad(`domainName ${JSON.stringify(domain)} is not a DNS domain name`, "labels of letters, digits and hyphens");
  return domain;
}

/**
 * ADD and CHECK refuse a bad name, alias or domain. DEL does not: ADD never wrote one, and a DEL
 * that failed on it would never succeed; a name that is no label is simply not used to match.
 */
export function parseConfig(raw: Record<string, unknown>, env: CniEnv): Config {
  const c = parseWith(DnsnameConfig, raw);
  const strict = env.command === "ADD" || env.command === "CHECK";
  if (strict) checkDomain(c.domainName);
  // GC and STATUS carry no container, so no CNI_ARGS of one.
  const args = env.command === "GC" || env.command === "STATUS" ? {} : parseCniArgs(env.args, POD_ARGS);
  const name = args.K8S_POD_NAME || undefined;
  const podName =
    strict && name !== undefined ? checkName(name, "container name") : name && isHostName(name) ? name : undefined;
  const given = c.runtimeConfig?.aliases;
  const list = given === undefined ? [] : Array.isArray(given) ? given : (given[c.name] ?? []);
  const checked = strict ? list.map((a) => checkName(a, "alias")) : [];
  const aliases = [...new Set(checked)].filter((a) => a !== podName);
  return { ...c, podName, aliases };
}
