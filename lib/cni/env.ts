import { CniError, Code } from "./errors.ts";

export const COMMANDS = ["ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC"] as const;
export type Command = (typeof COMMANDS)[number];

/** The CNI_* variables of one invocation, validated before anything touches the kernel or disk. */
export interface CniEnv {
  command: Command;
  containerId: string;
  netns: string;
  ifname: string;
  args: string;
  path: string[];
}

// Same rule as the reference skel and libcni.
const ID_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

export function readEnv(env: NodeJS.ProcessEnv): CniEnv {
  const command = env.CNI_COMMAND ?? "";
  if (!(COMMANDS as readonly string[]).includes(command)) {
    throw new CniError(Code.InvalidEnv, `unknown CNI_COMMAND: ${command}`);
  }
  const cmd = command as Command;
  const required: string[] = [];
  if (cmd === "ADD" || cmd === "DEL" || cmd === "CHECK") required.push("CNI_CONTAINERID", "CNI_IFNAME");
  if (cmd === "ADD" || cmd === "CHECK") required.push("CNI_NETNS");
  if (cmd === "GC") required.push("CNI_PATH");
  const missing = required.filter((k) => !env[k]);
  if (missing.length > 0) {
    throw new CniError(Code.InvalidEnv, `required env variables [${missing.join(",")}] missing`);
  }
  const parsed: CniEnv = {
    command: cmd,
    containerId: env.CNI_CONTAINERID ?? "",
    netns: env.CNI_NETNS ?? "",
    ifname: env.CNI_IFNAME ?? "",
    args: env.CNI_ARGS ?? "",
    path: (env.CNI_PATH ?? "").split(":").filter((p) => p !== ""),
  };
  if (required.includes("CNI_CONTAINERID")) validateContainerId(parsed.containerId);
  if (required.includes("CNI_IFNAME")) validateIfname(parsed.ifname, "CNI_IFNAME");
  // A relative path would be checked here against our working directory but read by `ip ... netns`
  // as a name under /var/run/netns, or even as a PID: only absolute paths mean one thing.
  if (parsed.netns !== "" && !parsed.netns.startsWith("/") && (cmd === "ADD" || cmd === "DEL" || cmd === "CHECK")) {
    throw new CniError(Code.InvalidEnv, "CNI_NETNS: must be an absolute path", parsed.netns);
  }
  return parsed;
}

export function validateContainerId(id: string) {
  if (!ID_RE.test(id) || id.length > 1024) {
    throw new CniError(Code.InvalidEnv, "invalid characters in containerID", id);
  }
}

/**
 * Linux interface name rules (1..15 bytes, no '/', ':' or whitespace, not '.' or '..'), and
 * stricter than Linux and the reference: of ASCII only letters, digits, '-', '_' and '.', and no
 * control or invisible characters. Names reach ip's batch parser, iptables and nft scripts, sysfs
 * paths and the kernel's "%d" name templates; a name none of them can misread needs no escaping.
 */
export function validateIfname(name: string, field: string, code: number = Code.InvalidEnv) {
  let why = "";
  if (name === "") why = "interface name is empty";
  else if (Buffer.byteLength(name) > 15) why = "interface name is too long (at most 15 bytes)";
  else if (name === "." || name === "..") why = "interface name is . or ..";
  else if (/[/:\s]/.test(name)) why = "interface name contains '/', ':' or whitespace";
  else if (/[\x00-\x2c\x3b-\x40\x5b-\x5e\x60\x7b-\x7f]|[\p{C}\p{Z}]/u.test(name))
    why = "interface name may only contain letters, digits, '-', '_' and '.'";
  if (why) throw new CniError(code, `${field}: ${why}`, JSON.stringify(name));
}

/**
 * Network names become path components (IPAM store, caches): the reference's characters, and at
 * most NAME_MAX (255) bytes, so an over-long name is refused before anything is created.
 */
export function validateNetworkName(name: unknown) {
  if (typeof name !== "string" || name === "") throw new CniError(Code.InvalidConfig, "missing network name");
  if (name.length > 255)
    throw new CniError(
      Code.InvalidConfig,
      "network name is too long (at most 255 characters)",
      `${name.slice(0, 64)}...`,
    );
  if (!ID_RE.test(name) || name.includes("..")) {
    throw new CniError(Code.InvalidConfig, "invalid characters found in network name", name);
  }
}
