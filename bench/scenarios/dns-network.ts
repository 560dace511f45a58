import { alternate, pairOf, type Pair } from "../lib/ab.ts";
import type { Sides } from "../lib/ab.ts";
import { DNS_DOMAIN, DNS_GATEWAY, type Side } from "../lib/side.ts";
import { BenchFailure, must, type Samples } from "./latency.ts";

export interface DnsPods {
  add: Samples;
  del: Samples;
  /** dig's own query time (ms, whole milliseconds) for a neighbour's name, from a container. */
  lookupMs: number[];
}

export interface DnsNetwork {
  /** Why it was not measured (a side without dnsname), or undefined. */
  skipped?: string;
  pods: Pair<DnsPods>;
}

const empty = (): DnsPods => ({ add: { wall: [], cpu: [] }, del: { wall: [], cpu: [] }, lookupMs: [] });

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
 * file rewritten, dnsmasq signalled); then, from a pod, lookups of the resident pod's name.
 */
export async function dnsNetwork(sides: Sides, iterations: number): Promise<DnsNetwork> {
  const out: DnsNetwork = { pods: pairOf(empty) };
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
    for (const key of ["ours", "reference"] as const)
      must(await sides[key].delPod(clients[key].pod!, {}, sides[key].dnsConf), sides[key], "dns client DEL");
  } finally {
    // The last DEL stops the network's dnsmasq and removes its files.
    for (const key of ["ours", "reference"] as const) {
      const pod = resident[key].pod;
      if (pod) await sides[key].delPod(pod, {}, sides[key].dnsConf);
    }
  }
  return out;
}
