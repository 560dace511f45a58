import { alternate, pairOf, pool, type Pair } from "../lib/ab.ts";
import type { Sides } from "../lib/ab.ts";
import { DNS_BRIDGE, DNS_DOMAIN, DNS_GATEWAY, type Pod, type Side } from "../lib/side.ts";
import { BenchFailure, must, type Samples } from "./latency.ts";

export interface DnsPods {
  add: Samples;
  del: Samples;
  /** dig's own query time (ms, whole milliseconds) for a neighbour's name, from a container. */
  lookupMs: number[];
  /** The dnsname plugin alone, run directly with a bridge-shaped prevResult (no bridge, no client). */
  step: { add: Samples; del: Samples };
}

/** With many pods on the network: ADD of one more, and how long until its name resolves. */
export interface CrowdedDns {
  add: Samples;
  /** ms from the end of the ADD until dig from a neighbour first gets its address (one dig start included). */
  resolveMs: number[];
}

export interface DnsNetwork {
  /** Why it was not measured (a side without dnsname), or undefined. */
  skipped?: string;
  pods: Pair<DnsPods>;
  /** Pods on the network when `crowded` was measured. */
  crowd: number;
  crowded: Pair<CrowdedDns>;
}

const samples = (): Samples => ({ wall: [], cpu: [] });
const empty = (): DnsPods => ({
  add: samples(),
  del: samples(),
  lookupMs: [],
  step: { add: samples(), del: samples() },
});

/**
 * ADD then DEL of the dnsname plugin by itself for a container that is not on the bridge: what
 * dnsname adds to a pod's set-up (hosts file rewritten, dnsmasq signalled), without bridge's cost.
 * The address is outside host-local's use, so no real pod's name is touched.
 */
async function dnsnameStep(side: Side, key: "ours" | "reference", resident: Pod, n: number, into: DnsPods) {
  const ip = `10.96.250.${1 + (n % 250)}`;
  const stdin = JSON.stringify({
    cniVersion: "1.0.0",
    name: `bench-dns-${side.label}`,
    type: "dnsname",
    domainName: DNS_DOMAIN,
    prevResult: {
      cniVersion: "1.0.0",
      interfaces: [{ name: DNS_BRIDGE }, { name: `veth-step${n}` }, { name: "eth0", sandbox: resident.netnsPath }],
      ips: [{ address: `${ip}/16`, gateway: DNS_GATEWAY, interface: 2 }],
    },
  });
  const env = (command: string) => ({
    CNI_COMMAND: command,
    CNI_CONTAINERID: `dnsstep${n}`.padEnd(64, "0"),
    CNI_NETNS: resident.netnsPath,
    CNI_IFNAME: "eth0",
    CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAME=step-${n}`,
  });
  for (const [command, into_] of [
    ["ADD", into.step.add],
    ["DEL", into.step.del],
  ] as const) {
    const r = await side.runPlugin("dnsname", env(command), stdin);
    if (r.code !== 0) throw new BenchFailure(`${key}: dnsname ${command} alone failed: ${r.stdout.trim()}`);
    into_.wall.push(r.wallMs);
    into_.cpu.push(r.cpuMs);
  }
}

/** Asks until the name answers `want`; returns the ms it took. */
async function untilResolves(side: Side, netns: string, name: string, want: string): Promise<number> {
  const start = performance.now();
  for (;;) {
    try {
      await lookup(side, netns, name, want);
      return performance.now() - start;
    } catch (e) {
      if (performance.now() - start > 10_000) throw e;
    }
  }
}

/** One lookup of `name` at the network's dnsmasq from the pod's namespace: dig's query time. */
async function lookup(side: Side, netns: string, name: string, want: string): Promise<number> {
  const env = { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin" };
  const r = await side.worker.run(
    ["ip", "netns", "exec", netns, "dig", "+tries=1", "+time=2", `@${DNS_GATEWAY}`, name, "A"],
    env,
  );
  const answer = new RegExp(
    `^${name.replace(/\./g, "\\.")}\\.\\s+\\d+\\s+IN\\s+A\\s+${want.replace(/\./g, "\\.")}$`,
    "m",
  );
  const time = /^;; Query time: (\d+) msec$/m.exec(r.stdout);
  if (r.code !== 0 || !answer.test(r.stdout) || !time)
    throw new BenchFailure(
      `${side.label}: dig ${name} did not answer ${want}: ${r.stdout.trim().split("\n").slice(-4).join(" | ")}`,
    );
  return Number(time[1]);
}

/**
 * Scenario 9: ADD and DEL of a pod on a bridge + dnsname network, alternating sides, with one
 * resident pod on the network (so its dnsmasq runs and each ADD/DEL is the steady state: hosts
 * file rewritten, dnsmasq signalled); then, from a pod, lookups of the resident pod's name; then,
 * with `crowd` pods on the network, ADD of one more and the time until its name resolves.
 */
export async function dnsNetwork(sides: Sides, iterations: number, crowd: number): Promise<DnsNetwork> {
  const out: DnsNetwork = {
    pods: pairOf(empty),
    crowd,
    crowded: pairOf(() => ({ add: { wall: [], cpu: [] }, resolveMs: [] })),
  };
  const crowds = pairOf((): Pod[] => []);
  const missing = (["ours", "reference"] as const).filter((k) => !sides[k].has("dnsname"));
  if (missing.length > 0) {
    out.skipped = `dnsname not in ${missing.join(" and ")}`;
    return out;
  }
  const resident = pairOf(() => ({ pod: undefined as ReturnType<Side["newPod"]> | undefined }));
  try {
    for (const key of ["ours", "reference"] as const) {
      const side = sides[key];
      const pod = side.newPod();
      must(await side.addPod(pod, {}, side.dnsConf), side, "dns resident ADD");
      resident[key].pod = pod;
    }
    await alternate(sides, iterations, async (side, key) => {
      const pod = side.newPod();
      const add = must(await side.addPod(pod, {}, side.dnsConf), side, "dns ADD");
      const del = must(await side.delPod(pod, {}, side.dnsConf), side, "dns DEL");
      out.pods[key].add.wall.push(add.wallMs);
      out.pods[key].add.cpu.push(add.cpuMs);
      out.pods[key].del.wall.push(del.wallMs);
      out.pods[key].del.cpu.push(del.cpuMs);
    });
    await alternate(sides, iterations * 2, (side, key, i) =>
      dnsnameStep(side, key, resident[key].pod!, i, out.pods[key]),
    );
    const clients = pairOf(() => ({ pod: undefined as ReturnType<Side["newPod"]> | undefined }));
    for (const key of ["ours", "reference"] as const) {
      const side = sides[key];
      const pod = side.newPod();
      must(await side.addPod(pod, {}, side.dnsConf), side, "dns client ADD");
      clients[key].pod = pod;
    }
    await alternate(sides, iterations * 4, async (side, key) => {
      const target = resident[key].pod!;
      out.pods[key].lookupMs.push(
        await lookup(side, clients[key].pod!.netns, `pod-${target.index}.${DNS_DOMAIN}`, target.ip!),
      );
    });
    // The network filled to `crowd` pods (resident and client included), both sides at once.
    await Promise.all(
      (["ours", "reference"] as const).map(async (key) => {
        const side = sides[key];
        crowds[key] = Array.from({ length: Math.max(0, crowd - 3) }, () => side.newPod());
        await pool(crowds[key], 4, async (p) => must(await side.addPod(p, {}, side.dnsConf), side, "dns crowd ADD"));
      }),
    );
    await alternate(sides, iterations, async (side, key) => {
      const pod = side.newPod();
      const add = must(await side.addPod(pod, {}, side.dnsConf), side, "dns crowded ADD");
      out.crowded[key].add.wall.push(add.wallMs);
      out.crowded[key].add.cpu.push(add.cpuMs);
      const name = `pod-${pod.index}.${DNS_DOMAIN}`;
      out.crowded[key].resolveMs.push(await untilResolves(side, clients[key].pod!.netns, name, pod.ip!));
      must(await side.delPod(pod, {}, side.dnsConf), side, "dns crowded DEL");
    });
    for (const key of ["ours", "reference"] as const)
      must(await sides[key].delPod(clients[key].pod!, {}, sides[key].dnsConf), sides[key], "dns client DEL");
  } finally {
    await Promise.all(
      (["ours", "reference"] as const).map((key) =>
        pool(crowds[key], 4, (p) => sides[key].delPod(p, {}, sides[key].dnsConf)),
      ),
    );
    // The last DEL stops the network's dnsmasq and removes its files.
    for (const key of ["ours", "reference"] as const) {
      const pod = resident[key].pod;
      if (pod) await sides[key].delPod(pod, {}, sides[key].dnsConf);
    }
  }
  return out;
}
