import { test } from "uvu";
import * as assert from "uvu/assert";
import type { Sandbox } from "../helpers/sandbox.ts";
import {
  EXT_V4,
  NETWORK,
  NODE_V4,
  PORTMAP,
  REF_PORTMAP,
  ask,
  attach,
  inTopology,
  portmapConfig,
  runPortmap,
  snapshot,
  startServer,
  withoutSharedChains,
} from "../helpers/portmap-net.ts";
import { runPlugin } from "../helpers/plugin-run.ts";

// The reference plugin on this machine (1.1.1) has only the iptables backend; it gets no
// "backend" key, ours gets "iptables" explicitly.
const MAPPINGS = [
  { hostPort: 8080, containerPort: 80, protocol: "tcp" },
  { hostPort: 8053, containerPort: 53, protocol: "udp" },
  { hostPort: 9090, containerPort: 80, protocol: "tcp", hostIP: NODE_V4 },
];
const ours = (prev?: unknown) => portmapConfig("iptables", MAPPINGS, prev);
const ref = (prev?: unknown) => portmapConfig(undefined, MAPPINGS, prev);

const filtered = (sb: Sandbox) => {
  const s = snapshot(sb);
  return { ipt4: withoutSharedChains(s.ipt4), ipt6: withoutSharedChains(s.ipt6) };
};

test("reference ADD, then our CHECK passes, traffic flows, and our DEL leaves nothing", () =>
  inTopology(async (sb, { ext, servers }) => {
    const a = attach(sb, "ctr-a");
    const before = filtered(sb);
    const add = runPortmap(sb, "ADD", a, ref(a.result), REF_PORTMAP);
    assert.is(add.code, 0, add.stdout);
    const check = runPortmap(sb, "CHECK", a, ours(a.result));
    assert.is(check.code, 0, check.stdout);
    servers.push(await startServer(sb, a.ns));
    assert.is(ask(sb, ext, "tcp", NODE_V4, 8080), `peer=${EXT_V4}`);
    const del = runPortmap(sb, "DEL", a, ours());
    assert.is(del.code, 0, del.stdout);
    assert.equal(filtered(sb), before);
    assert.is(ask(sb, ext, "tcp", NODE_V4, 8080), "error ECONNREFUSED");
  }));

test("our ADD, then the reference's DEL leaves nothing", () =>
  inTopology((sb) => {
    const a = attach(sb, "ctr-a");
    const before = filtered(sb);
    assert.is(runPortmap(sb, "ADD", a, ours(a.result)).code, 0);
    const del = runPortmap(sb, "DEL", a, ref(), REF_PORTMAP);
    assert.is(del.code, 0, del.stdout);
    assert.equal(filtered(sb), before);
  }));

test("same layout: our ADD over the reference's is a no-op in shape, and the two share the top-level chains", () =>
  inTopology((sb) => {
    const a = attach(sb, "ctr-a");
    const b = attach(sb, "ctr-b");
    const before = filtered(sb);
    assert.is(runPortmap(sb, "ADD", a, ref(a.result), REF_PORTMAP).code, 0);
    const sorted = (s: string) => s.split("\n").sort().join("\n");
    const refState = snapshot(sb);
    // Upgrade in place: our ADD of the same container leaves the same rules (order aside).
    assert.is(runPortmap(sb, "ADD", a, ours(a.result)).code, 0);
    const ourState = snapshot(sb);
    assert.is(sorted(ourState.ipt4), sorted(refState.ipt4));
    assert.is(sorted(ourState.ipt6), sorted(refState.ipt6));
    // A second container through the reference reuses our shared chains without duplicating jumps.
    assert.is(runPortmap(sb, "ADD", b, ref(b.result), REF_PORTMAP).code, 0);
    const both = snapshot(sb).ipt4;
    assert.is(both.split("\n").filter((l) => l.endsWith("-j CNI-HOSTPORT-DNAT")).length, 2, both);
    assert.is(both.split("\n").filter((l) => l.endsWith("-j CNI-HOSTPORT-MASQ")).length, 1, both);
    assert.is(runPortmap(sb, "DEL", a, ours()).code, 0);
    assert.is(runPortmap(sb, "DEL", b, ours()).code, 0);
    assert.equal(filtered(sb), before);
  }));

test("GC (iptables) removes this network's chains of containers not in the valid list, nothing else", () =>
  inTopology((sb) => {
    const a = attach(sb, "ctr-a");
    const b = attach(sb, "ctr-b");
    assert.is(runPortmap(sb, "ADD", a, ours(a.result)).code, 0);
    assert.is(runPortmap(sb, "ADD", b, ref(b.result), REF_PORTMAP).code, 0);
    // The same container ID in another network: not ours to collect.
    const other = { ...ours(b.result), name: "othernet" };
    assert.is(runPortmap(sb, "ADD", b, other).code, 0);
    const gc = {
      cniVersion: "1.1.0",
      name: NETWORK,
      type: "portmap",
      "cni.dev/valid-attachments": [{ containerID: "ctr-a", ifname: "eth0" }],
    };
    const r = runPlugin(sb, PORTMAP, { CNI_COMMAND: "GC", CNI_PATH: "/nonexistent" }, gc);
    assert.is(r.code, 0, r.stdout);
    const dump = snapshot(sb).ipt4;
    assert.match(dump, /id: \\"ctr-a\\"/);
    assert.not.match(dump, /name: \\"pmnet\\" id: \\"ctr-b\\"/);
    assert.match(dump, /name: \\"othernet\\" id: \\"ctr-b\\"/);
    // And the chains themselves: three before, two now.
    assert.is(dump.split("\n").filter((l) => l.startsWith(":CNI-DN-")).length, 2, dump);
    assert.is(runPortmap(sb, "CHECK", a, ours(a.result)).code, 0);
  }));

test.run();
