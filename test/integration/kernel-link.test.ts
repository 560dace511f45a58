import { test } from "uvu";
import * as assert from "uvu/assert";
import { join } from "node:path";
import type { LinkOp, LinkOutcome } from "../../lib/kernel/link.ts";
import { type Sandbox, sandboxed, sh } from "../helpers/sandbox.ts";

const inSandbox = sandboxed(test, "klink");

// The typed link layer's executor on the real kernel: ops for ip and for bridge in one list run as
// consecutive tool processes, reports come back typed and in op order, and a failure anywhere names
// its op by its index in the whole list and stops what follows. Sync and async forms alike.

const FIXTURE = join(import.meta.dirname, "..", "fixtures", "apply-link-ops.ts");
const BUN = join(import.meta.dirname, "..", "..", "node_modules", ".bin", "bun");

function apply(sb: Sandbox, ops: LinkOp[], async: boolean, netlink: boolean): LinkOutcome {
  const r = sb.inNode([BUN, FIXTURE], { input: JSON.stringify({ ops, async, netlink }) });
  return JSON.parse(r.stdout) as LinkOutcome;
}

// With the netlink carrier installed the same lists run split: its runs in-process, the VXLAN
// device and FDB entries through ip and bridge, indexes still counted in the whole list.
for (const [async, netlink] of [
  [false, false],
  [true, false],
  [false, true],
  [true, true],
] as const) {
  const form = `${async ? "async" : "sync"}${netlink ? ", netlink carrier" : ""}`;

  inSandbox(
    `${form}: a bridge, a veth into a container, a VXLAN device with an FDB entry and reports, in one list`,
    (sb) => {
      const ctr = sb.addContainer();
      const ops: LinkOp[] = [
        { op: "link-add", dev: "kbr0", mac: "02:00:00:00:aa:01", kind: { type: "bridge" } },
        { op: "link-set", dev: "kbr0", up: true },
        {
          op: "link-add",
          dev: "kveth0",
          mtu: 1400,
          kind: { type: "veth", peer: { name: "eth0", mtu: 1400, netns: ctr.path } },
        },
        { op: "link-set", dev: "kveth0", master: "kbr0" },
        { op: "port-set", dev: "kveth0", hairpin: true, isolated: false },
        { op: "addr", verb: "add", dev: "kbr0", cidr: "10.77.0.1/24", broadcast: true },
        {
          op: "link-add",
          dev: "kvx0",
          kind: { type: "vxlan", id: 42, local: "10.77.0.1", parent: "kbr0", port: 4789, learning: false },
        },
        { op: "fdb", verb: "append", dev: "kvx0", mac: "00:00:00:00:00:00", dst: "10.77.0.2" },
        { op: "show", dev: "kveth0" },
        { op: "ports", master: "kbr0" },
        { op: "routes", family: 4 },
      ];
      const r = apply(sb, ops, async, netlink);
      assert.ok(r.ok, `op ${r.failedOp}: ${r.stderr}`);
      assert.is(r.groups.length, 3, "one group per report op");
      const veth = r.shown.find((l) => l.ifname === "kveth0");
      assert.is(veth?.master, "kbr0");
      assert.is(veth?.mtu, 1400);
      assert.is(veth?.linkinfo?.info_kind, "veth");
      assert.equal(
        (r.groups[1] as { ifname: string }[]).map((l) => l.ifname),
        ["kveth0"],
      );
      const routes = r.groups[2] as { dst: string; dev?: string }[];
      assert.ok(
        routes.some((x) => x.dst === "10.77.0.0/24" && x.dev === "kbr0"),
        JSON.stringify(routes),
      );
      const fdb = JSON.parse(sb.inNode(["bridge", "-j", "fdb", "show", "dev", "kvx0"]).stdout) as {
        mac: string;
        dst?: string;
        state?: string;
      }[];
      assert.ok(
        fdb.some((e) => e.mac === "00:00:00:00:00:00" && e.dst === "10.77.0.2" && e.state === "permanent"),
        JSON.stringify(fdb),
      );
      const peer = JSON.parse(sh(["ip", "-n", ctr.name, "-j", "link", "show", "dev", "eth0"]).stdout)[0];
      assert.is(peer.mtu, 1400, "the peer was created in the container namespace");
    },
  );

  inSandbox(`${form}: a failure in the bridge run names its op in the whole list and stops the ops after it`, (sb) => {
    const ops: LinkOp[] = [
      { op: "link-add", dev: "kd0", kind: { type: "bridge" } },
      { op: "fdb", verb: "append", dev: "kabsent", mac: "00:00:00:00:00:00", dst: "10.77.0.2" },
      { op: "link-add", dev: "kd1", kind: { type: "bridge" } },
    ];
    const r = apply(sb, ops, async, netlink);
    assert.not.ok(r.ok);
    assert.is(r.failedOp, 1);
    assert.ok(r.stderr.length > 0);
    const names = (JSON.parse(sb.inNode(["ip", "-j", "link", "show"]).stdout) as { ifname: string }[]).map(
      (l) => l.ifname,
    );
    assert.ok(names.includes("kd0"), "the op before ran");
    assert.not.ok(names.includes("kd1"), "the op after did not");
    const late = apply(
      sb,
      [
        { op: "link-set", dev: "kd0", up: true },
        { op: "show", dev: "knone" },
      ],
      async,
      netlink,
    );
    assert.is(late.failedOp, 1, "a failing report op in an ip run");
  });
}

test.run();
