import { test } from "uvu";
import * as assert from "uvu/assert";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { REF_BIN, sh, type Sandbox, sandboxed } from "../helpers/sandbox.ts";
import {
  BRIDGE,
  REF_BRIDGE,
  addOk,
  addrsOf,
  bridgeConf,
  cni,
  cniAsync,
  cniNsenter,
  cniPath,
  link,
  linkNames,
  netfilter,
  nftMasqRules,
  ping,
  reservations,
  withPrev,
  type Ipam,
} from "../helpers/bridge-net.ts";
import { runPlugin } from "../helpers/plugin-run.ts";
import { nodeLinks } from "../helpers/node-state.ts";

const inSandbox = sandboxed(test, "brlife");

// What the bridge plugin leaves behind: CHECK against the kernel, DEL in every state of the
// container, interoperation with the reference plugin, rollback of a failed ADD, bad input, GC.

/** Everything ADD may create in the node besides the bridge itself (unless asked): ports, rules, reservations. */
function nodeState(sb: Sandbox, opts: { withBridge?: boolean } = {}) {
  return {
    links: nodeLinks(sb).filter((l) => opts.withBridge || l.split(" ")[0] !== "cni0"),
    netfilter: netfilter(sb),
    reservations: reservations(sb),
  };
}

// GC does not touch links (a deleted namespace takes its veth pair along, asynchronously).
const rulesAndReservations = (sb: Sandbox) => ({ netfilter: netfilter(sb), reservations: reservations(sb) });

inSandbox("CHECK passes on a fresh attachment, then fails once an address is removed by hand", (sb) => {
  const conf = bridgeConf(sb);
  const c = sb.addContainer();
  const r = addOk(sb, { netns: c.path }, conf);
  assert.is(cni(sb, "CHECK", { netns: c.path }, withPrev(conf, r)).code, 0);

  sb.inNs(c.name, ["ip", "addr", "del", "10.22.0.2/24", "dev", "eth0"]);
  const bad = cni(sb, "CHECK", { netns: c.path }, withPrev(conf, r));
  assert.is(bad.code, 1);
  assert.is(bad.json.msg, "Failed to match addr 10.22.0.2/24 on interface eth0");
});

inSandbox(
  "CHECK fails when the host veth is detached from the bridge, or a route is gone, or prevResult is missing",
  (sb) => {
    const conf = bridgeConf(sb);
    const c = sb.addContainer();
    const r = addOk(sb, { netns: c.path }, conf);
    assert.is(cni(sb, "CHECK", { netns: c.path }, conf).json.msg, "Required prevResult missing");

    sb.inNs(c.name, ["ip", "route", "del", "default"]);
    assert.match(
      cni(sb, "CHECK", { netns: c.path }, withPrev(conf, r)).json.msg,
      /^Expected Route .*0\.0\.0\.0\/0.* not found in routing table$/,
    );
    sb.inNs(c.name, ["ip", "route", "add", "default", "via", "10.22.0.1"]);
    assert.is(cni(sb, "CHECK", { netns: c.path }, withPrev(conf, r)).code, 0);

    sb.inNode(["ip", "link", "set", r.interfaces[1].name, "nomaster"]);
    assert.is(
      cni(sb, "CHECK", { netns: c.path }, withPrev(conf, r)).json.msg,
      "CNI veth created for bridge cni0 was not found",
    );
  },
);

inSandbox("DEL leaves no link, reservation or rule; a second DEL succeeds", (sb) => {
  const conf = bridgeConf(sb, { ipMasq: true });
  const first = sb.addContainer();
  addOk(sb, { id: "warm-up", netns: first.path }, conf); // the bridge exists before the snapshot
  const before = nodeState(sb);
  const c = sb.addContainer();
  const r = addOk(sb, { netns: c.path }, conf);
  assert.not.equal(nodeState(sb), before);
  for (let i = 0; i < 2; i++) {
    const d = cni(sb, "DEL", { netns: c.path }, withPrev(conf, r));
    assert.is(d.code, 0, d.stdout);
    assert.is(d.stdout, "");
    assert.equal(nodeState(sb), before);
    assert.equal(linkNames(sb, c.name), ["lo"]);
  }
});

inSandbox(
  "DEL after the namespace is gone (prevResult known), and with CNI_NETNS empty (nothing known): rules and reservation go",
  (sb) => {
    const conf = bridgeConf(sb, { ipMasq: true });
    const warm = sb.addContainer();
    addOk(sb, { id: "warm-up", netns: warm.path }, conf);
    const before = rulesAndReservations(sb);

    const gone = sb.addContainer();
    const r1 = addOk(sb, { id: "gone", netns: gone.path }, conf);
    sh(["ip", "netns", "del", gone.name]);
    assert.is(cni(sb, "DEL", { id: "gone", netns: gone.path }, withPrev(conf, r1)).code, 0);
    assert.equal(rulesAndReservations(sb), before);

    const empty = sb.addContainer();
    addOk(sb, { id: "empty", netns: empty.path }, conf);
    sh(["ip", "netns", "del", empty.name]);
    const d = cni(sb, "DEL", { id: "empty", netns: "" }, conf);
    assert.is(d.code, 0, d.stdout);
    assert.equal(rulesAndReservations(sb), before);
  },
);

for (const ipam of ["reference", "ours"] as Ipam[]) {
  inSandbox(`reference ADD + our DEL, and our ADD + reference DEL, leave nothing (${ipam} host-local)`, (sb) => {
    const path = cniPath(sb, ipam);
    const refPath = ipam === "ours" ? `${REF_BIN}:${path}` : REF_BIN;
    const conf = bridgeConf(sb, { ipMasq: true });
    const warm = sb.addContainer();
    addOk(sb, { id: "warm-up", netns: warm.path, path }, conf);
    const before = nodeState(sb);

    const a = sb.addContainer();
    const ra = addOk(
      sb,
      { id: "by-ref", netns: a.path, path: ipam === "ours" ? path : REF_BIN, binary: REF_BRIDGE },
      conf,
    );
    assert.not.equal(nodeState(sb).netfilter, before.netfilter);
    const check = cni(sb, "CHECK", { id: "by-ref", netns: a.path, path }, withPrev(conf, ra));
    assert.is(check.code, 0, `our CHECK of the reference's attachment: ${check.stdout}`);
    assert.is(cni(sb, "DEL", { id: "by-ref", netns: a.path, path }, withPrev(conf, ra)).code, 0);
    assert.equal(nodeState(sb), before);

    const b = sb.addContainer();
    const rb = addOk(sb, { id: "by-us", netns: b.path, path }, conf);
    const d = cni(
      sb,
      "DEL",
      { id: "by-us", netns: b.path, path: ipam === "ours" ? path : refPath, binary: REF_BRIDGE },
      withPrev({ ...conf, cniVersion: "1.0.0" }, rb),
    );
    assert.is(d.code, 0, d.stdout);
    assert.equal(nodeState(sb), before);
  });
}

inSandbox("a failed ADD (exhausted range) leaves no veth, reservation or rule", (sb) => {
  const conf = bridgeConf(sb, { ipMasq: true }, { rangeStart: "10.22.0.2", rangeEnd: "10.22.0.2" });
  const first = sb.addContainer();
  addOk(sb, { id: "first", netns: first.path }, conf);
  const before = nodeState(sb);
  const c = sb.addContainer();
  const r = cni(sb, "ADD", { id: "second", netns: c.path }, conf);
  assert.is(r.code, 1);
  assert.match(r.json.msg, /no IP addresses available|range.*full|exhausted/i);
  assert.equal(nodeState(sb), before);
  assert.equal(linkNames(sb, c.name), ["lo"]);
});

const FAILING_IPAM: [string, Record<string, unknown>, RegExp][] = [
  ["invalid subnet", { subnet: "10.22.0.0/33" }, /invalid|subnet/i],
  ["gateway outside the subnet", { gateway: "10.99.0.1" }, /gateway|not in|outside/i],
  ["unknown IPAM type", { type: "no-such-ipam" }, /no-such-ipam/],
];

for (const [what, ipam, msg] of FAILING_IPAM) {
  inSandbox(
    `a failed ADD (${what}) removes the bridge it created, but never one that was there before or has other ports`,
    async (sb) => {
      const c = sb.addContainer();
      const r = cni(sb, "ADD", { netns: c.path }, bridgeConf(sb, { ipMasq: true }, ipam));
      assert.is(r.code, 1, r.stdout);
      assert.match(r.json.msg, msg);
      assert.equal(linkNames(sb, sb.node), ["lo"], "no bridge and no veth left");
      assert.equal(nodeState(sb).reservations, []);
      assert.equal(linkNames(sb, c.name), ["lo"]);

      // A bridge that existed before the failed ADD stays, with its address.
      sb.inNode(["ip", "link", "add", "cni0", "type", "bridge"]);
      sb.inNode(["ip", "addr", "add", "10.22.0.1/24", "dev", "cni0"]);
      assert.is(cni(sb, "ADD", { netns: c.path }, bridgeConf(sb, {}, ipam)).code, 1);
      assert.equal(addrsOf(link(sb, sb.node, "cni0")), ["10.22.0.1/24"], "the existing bridge stays");

      // Failing ADDs racing good ones on a fresh node: whichever creates the bridge, the good ADDs
      // keep it and their ports on it.
      sb.inNode(["ip", "link", "del", "cni0"]);
      const good = [0, 1, 2].map(() => sb.addContainer());
      const runs = await Promise.all([
        ...good.map((g, i) => cniAsync(sb, "ADD", { id: `good-${i}`, netns: g.path }, bridgeConf(sb))),
        ...[0, 1, 2].map((i) =>
          cniAsync(sb, "ADD", { id: `bad-${i}`, netns: c.path, ifname: `eth${i + 1}` }, bridgeConf(sb, {}, ipam)),
        ),
      ]);
      runs.slice(0, 3).forEach((g, i) => {
        assert.is(g.code, 0, `good ADD ${i}: ${g.stdout}`);
        assert.is(
          link(sb, sb.node, g.json.interfaces[1].name)?.master,
          "cni0",
          `good ADD ${i}: its port is on the bridge`,
        );
      });
      runs.slice(3).forEach((b, i) => {
        assert.is(b.code, 1, `failing ADD ${i}`);
      });
    },
  );
}

inSandbox("a failure after IPAM (gateway address conflict) releases the address and removes the veth", (sb) => {
  const conf = bridgeConf(sb, { ipMasq: true });
  sb.inNode(["ip", "link", "add", "cni0", "type", "bridge"]);
  sb.inNode(["ip", "addr", "add", "10.99.0.1/24", "dev", "cni0"]);
  const before = nodeState(sb);
  const c = sb.addContainer();
  const r = cni(sb, "ADD", { netns: c.path }, conf);
  assert.is(r.code, 1);
  assert.is(r.json.msg, '"cni0" already has an IP address different from 10.22.0.1/24');
  assert.equal(nodeState(sb), before);
  assert.equal(linkNames(sb, c.name), ["lo"]);

  // forceAddress replaces the old address instead.
  const forced = addOk(sb, { netns: c.path }, bridgeConf(sb, { forceAddress: true }));
  // (host-local moves on past the address the failed ADD had taken and released.)
  assert.equal(
    reservations(sb).map((ip) => `${ip}/24`),
    [forced.ips[0].address],
  );
  assert.equal(
    link(sb, sb.node, "cni0")!
      .addr_info!.filter((a) => a.family === "inet")
      .map((a) => a.local),
    ["10.22.0.1"],
  );
});

inSandbox("ADDs racing to create the bridge all succeed, with distinct addresses on one bridge", async (sb) => {
  const conf = bridgeConf(sb, { ipMasq: true });
  const ctrs = [0, 1, 2, 3].map(() => sb.addContainer());
  const results = await Promise.all(ctrs.map((c, i) => cniAsync(sb, "ADD", { id: `race-${i}`, netns: c.path }, conf)));
  for (const r of results) assert.is(r.code, 0, r.stdout);
  const addrs = results.map((r) => r.json.ips[0].address).sort();
  assert.equal(new Set(addrs).size, 4);
  assert.equal(
    linkNames(sb, sb.node).filter((n) => n.startsWith("cni")),
    ["cni0"],
  );
  for (const r of results) assert.is(link(sb, sb.node, r.json.interfaces[1].name)!.master, "cni0");
  assert.equal(addrsOf(link(sb, sb.node, "cni0")), ["10.22.0.1/24"]);
  // Every result reports the bridge's real, final MAC (it must not move as ports join).
  const bridgeMac = link(sb, sb.node, "cni0")!.address;
  for (const r of results) assert.is(r.json.interfaces[0].mac, bridgeMac);
  assert.ok(ping(sb, ctrs[0]!.name, results[3]!.json.ips[0].address.split("/")[0]));
});

inSandbox(
  "with /sys showing another namespace the bridge is looked up with ip: reused, and a non-bridge refused",
  (sb) => {
    const conf = bridgeConf(sb);
    const a = sb.addContainer();
    const b = sb.addContainer();
    const ra = cniNsenter(sb, "ADD", { id: "a", netns: a.path }, conf);
    const rb = cniNsenter(sb, "ADD", { id: "b", netns: b.path }, conf);
    assert.is(ra.code, 0, ra.stdout);
    assert.is(rb.code, 0, rb.stdout);
    assert.equal(
      linkNames(sb, sb.node).filter((n) => n.startsWith("cni")),
      ["cni0"],
    );
    assert.ok(ping(sb, a.name, "10.22.0.3"));
    sb.inNode(["ip", "link", "add", "notbr", "type", "veth", "peer", "name", "notbr-peer"]);
    const before = linkNames(sb, sb.node);
    const bad = cniNsenter(sb, "ADD", { id: "c", netns: sb.addContainer().path }, bridgeConf(sb, { bridge: "notbr" }));
    assert.is(bad.json?.msg, '"notbr" already exists but is not a bridge');
    assert.equal(linkNames(sb, sb.node), before);
  },
);

const badInputs: [string, (sb: Sandbox) => { conf: unknown; netns?: string }, RegExp][] = [
  [
    "an invalid bridge name",
    (sb) => ({ conf: bridgeConf(sb, { bridge: "a-bridge-name-too-long" }) }),
    /bridge: interface name is too long/,
  ],
  [
    "a bridge name taken by a non-bridge link",
    (sb) => {
      sb.inNode(["ip", "link", "add", "notbr", "type", "veth", "peer", "name", "notbr-peer"]);
      return { conf: bridgeConf(sb, { bridge: "notbr" }) };
    },
    /"notbr" already exists but is not a bridge/,
  ],
  [
    "a VLAN out of 0..4094",
    (sb) => ({ conf: bridgeConf(sb, { vlan: 5000 }) }),
    /invalid VLAN ID 5000 \(must be between 0 and 4094\)/,
  ],
  ["an MTU out of range", (sb) => ({ conf: bridgeConf(sb, { mtu: 70000 }) }), /invalid MTU 70000/],
  [
    "a missing IPAM plugin",
    (sb) => ({ conf: bridgeConf(sb, {}, { type: "no-such-ipam" }) }),
    /failed to find plugin "no-such-ipam"/,
  ],
  [
    "hairpin and promiscuous mode together",
    (sb) => ({ conf: bridgeConf(sb, { hairpinMode: true, promiscMode: true }) }),
    /cannot set hairpin mode and promiscuous mode/,
  ],
  [
    "an unknown masquerade backend",
    (sb) => ({ conf: bridgeConf(sb, { ipMasq: true, ipMasqBackend: "ebtables" }) }),
    /unknown ipmasq backend "ebtables"/,
  ],
  [
    "an invalid MAC",
    (sb) => ({ conf: { ...bridgeConf(sb), runtimeConfig: { mac: "not-a-mac" } } }),
    /invalid MAC address/,
  ],
  [
    "a CNI_NETNS that is a regular file",
    (sb) => {
      const file = join(sb.tmp, "not-a-netns");
      writeFileSync(file, "");
      return { conf: bridgeConf(sb), netns: file };
    },
    /is not a network namespace/,
  ],
];
for (const [what, make, msg] of badInputs) {
  inSandbox(`bad input: ${what} is a CNI error and leaves nothing`, (sb) => {
    const { conf, netns } = make(sb);
    const before = nodeState(sb, { withBridge: true });
    const c = sb.addContainer();
    const r = cni(sb, "ADD", { netns: netns ?? c.path }, conf);
    assert.is(r.code, 1);
    assert.type(r.json?.code, "number", r.stdout);
    assert.match(r.json.msg, msg);
    assert.equal(nodeState(sb, { withBridge: true }), before);
    assert.equal(linkNames(sb, c.name), ["lo"]);
  });
}

for (const backend of ["iptables", "nftables"]) {
  inSandbox(`GC (${backend}) removes the masquerade and reservation of attachments not in the valid list`, (sb) => {
    const conf = bridgeConf(sb, { ipMasq: true, ipMasqBackend: backend, cniVersion: "1.1.0" });
    const keep = sb.addContainer();
    const drop = sb.addContainer();
    addOk(sb, { id: "keep", netns: keep.path }, conf);
    const before = rulesAndReservations(sb);
    addOk(sb, { id: "drop", netns: drop.path }, conf);
    sh(["ip", "netns", "del", drop.name]); // a leak: the runtime never called DEL
    const leaked = rulesAndReservations(sb);
    const blind = runPlugin(sb, BRIDGE, { CNI_COMMAND: "GC", CNI_PATH: cniPath(sb) }, conf);
    assert.is(blind.code, 0, blind.stdout);
    assert.equal(rulesAndReservations(sb), leaked, "without a list of valid attachments nothing is removed");
    const gc = runPlugin(
      sb,
      BRIDGE,
      { CNI_COMMAND: "GC", CNI_PATH: cniPath(sb) },
      { ...conf, "cni.dev/valid-attachments": [{ containerID: "keep", ifname: "eth0" }] },
    );
    assert.is(gc.code, 0, gc.stdout);
    assert.equal(rulesAndReservations(sb), before);
    if (backend === "nftables") assert.is(nftMasqRules(sb).length, 1);
  });
}

inSandbox("STATUS delegates to IPAM: fine with host-local, an error when the IPAM plugin is missing", (sb) => {
  const ok = runPlugin(
    sb,
    BRIDGE,
    { CNI_COMMAND: "STATUS", CNI_PATH: cniPath(sb) },
    bridgeConf(sb, { cniVersion: "1.1.0" }),
  );
  assert.is(ok.code, 0, ok.stdout);
  const missing = runPlugin(
    sb,
    BRIDGE,
    { CNI_COMMAND: "STATUS", CNI_PATH: cniPath(sb) },
    bridgeConf(sb, { cniVersion: "1.1.0" }, { type: "no-such-ipam" }),
  );
  assert.is(missing.code, 1);
  assert.match(missing.json.msg, /failed to find plugin "no-such-ipam"/);
});

test.run();
