import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BIN, type Sandbox, sh } from "../helpers/sandbox.ts";
import type { FuzzPaths } from "./harness.ts";

/**
 * The sandbox node every binary fuzz case runs on (fuzz-binary.test.ts and replay.ts share it, so
 * a replayed case sees the same paths and the same random choices): two containers (the second
 * with an eth0 for tuning), a resolv.conf, odd files to point paths at, and the data directories.
 */
export interface FuzzNode {
  sb: Sandbox;
  ctrA: { name: string; path: string };
  ctrB: { name: string; path: string };
  paths: (plugin: string) => FuzzPaths;
  dataDirs: string[];
  cwd: string;
  skipFiles: string[];
}

export function fuzzNode(sb: Sandbox): FuzzNode {
  const ctrA = sb.addContainer();
  const ctrB = sb.addContainer();
  sb.inNs(ctrB.name, ["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"]);
  // A master for the sublink plugins (macvlan, ipvlan, vlan): a bridge, so no veth is left to explain.
  sb.inNode(["ip", "link", "add", "fzm0", "type", "bridge"]);
  sb.inNode(["ip", "link", "set", "fzm0", "up"]);
  // A device for host-device to move (this kernel has ifb, not dummy).
  sb.inNode(["ip", "link", "add", "fzh0", "type", "ifb"]);
  const resolv = join(sb.tmp, "resolv.conf");
  writeFileSync(resolv, "nameserver 10.63.0.53\nsearch fz.example\n");
  const subnetEnv = join(sb.tmp, "subnet.env");
  writeFileSync(
    subnetEnv,
    "FLANNEL_NETWORK=10.63.0.0/16\nFLANNEL_SUBNET=10.63.12.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
  );
  const notADir = join(sb.tmp, "not-a-dir");
  writeFileSync(notADir, "");
  const fifo = join(sb.tmp, "fifo");
  sh(["mkfifo", fifo]);
  const cwd = join(sb.tmp, "cwd");
  mkdirSync(cwd);
  const dataDirs = [join(sb.tmp, "ipam"), join(sb.tmp, "ipam2"), join(sb.tmp, "tuning")];
  const logFile = join(sb.tmp, "plugin.log");
  const paths = (plugin: string): FuzzPaths => ({
    dataDir: dataDirs[0]!,
    tuningDir: dataDirs[2]!,
    resolv,
    subnetEnv,
    logFile,
    netns: plugin === "tuning" ? ctrB.path : ctrA.path,
    badNetns: ["/var/run/netns/tc-reliab-gone", notADir, "", "/proc/self/ns/net"],
    oddResolv: ["/dev/null", sb.tmp, join(sb.tmp, "missing.conf"), "/dev/zero", fifo],
    oddDataDirs: [notADir, dataDirs[1]!],
    bin: BIN,
  });
  return { sb, ctrA, ctrB, paths, dataDirs, cwd, skipFiles: [...dataDirs, logFile, cwd] };
}
