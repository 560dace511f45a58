import { existsSync } from "node:fs";
import { CniError } from "../../lib/cni/errors.ts";
import { cachedAttachments, DEFAULT_CACHE_DIR } from "../../lib/libcni/cache.ts";
import { loadNetwork, type NetworkConfigList } from "../../lib/libcni/conf.ts";
import { findPlugin, getVersionInfo } from "../../lib/cni/invoke.ts";
import {
  addNetworkList,
  checkNetworkList,
  delNetworkList,
  errorText,
  gcNetworkList,
  prefixError,
  statusNetworkList,
  type CniConfig,
  type GCAttachment,
} from "../../lib/libcni/libcni.ts";
import { runtimeConfFromEnv } from "../../lib/libcni/runtime.ts";
import { writeStdout } from "../../lib/cni/skel.ts";

// cnitool: upstream's command line and environment, driving the chain as libcni does.

const DEFAULT_NETCONF_PATH = "/etc/cni/net.d";

const USAGE = `usage:
  cnitool add    <net> <netns>   attach the container namespace to a network, print the result
  cnitool check  <net> <netns>   verify an earlier add (cniVersion 0.4.0 or later)
  cnitool del    <net> <netns>   detach the container namespace from a network
  cnitool gc     <net> [<netns>] DEL cached attachments of <net> whose netns is gone, then GC the plugins
  cnitool status <net> [<netns>] ask every plugin of <net> whether it can take ADDs (cniVersion 1.1.0)
  cnitool version <plugin>       print the CNI versions a plugin supports

<net> is the "name" of a network in $NETCONFPATH: *.conflist files are searched first, then
*.conf/*.json single-plugin files, which are upgraded to a one-plugin list. A path to a config
file is accepted too.

environment:
  CNI_PATH         plugin directories, colon-separated (required)
  NETCONFPATH      configuration directory (default ${DEFAULT_NETCONF_PATH})
  CNI_IFNAME       interface name in the container (default eth0)
  CNI_ARGS         extra plugin arguments, "K1=V1;K2=V2"
  CAP_ARGS         capability arguments as a JSON object, e.g.
                   {"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}
  CNI_CONTAINERID  container ID (default "cnitool-" + first 20 hex digits of sha512(<netns path>))
  CNI_CACHE_DIR    result cache directory (default ${DEFAULT_CACHE_DIR})
`;

class UsageError extends Error {}

/** Runs one cnitool command; returns the exit status (0 ok, 1 failure, 2 usage). */
export async function cnitool(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  try {
    await run(argv, env);
    return 0;
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`cnitool: ${e.message}\n${USAGE}`);
      return 2;
    }
    // Errors a plugin answered with (or the skel's name checks) carry a CNI error code: show it.
    const code = e instanceof CniError ? ` (CNI error code ${e.code})` : "";
    process.stderr.write(`cnitool: ${errorText(e)}${code}\n`);
    if (env.CNI_DEBUG && e instanceof Error && !(e instanceof CniError)) process.stderr.write(`${e.stack}\n`);
    return 1;
  }
}

async function run(argv: string[], env: NodeJS.ProcessEnv): Promise<void> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case undefined:
      throw new UsageError("no command given");
    case "-h":
    case "--help":
    case "help":
      writeStdout(USAGE);
      return;
    case "version": {
      if (rest.length !== 1) throw new UsageError("version needs exactly one argument: <plugin>");
      const type = rest[0]!;
      const cfg = cniConfig(env);
      try {
        const info = getVersionInfo(findPlugin(type, cfg.path));
        writeStdout(`${JSON.stringify(info)}\n`);
      } catch (e) {
        throw prefixError(`version of plugin ${JSON.stringify(type)}: `, e);
      }
      return;
    }
    case "add":
    case "check":
    case "del": {
      if (rest.length !== 2) throw new UsageError(`${cmd} needs exactly two arguments: <net> <netns>`);
      const list = load(rest[0]!, env);
      const rt = runtimeConfFromEnv(rest[1]!, env);
      const cfg = cniConfig(env);
      if (cmd === "add") {
        const result = await addNetworkList(cfg, list, rt);
        writeStdout(`${JSON.stringify(result, null, 4)}\n`);
      } else if (cmd === "check") await checkNetworkList(cfg, list, rt);
      else await delNetworkList(cfg, list, rt);
      return;
    }
    case "gc":
    case "status": {
      // Upstream wants a netns argument here too but has no use for it: accepted, not required.
      if (rest.length < 1 || rest.length > 2) throw new UsageError(`${cmd} needs <net> and optionally <netns>`);
      const list = load(rest[0]!, env);
      const cfg = cniConfig(env);
      if (cmd === "gc") await gcNetworkList(cfg, list, liveAttachments(cfg.cacheDir, list));
      else await statusNetworkList(cfg, list);
      return;
    }
    default:
      throw new UsageError(`unknown command ${JSON.stringify(cmd)}`);
  }
}

function load(net: string, env: NodeJS.ProcessEnv): NetworkConfigList {
  return loadNetwork(net, env.NETCONFPATH || DEFAULT_NETCONF_PATH);
}

function cniConfig(env: NodeJS.ProcessEnv): CniConfig {
  const path = (env.CNI_PATH ?? "").split(":").filter((d) => d !== "");
  if (path.length === 0) throw new Error("CNI_PATH is not set; point it at the plugin directory");
  return { path, cacheDir: env.CNI_CACHE_DIR || DEFAULT_CACHE_DIR };
}

/**
 * What cnitool tells GC to keep: the cached attachments of this network whose namespace still
 * exists. (Upstream cnitool passes no list at all, which makes libcni DEL every attachment of the
 * network; an operator's "gc" should only collect what is really gone.)
 */
function liveAttachments(cacheDir: string, list: NetworkConfigList): GCAttachment[] {
  return (cachedAttachments(cacheDir) ?? [])
    .filter((a) => a.network === list.name && a.netns !== "" && existsSync(a.netns))
    .map((a) => ({ containerID: a.containerId, ifname: a.ifName }));
}
