import { alternate, pairOf, pool, type Pair } from "../lib/ab.ts";
import type { Sides } from "../lib/ab.ts";
import { DNS_DOMAIN, DNS_GATEWAY, type Pod, type Side } from "../lib/side.ts";
import { BenchFailure, must, type Samples } from "./latency.ts";

export interface DnsPods {
  add: Samples;
  del: Samples;
  /** dig's own query time (ms, whole milliseconds) for a neighbour's name, from a container. */
  lookupMs: number[];
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

const empty = (): DnsPods => ({ add: { wall: [], cpu: [] }, del: { wall: [], cpu: [] }, lookupMs: [] });

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
