import { test } from "uvu";
import * as assert from "uvu/assert";
import { type Sandbox, sh, sandboxed } from "../helpers/sandbox.ts";
import {
  BRIDGE_NAME,
  NET,
  client,
  containerLinks,
  nodeState,
  reservationFiles,
  standardNet,
} from "../helpers/reliability.ts";
import { nodeLinks } from "../helpers/node-state.ts";
import { masqChainName } from "../../lib/net/masquerade/iptables.ts";

const inSandbox = sandboxed(test, "reliab");

/**
 * Hand-made damage on a running node: the bridge deleted under running pods, a container's veth
 * deleted from either end. ADD still attaches new pods properly, DEL still removes every trace of
 * the damaged ones, and CHECK reports the damage instead of calling it healthy.
 */

const ping = (sb: Sandbox, ns: string, addr: string) =>
  sb.inNs(ns, ["busybox", "ping", "-c", "1", "-W", "2", addr], { allowFailure: true }).code === 0;
const addrOf = (stdout: string) => (JSON.parse(stdout).ips[0].address as string).replace(/\/\d+$/, "");

inSandbox(
  "bridge deleted under running pods: CHECK reports it, a new ADD rebuilds the bridge and works, DELs clean everything",
  async (sb) => {
    const net = standardNet(sb);
    const pods = [sb.addContainer(), sb.addContainer()];
    for (const [i, p] of pods.entries()) assert.is((await client(net, "add", `p${i}`, p.path)).code, 0);
    const baselineLinks = nodeLinks(sb).filter((l) => !l.includes(" veth"));

    sb.inNode(["ip", "link", "del", BRIDGE_NAME]);
    const check = await client(net, "check", "p0", pods[0]!.path);
    assert.is(check.code, 1, "CHECK of a pod whose bridge is gone fails");

    const fresh = sb.addContainer();
    const add = await client(net, "add", "fresh", fresh.path);
    assert.is(add.code, 0, add.stderr);
    const bridge = JSON.parse(sb.inNode(["ip", "-j", "addr", "show", "dev", BRIDGE_NAME]).stdout)[0];
    assert.ok(
      bridge.addr_info.some((a: { local: string }) => a.local === "10.61.0.1"),
      "the new bridge has the gateway address",
    );
    assert.ok(ping(sb, fresh.name, "10.61.0.1"), "the new pod reaches the gateway");
    assert.is((await client(net, "check", "fresh", fresh.path)).code, 0);

    for (const [i, p] of pods.entries()) {
      const del = await client(net, "del", `p${i}`, p.path);
      assert.is(del.code, 0, del.stderr);
      assert.equal(containerLinks(sb, p.name), ["lo -"]);
    }
    assert.is((await client(net, "del", "fresh", fresh.path)).code, 0);
    const after = nodeState(net);
    assert.equal(after.links, baselineLinks, "no veth left");
    assert.equal(after.reservations, []);
    assert.not.match(after.iptables, /CNI-DN-|CNI-[0-9a-f]{24}/);
  },
);

for (const end of ["container", "node"] as const) {
  inSandbox(
    `veth deleted from the ${end} end: CHECK fails, DEL releases address and rules, the same container can be added again`,
    async (sb) => {
      const net = standardNet(sb);
      const warm = sb.addContainer();
      assert.is((await client(net, "add", "warm", warm.path)).code, 0);
      assert.is((await client(net, "del", "warm", warm.path)).code, 0);
      const baseline = nodeState(net);

      const ctr = sb.addContainer();
      const add = await client(net, "add", "c1", ctr.path);
      assert.is(add.code, 0);
      const ip = addrOf(add.stdout);
      if (end === "container") sh(["ip", "-n", ctr.name, "link", "del", "eth0"]);
      else {
        const host = (JSON.parse(add.stdout).interfaces as { name: string; sandbox?: string }[]).find(
          (i) => i.name.startsWith("veth") && !i.sandbox,
        )!.name;
        sb.inNode(["ip", "link", "del", host]);
      }
      assert.equal(containerLinks(sb, ctr.name), ["lo -"], "both ends are gone");

      const check = await client(net, "check", "c1", ctr.path);
      assert.is(check.code, 1, "CHECK notices the missing interface");
      assert.equal(reservationFiles(net.dataDir), [ip], "the address is still held until DEL");
      assert.match(nodeState(net).iptables, new RegExp(masqChainName(NET, "c1")));

      const del = await client(net, "del", "c1", ctr.path);
      assert.is(del.code, 0, del.stderr);
      const after = nodeState(net);
      assert.equal(after.reservations, baseline.reservations, "address released");
      assert.equal(after.links, baseline.links);
      assert.fixture(after.iptables, baseline.iptables, "rules removed");
      assert.fixture(after.nft, baseline.nft);

      const again = await client(net, "add", "c1", ctr.path);
      assert.is(again.code, 0, again.stderr);
      assert.ok(ping(sb, ctr.name, "10.61.0.1"), "re-added container reaches the gateway");
    },
  );
}

test.run();
