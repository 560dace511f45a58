import { sh, type Sandbox } from "../../test/helpers/sandbox.ts";
import { tcpThroughput } from "../../test/helpers/throughput.ts";
import { alternate, pairOf, type Pair, type Sides } from "../lib/ab.ts";
import type { Pod } from "../lib/side.ts";
import { must } from "./latency.ts";

/**
 * Scenario 7: TCP throughput (iperf3, one stream) through what the plugins set up, against the same
 * measurement between two namespaces joined by a plain veth pair: the ratio is the cost of the
 * configuration (bridge, hairpin, netfilter rules, NAT), not of the kernel or the machine.
 */

const SERVER_PORT = 5201;
const HOST_PORT = 15201;
const NODE_ADDR = "192.0.2.1";

export interface DataPath {
  /** Gbit/s per run. */
  veth: number[];
  podToPod: Pair<number[]>;
  externalToHostPort: Pair<number[]>;
  seconds: number;
}

/**
 * `baseline` holds the plain veth pair's namespaces; the caller removes it at the end of the whole
 * run, because the kernel's teardown of a namespace slows the netlink work of the scenarios after it.
 */
export async function dataPath(sides: Sides, baseline: Sandbox, runs: number, seconds: number): Promise<DataPath> {
  const out: DataPath = { veth: [], podToPod: pairOf(() => []), externalToHostPort: pairOf(() => []), seconds };
  const a = baseline.addNamespace("a");
  const b = baseline.addNamespace("b");
  sh(["ip", "link", "add", "eth0", "netns", a, "type", "veth", "peer", "name", "eth0", "netns", b]);
  for (const [ns, addr] of [
    [a, "198.51.100.1/24"],
    [b, "198.51.100.2/24"],
  ] as const) {
    baseline.inNs(ns, ["ip", "addr", "add", addr, "dev", "eth0"]);
    baseline.inNs(ns, ["ip", "link", "set", "eth0", "up"]);
    baseline.inNs(ns, ["ip", "link", "set", "lo", "up"]);
  }
  const pods = pairOf(() => [] as Pod[]);
  const setups = pairOf(() => ({ server: "", client: "", serverIp: "", external: "" }));
  for (const key of ["ours", "reference"] as const) {
    const side = sides[key];
    const server = side.newPod(HOST_PORT, SERVER_PORT);
    const client = side.newPod();
    pods[key].push(server, client);
    must(await side.addPod(server), side, "ADD of the iperf3 server pod");
    must(await side.addPod(client), side, "ADD of the iperf3 client pod");
    const external = side.sandbox.addExternalHost(`${NODE_ADDR}/24`, "192.0.2.2/24");
    setups[key] = { server: server.netns, client: client.netns, serverIp: server.ip!, external };
  }
  for (let i = 0; i < runs; i++) {
    out.veth.push(await iperf(b, a, "198.51.100.2", SERVER_PORT, SERVER_PORT, seconds));
    await alternate(sides, 1, async (_side, key) => {
      const s = setups[key];
      out.podToPod[key].push(await iperf(s.server, s.client, s.serverIp, SERVER_PORT, SERVER_PORT, seconds));
      out.externalToHostPort[key].push(await iperf(s.server, s.external, NODE_ADDR, HOST_PORT, SERVER_PORT, seconds));
    });
  }
  // Later scenarios count the pods on the bridge.
  for (const key of ["ours", "reference"] as const) {
    for (const pod of pods[key]) must(await sides[key].delPod(pod), sides[key], "DEL of an iperf3 pod");
  }
  return out;
}

/** One iperf3 test in Gbit/s. */
const iperf = async (...args: Parameters<typeof tcpThroughput>) => (await tcpThroughput(...args)) / 1e9;
