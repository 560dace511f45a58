import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { BIN, cniEnv, sh, sandboxed } from "../helpers/sandbox.ts";
import { BRIDGE_NAME, NET, client, reservationFiles, standardNet, type Net } from "../helpers/reliability.ts";
import { netfilterState } from "../helpers/node-state.ts";
import { masqChainName } from "../../lib/net/masquerade/iptables.ts";
import { runPlugin } from "../helpers/plugin-run.ts";

const inSandbox = sandboxed(test, "reliab");

/**
 * Node reboot and vanished containers: reservations (and rules) of containers that no longer exist
 * stay until the runtime's GC, which names the attachments that are still valid. ADD keeps working
 * in between, and GC releases exactly the stale ones.
 */

/** GC of every plugin in the standard list, as libcni's GCNetworkList sends it (1.1.0). */
function gc(net: Net, valid: { containerID: string; ifname: string }[]) {
  const list = JSON.parse(readFileSync(join(net.client.netconfPath, "10-rel.conflist"), "utf8")) as {
    cniVersion: string;
    plugins: Record<string, unknown>[];
  };
  for (const plugin of list.plugins) {
    const conf = { ...plugin, name: NET, cniVersion: list.cniVersion, "cni.dev/valid-attachments": valid };
    const r = runPlugin(
      net.sb,
      join(BIN, plugin.type as string),
      { ...cniEnv("GC"), CNI_CONTAINERID: "", CNI_IFNAME: "" },
      conf,
    );
    assert.is(r.code, 0, `GC of ${plugin.type}: ${r.stdout}${r.stderr}`);
  }
}

const ownerOf = (net: Net, ip: string) => readFileSync(join(net.dataDir, NET, ip), "utf8").split("\r\n")[0];
const addressOf = (stdout: string) => (JSON.parse(stdout).ips[0].address as string).replace(/\/\d+$/, "");

inSandbox(
  "after a reboot, stale reservations stay out of the way of new ADDs and GC releases exactly them",
  async (sb) => {
    const net = standardNet(sb, { cniVersion: "1.1.0" });
    const before: string[] = [];
    for (const id of ["old1", "old2", "old3"]) {
      const ctr = sb.addContainer();
      const add = await client(net, "add", id, ctr.path);
      assert.is(add.code, 0, add.stderr);
      before.push(addressOf(add.stdout));
      // The container vanishes without a DEL.
      sh(["ip", "netns", "del", ctr.name]);
    }
    // Reboot: the kernel forgets links and rules; the disk (reservations) remembers.
    sb.inNode(["ip", "link", "del", BRIDGE_NAME]);
    for (const bin of ["iptables", "ip6tables"]) for (const op of ["-F", "-X"]) sb.inNode([bin, "-t", "nat", op]);
    sb.inNode(["nft", "flush", "ruleset"]);
    assert.equal(reservationFiles(net.dataDir), [...before].sort());

    const live: string[] = [];
    for (const id of ["new1", "new2"]) {
      const ctr = sb.addContainer();
      const add = await client(net, "add", id, ctr.path);
      assert.is(add.code, 0, `ADD between reboot and GC: ${add.stderr}`);
      const ip = addressOf(add.stdout);
      assert.not.ok(before.includes(ip), `${ip} is still reserved for a container of the previous boot`);
      live.push(ip);
    }

    gc(net, [
      { containerID: "new1", ifname: "eth0" },
      { containerID: "new2", ifname: "eth0" },
    ]);
    assert.equal(reservationFiles(net.dataDir), [...live].sort(), "only the valid attachments keep their addresses");
    assert.equal(
      live.map((ip) => ownerOf(net, ip)),
      ["new1", "new2"],
    );
    const nat = netfilterState(sb).iptables;
    for (const id of ["new1", "new2"])
      assert.match(nat, new RegExp(`^:${masqChainName(NET, id)} `, "m"), `${id} keeps its masquerade`);

    const ctr = sb.addContainer();
    const after = await client(net, "add", "new3", ctr.path);
    assert.is(after.code, 0, `ADD after GC: ${after.stderr}`);
    assert.is((await client(net, "check", "new3", ctr.path)).code, 0, "CHECK of an attachment made after GC");
  },
);

inSandbox(
  "containers gone without DEL (no reboot): GC removes their reservations, masquerade and port mappings, keeps the rest",
  async (sb) => {
    const net = standardNet(sb, { cniVersion: "1.1.0" });
    const keep = sb.addContainer();
    assert.is((await client(net, "add", "keep", keep.path)).code, 0);
    const gone = sb.addContainer();
    const goneAdd = await client(net, "add", "gone", gone.path);
    assert.is(goneAdd.code, 0);
    sh(["ip", "netns", "del", gone.name]);

    const dirty = netfilterState(sb).iptables;
    assert.match(dirty, new RegExp(`^:${masqChainName(NET, "gone")} `, "m"));
    assert.match(dirty, /id: \\"gone\\"/);

    gc(net, [{ containerID: "keep", ifname: "eth0" }]);
    const clean = netfilterState(sb).iptables;
    assert.not.match(clean, /id: \\"gone\\"/, "no rule of the vanished container");
    assert.not.match(clean, new RegExp(masqChainName(NET, "gone")));
    assert.match(clean, /id: \\"keep\\"/, "the live container's rules stay");
    assert.equal(reservationFiles(net.dataDir), ["10.61.0.2"]);
    assert.is(ownerOf(net, "10.61.0.2"), "keep");
    assert.is((await client(net, "check", "keep", keep.path)).code, 0, "the live attachment is intact");

    const next = sb.addContainer();
    assert.is((await client(net, "add", "next", next.path)).code, 0, "ADD after GC");
  },
);

test.run();
