import { sh } from "./sandbox.ts";

/**
 * Which link kinds this kernel can create. The CI kernel has no modules and lacks ipvlan, 802.1Q
 * vlan, dummy and vrf; tests of those kinds skip here with the reason, and the User-Mode Linux
 * stage (a kernel that has them) runs the same files. Probed once per kind in a namespace made for
 * it (a veth end as the parent where the kind needs one).
 */
export type ProbedKind = "macvlan" | "ipvlan" | "vlan" | "vxlan" | "dummy" | "ifb" | "vrf" | "bridge";

const KIND_ARGS: Record<ProbedKind, string[]> = {
  macvlan: ["link", "p0", "type", "macvlan", "mode", "bridge"],
  ipvlan: ["link", "p0", "type", "ipvlan", "mode", "l2"],
  vlan: ["link", "p0", "type", "vlan", "id", "10"],
  vxlan: ["type", "vxlan", "id", "10", "dstport", "4789"],
  dummy: ["type", "dummy"],
  ifb: ["type", "ifb"],
  vrf: ["type", "vrf", "table", "10"],
  bridge: ["type", "bridge"],
};

const known = new Map<ProbedKind, string | undefined>();

/** Undefined when the kernel creates links of `kind`; else why not, for a test.skip message. */
export function missingLinkKind(kind: ProbedKind): string | undefined {
  if (known.has(kind)) return known.get(kind);
  const ns = `tc-probe-${process.pid.toString(36)}-${kind}`;
  sh(["ip", "netns", "add", ns]);
  try {
    sh(["ip", "-n", ns, "link", "add", "p0", "type", "veth", "peer", "name", "p1"]);
    const r = sh(["ip", "-n", ns, "link", "add", "probe0", ...KIND_ARGS[kind]], { allowFailure: true });
    const reason = r.code === 0 ? undefined : `this kernel cannot create ${kind} links (${r.stderr.trim()})`;
    known.set(kind, reason);
    return reason;
  } finally {
    sh(["ip", "netns", "del", ns], { allowFailure: true });
  }
}

/**
 * uvu's `test` when this kernel creates links of `kind`, else its `test.skip`, with the reason
 * printed once: the file's tests then run in the User-Mode Linux stage (test/uml/run.sh), whose
 * kernel has the kind. A file that uses this belongs in test/uml/files.txt.
 */
export function testNeeding<T extends { skip: unknown }>(kind: ProbedKind, test: T, file: string): T | T["skip"] {
  const reason = missingLinkKind(kind);
  if (reason === undefined) return test;
  console.log(`${file}: skipped, ${reason}; test/uml/run.sh runs it in User-Mode Linux`);
  return test.skip;
}
