import { validAttachmentsOf } from "../../lib/cni/config.ts";
import { CniError, Code } from "../../lib/cni/errors.ts";
import { isV6, type Result } from "../../lib/cni/result.ts";
import { parseResult } from "../../lib/cni/result-schema.ts";
import type { PluginImpl, Request } from "../../lib/cni/skel.ts";
import { formatIP, parseCIDR } from "../../lib/ip/address.ts";
import { showLink } from "../../lib/kernel/link.ts";
import { prevResultAddresses } from "../../lib/net/interface-plugin.ts";
import { createExclusive, readNoFollow, replaceFile } from "../../lib/safe-file.ts";
import { parseConfig, type Config } from "./config.ts";
import { dnsmasqOptions, reloadOrStart, renderConf, requireDnsmasq, runningPid, stopDnsmasq } from "./dnsmasq.ts";
import { closeDns, openDns } from "./firewall.ts";
import { formatLine, type HostLine, ownedBy, parseHosts, parseLine, renderHosts, type Owner } from "./hosts.ts";
import { lockNetwork, networkFiles, removeNetwork, type NetworkFiles } from "./store.ts";

/**
 * dnsname (chained after bridge): containers on a network find each other by name. One dnsmasq per
 * network answers on the bridge's addresses from a hosts file listing each container's addresses
 * with its name (K8S_POD_NAME) and aliases; the result points the container's resolver at the
 * bridge and adds the network's domain to its search list. Files and layout are containers/dnsname's,
 * so either implementation takes over the other's state.
 */

function requirePrev(req: Request<Config>): Result {
  if (req.config.prevResult === undefined) throw new CniError(Code.Internal, "must be called as chained plugin");
  return parseResult(req.config.prevResult, req.version);
}

const bareIp = (address: string) => {
  const c = parseCIDR(address);
  if (!c) throw new CniError(Code.Internal, `invalid address in prevResult: ${address}`);
  return formatIP(c.ip);
};

/** The container's addresses: the only one, else those on an interface inside a sandbox (the reference's rule). */
function containerIps(prev: Result): string[] {
  const ips = prev.ips ?? [];
  const chosen =
    ips.length === 1
      ? ips
      : ips.filter((ip) => {
          if (ip.interface === undefined) return false;
          const iface = prev.interfaces?.[ip.interface];
          if (!iface) throw new CniError(Code.Internal, `prevResult: interface index ${ip.interface} out of range`);
          return !!iface.sandbox;
        });
  if (chosen.length === 0) throw new CniError(Code.Internal, "no ip address was found in the network");
  return chosen.map((ip) => bareIp(ip.address));
}

/** The bridge is the first interface of the bridge plugin's result; its global addresses serve DNS. */
function bridgeOf(prev: Result): { name: string; servers: string[] } {
  const name = prev.interfaces?.[0]?.name;
  if (!name) throw new CniError(Code.Internal, "prevResult names no bridge interface");
  const link = showLink(name);
  if (!link) throw new CniError(Code.Internal, `bridge ${name} not found`);
  const servers = (link.addr_info ?? []).filter((a) => a.scope === "global" && !a.dadfailed).map((a) => a.local);
  return { name, servers };
}

/** The bridge the network's dnsmasq.conf names (whoever wrote it), for a DEL without prevResult. */
function bridgeInConf(files: NetworkFiles): string | undefined {
  const line = (readNoFollow(files.conf) ?? "").split("\n").find((l) => l.startsWith("interface="));
  const name = line?.slice("interface=".length).trim() ?? "";
  return /^[A-Za-z0-9_.-]{1,15}$/.test(name) ? name : undefined;
}

const readHosts = (files: NetworkFiles): HostLine[] => parseHosts(readNoFollow(files.hosts) ?? "");

const writeHosts = (files: NetworkFiles, lines: readonly HostLine[]) =>
  replaceFile(files.hosts, renderHosts(lines), 0o644);

async function add(req: Request<Config>): Promise<Result> {
  const c = req.config;
  const prev = requirePrev(req);
  const ips = containerIps(prev);
  const bridge = bridgeOf(prev);
  requireDnsmasq();
  const files = networkFiles(c.name);
  const names = c.podName === undefined ? c.aliases : [c.podName, ...c.aliases];
  const lock = await lockNetwork(files);
  try {
    // Read first: a failure here has changed nothing. A repeated ADD of the same container
    // replaces its lines rather than doubling them.
    const others = readHosts(files).filter((l) => l.containerId !== req.containerId);
    let opened = false;
    try {
      // The network's first container writes the conf and opens the node's INPUT to its queries.
      if (createExclusive(files.conf, renderConf(dnsmasqOptions(files, c.domainName, bridge.name)), 0o600)) {
        opened = true;
        await openDns(bridge.name, bridge.servers.some(isV6) ? [4, 6] : [4]);
      }
      const ours = ips.map((ip) => parseLine(formatLine(ip, names, req.containerId)));
      writeHosts(files, [...others, ...ours]);
      reloadOrStart(files);
    } catch (e) {
      // Back to where this ADD found the network: its lines out, and with no one left, nothing of it.
      if (others.length > 0) writeHosts(files, others);
      else {
        stopDnsmasq(files);
        if (opened) await closeDns(bridge.name).catch(() => undefined);
        removeNetwork(files, lock);
      }
      throw e;
    }
  } finally {
    lock.release();
  }
  const dns = prev.dns ?? {};
  const nameservers = [...new Set([...bridge.servers, ...(dns.nameservers ?? [])])];
  const search = [...new Set([...(dns.search ?? []), c.domainName])];
  return { ...prev, dns: { ...dns, nameservers, search } };
}

function ownerOf(req: Request<Config>): Owner {
  const ips = prevResultAddresses(req).map(bareIp);
  return { containerId: req.containerId, ips, podName: req.config.podName };
}

/**
 * Takes out the lines `gone` picks, under the network's lock. With none left the network goes: the
 * INPUT rules, the daemon and every file (the reference since 1.3.0 removes the last two); the
 * rules first, so a failure there leaves the network for a retry. Otherwise dnsmasq re-reads.
 */
async function removeLines(files: NetworkFiles, gone: (l: HostLine) => boolean) {
  // Nothing of this network here: nothing to take back, and nothing to create.
  if (readNoFollow(files.hosts) === undefined && readNoFollow(files.conf) === undefined) return;
  const lock = await lockNetwork(files);
  try {
    const lines = readHosts(files);
    const keep = lines.filter((l) => !gone(l));
    if (keep.length === 0) {
      const bridge = bridgeInConf(files);
      if (bridge !== undefined) await closeDns(bridge);
      stopDnsmasq(files);
      removeNetwork(files, lock);
      return;
    }
    if (keep.length === lines.length) return;
    writeHosts(files, keep);
    if (runningPid(files) !== undefined) reloadOrStart(files);
  } finally {
    lock.release();
  }
}

async function del(req: Request<Config>) {
  const owner = ownerOf(req);
  await removeLines(networkFiles(req.config.name), (l) => ownedBy(l, owner));
}

/**
 * GC: our lines of containers the runtime no longer lists go. The reference's lines carry no ID,
 * so they stay (only a DEL can match them).
 */
async function gc(req: Request<Config>) {
  const valid = validAttachmentsOf(req.config);
  if (valid === undefined) return;
  const ids = new Set(valid.map((a) => a.containerID));
  await removeLines(networkFiles(req.config.name), (l) => l.containerId !== undefined && !ids.has(l.containerId));
}

async function check(req: Request<Config>) {
  const prev = requirePrev(req);
  const ips = containerIps(prev);
  const files = networkFiles(req.config.name);
  // Checked before the lock, which would make the directory: a CHECK leaves nothing behind.
  if (readNoFollow(files.conf) === undefined) throw new CniError(Code.Internal, `${files.conf} is missing`);
  const lock = await lockNetwork(files);
  try {
    if (runningPid(files) === undefined) throw new CniError(Code.Internal, "dnsmasq is not running");
    const lines = readHosts(files);
    const owner: Owner = { containerId: req.containerId, ips, podName: req.config.podName };
    const missing = ips.filter((ip) => !lines.some((l) => l.ip === ip && ownedBy(l, owner)));
    if (missing.length > 0)
      throw new CniError(Code.Internal, `no name entries for ${missing.join(", ")} in ${files.hosts}`);
  } finally {
    lock.release();
  }
}

const plugin: PluginImpl<Config> = { parseConfig, add, del, check, gc };
export default plugin;
