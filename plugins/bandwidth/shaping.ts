import { CniError, Code } from "../../lib/cni/errors.ts";
import type { Interface, Result } from "../../lib/cni/result.ts";
import { hexDigest } from "../../lib/hash.ts";
import { applyLinkOps, showLink, type IpLink } from "../../lib/kernel/link.ts";
import { applyTcOps, qdiscsOf, type TcOp, type TcQdisc, type TokenBucket } from "../../lib/kernel/tc.ts";
import type { Shaping } from "./config.ts";

const internal = (msg: string, details?: string) => new CniError(Code.Internal, msg, details);

/** The reference's ifb name: "bwp" and the start of SHA-512(network name + container ID). */
export const ifbName = (network: string, containerId: string) =>
  `bwp${hexDigest("sha512", network + containerId).slice(0, 12)}`;

/**
 * The host end of the container interface's veth: the link whose index the container end names as
 * its peer, which prevResult must list as a host interface (no sandbox), as the reference requires.
 */
export function hostPeer(netns: string, ifname: string, prev: Result): IpLink {
  const inside = showLink(ifname, { netns });
  if (!inside) throw internal(`container interface ${ifname} not found in ${netns}`);
  if (inside.linkinfo?.info_kind !== "veth" || !inside.link_index)
    throw internal(`container interface ${ifname} has no veth peer`, `it is a ${inside.linkinfo?.info_kind ?? "link"}`);
  const r = applyLinkOps([{ op: "links" }]);
  const host = r.shown.find((l) => l.ifindex === inside.link_index);
  const listed = host && (prev.interfaces ?? []).some((i) => !i.sandbox && i.name === host.ifname);
  if (!host || !listed) throw internal("no veth peer of container interface found in host ns");
  return host;
}

/**
 * Programs `shaping` on the host end `host`; returns the ifb device for the result when egress is
 * shaped. A failure removes what this call made.
 */
export function addShaping(host: IpLink, ifb: string, shaping: Shaping): Interface | undefined {
  let ifbLink: IpLink | undefined;
  if (shaping.egress) {
    const r = applyLinkOps([
      { op: "link-add", dev: ifb, kind: { type: "ifb" }, mtu: host.mtu },
      { op: "link-set", dev: ifb, up: true },
      { op: "show", dev: ifb },
    ]);
    ifbLink = r.shown.find((l) => l.ifname === ifb);
    if (!r.ok || !ifbLink) {
      // An ifb of this name that was there before (failedOp 0) is not this call's to remove.
      if (r.failedOp !== 0) deleteIfb(ifb);
      throw internal(`failed to create ifb device ${ifb}: ${r.stderr || "not found after creation"}`);
    }
  }
  const ops: TcOp[] = [];
  if (shaping.ingress) ops.push({ op: "tbf-add", dev: host.ifname, bucket: shaping.ingress });
  if (shaping.egress)
    ops.push(
      { op: "ingress-add", dev: host.ifname },
      { op: "redirect-add", dev: host.ifname, to: ifb },
      { op: "tbf-add", dev: ifb, bucket: shaping.egress },
    );
  const r = applyTcOps(ops);
  if (r.ok) return ifbLink && { name: ifb, mac: ifbLink.address };
  // What was added before the failing op goes (the ifb takes its own qdisc and filter with it); a
  // qdisc that was there before, which is what usually fails, stays.
  const made = r.failedOp === undefined ? ops : ops.slice(0, r.failedOp);
  applyTcOps(made.flatMap(removalOf), { force: true });
  if (ifbLink) deleteIfb(ifb);
  const what = r.failedOp === undefined ? "the shaping" : describe(ops[r.failedOp]!);
  throw internal(`failed to create ${what}: ${r.stderr}`);
}

const removalOf = (o: TcOp): TcOp[] => {
  if (o.op === "ingress-add") return [{ op: "ingress-del", dev: o.dev }];
  if (o.op === "tbf-add") return [{ op: "root-del", dev: o.dev }];
  return [];
};

function describe(o: TcOp): string {
  if (o.op === "redirect-add") return `the redirect of ${o.dev} to ${o.to}`;
  if (o.op === "ingress-add") return `the ingress qdisc on ${o.dev}`;
  return `the token bucket on ${o.dev}`;
}

const removeHostQdiscs = (dev: string) =>
  applyTcOps(
    [
      { op: "root-del", dev },
      { op: "ingress-del", dev },
    ],
    { force: true },
  );

/**
 * DEL: the ifb device (absent is fine) and, when the host end is known, its shaping qdiscs, which
 * the reference leaves for the veth's own removal.
 */
export function delShaping(host: string | undefined, ifb: string) {
  if (host) removeHostQdiscs(host);
  const r = deleteIfb(ifb);
  if (!r.ok && !/Cannot find device|does not exist/i.test(r.stderr))
    throw internal(`failed to delete ifb device ${ifb}: ${r.stderr}`);
}

const deleteIfb = (ifb: string) => applyLinkOps([{ op: "link-del", dev: ifb }]);

/** CHECK: each shaped direction has its bucket with the configured rate, burst and latency. */
export function checkShaping(host: string, ifb: string, shaping: Shaping) {
  const hostQdiscs = shaping.ingress || shaping.egress ? qdiscsOf(host) : [];
  if (shaping.ingress) checkBucket(hostQdiscs, host, shaping.ingress);
  if (shaping.egress) {
    if (!hostQdiscs.some((q) => q.kind === "ingress"))
      throw internal(`no ingress qdisc on ${host} redirecting to ${ifb}`);
    if (!showLink(ifb)) throw internal(`ifb device ${ifb} not found`);
    checkBucket(qdiscsOf(ifb), ifb, shaping.egress);
  }
}

function checkBucket(qdiscs: TcQdisc[], dev: string, want: TokenBucket) {
  const tbf = qdiscs.find((q) => q.kind === "tbf" && q.root);
  if (!tbf) throw internal(`no token bucket (tbf) qdisc on ${dev}`);
  const o = tbf.options ?? {};
  // The kernel keeps the burst as a time in ticks, so it reads back a byte or two off.
  if (o.rate !== want.rate) throw internal("Rate doesn't match", `${dev}: ${o.rate} bytes/s, want ${want.rate}`);
  if (o.burst === undefined || Math.abs(o.burst - want.burst) > Math.max(2, want.burst / 1000))
    throw internal("Burst doesn't match", `${dev}: ${o.burst} bytes, want ${want.burst}`);
  const latency = Math.round(((want.limit - want.burst) * 1_000_000) / want.rate);
  if (o.lat === undefined || Math.abs(o.lat - latency) > 1000)
    throw internal("Limit doesn't match", `${dev}: latency ${o.lat} us, want ${latency}`);
}
