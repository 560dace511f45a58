import { test } from "uvu";
import * as assert from "uvu/assert";
import type { Peer } from "../../plugins/tscni-agent/lease.ts";
import { diff, objectsOf, opsOf, presentObjects, type Routing } from "../../plugins/tscni-agent/peers.ts";

/** The agent's peer objects and their diff: desired vs present → ops, no kernel involved. */
const VXLAN: Routing = {
  backend: "vxlan",
  vxlanDev: "flannel.1",
  underlay: "eth0",
  underlayNets: ["192.168.100.11/24"],
  directRouting: false,
  network: "10.50.0.0/16",
  subnetLen: 24,
};
const peer = (i: number, publicIp = `192.168.100.${20 + i}`): Peer => ({
  subnet: { addr: `10.50.${i}.0`, len: 24 },
  publicIp,
  vtepMac: `02:00:00:00:00:${i.toString(16).padStart(2, "0")}`,
});

test("a vxlan peer is a neighbour, an FDB entry and an onlink route; put in that order, route last", () => {
  const objs = objectsOf(VXLAN, peer(2));
  assert.equal(objs, [
    { kind: "neigh", dev: "flannel.1", ip: "10.50.2.0", mac: "02:00:00:00:00:02" },
    { kind: "fdb", dev: "flannel.1", mac: "02:00:00:00:00:02", dst: "192.168.100.22" },
    { kind: "route", dst: "10.50.2.0/24", dev: "flannel.1", via: "10.50.2.0", onlink: true },
  ]);
  const ops = opsOf(diff(objs, []));
  assert.equal(
    ops.map((o) => o.op),
    ["fdb", "neigh", "route"],
  );
  assert.equal(ops[2], {
    op: "route",
    verb: "replace",
    dst: "10.50.2.0/24",
    via: "10.50.2.0",
    dev: "flannel.1",
    onlink: true,
  });
  assert.equal(diff(objs, objs), { del: [], put: [] }, "nothing to do when the kernel has it all");
});

test("host-gw and DirectRouting: a route via the PublicIP on the underlay for peers on our L2 only", () => {
  const gw = { ...VXLAN, backend: "host-gw" as const, vxlanDev: undefined };
  assert.equal(objectsOf(gw, peer(3)), [
    { kind: "route", dst: "10.50.3.0/24", dev: "eth0", via: "192.168.100.23", onlink: false },
  ]);
  assert.equal(objectsOf(gw, peer(3, "172.16.0.9")), [], "host-gw cannot reach a peer behind a router");
  const direct = { ...VXLAN, directRouting: true };
  assert.equal(objectsOf(direct, peer(3)), objectsOf(gw, peer(3)));
  assert.is(objectsOf(direct, peer(3, "172.16.0.9")).length, 3, "a peer off our L2 keeps VXLAN");
  const op = opsOf(diff(objectsOf(gw, peer(3)), []))[0];
  assert.equal(op, { op: "route", verb: "replace", dst: "10.50.3.0/24", via: "192.168.100.23", dev: "eth0" });
});

test("the reconcile diff: stale objects go, changed ones are replaced in place, foreign routes are left", () => {
  const live = peer(1);
  const moved = peer(2, "192.168.100.99"); // its PublicIP changed
  const present = presentObjects(
    VXLAN,
    [
      { dst: "10.50.1.0/24", gateway: "10.50.1.0", dev: "flannel.1", flags: ["onlink"] },
      { dst: "10.50.2.0/24", gateway: "10.50.2.0", dev: "flannel.1", flags: ["onlink"] },
      { dst: "10.50.9.0/24", gateway: "10.50.9.0", dev: "flannel.1", flags: ["onlink"] }, // gone peer
      { dst: "10.50.8.0/24", gateway: "192.168.100.38", dev: "eth0" }, // an old direct route
      { dst: "192.168.100.0/24", dev: "eth0", scope: "link" }, // the underlay's own
      { dst: "default", gateway: "192.168.100.1", dev: "eth0" },
      { dst: "10.50.1.0", dev: "flannel.1", table: "local", type: "local" },
      { dst: "10.50.7.0/24" }, // multipath: no dev, not ours
    ],
    [
      { dst: "10.50.1.0", lladdr: "02:00:00:00:00:01", state: ["PERMANENT"] },
      { dst: "10.50.2.0", lladdr: "02:00:00:00:00:02", state: ["PERMANENT"] },
      { dst: "10.50.9.0", lladdr: "02:00:00:00:00:09", state: ["PERMANENT"] },
    ],
    [
      { mac: "02:00:00:00:00:01", dst: "192.168.100.21" },
      { mac: "02:00:00:00:00:02", dst: "192.168.100.22" },
      { mac: "02:00:00:00:00:09", dst: "192.168.100.29" },
    ],
  );
  const d = diff([...objectsOf(VXLAN, live), ...objectsOf(VXLAN, moved)], present);
  assert.equal(
    d.del.map((o) => `${o.kind} ${o.kind === "route" ? o.dst : o.kind === "neigh" ? o.ip : `${o.mac} ${o.dst}`}`),
    [
      "route 10.50.9.0/24",
      "route 10.50.8.0/24",
      "neigh 10.50.9.0",
      "fdb 02:00:00:00:00:02 192.168.100.22",
      "fdb 02:00:00:00:00:09 192.168.100.29",
    ],
  );
  assert.equal(d.put, [{ kind: "fdb", dev: "flannel.1", mac: "02:00:00:00:00:02", dst: "192.168.100.99" }]);
  const ops = opsOf(d);
  assert.equal(
    ops.map((o) => `${o.op} ${"verb" in o ? o.verb : ""}`),
    ["route del", "route del", "neigh del", "fdb del", "fdb del", "fdb replace"],
    "deletions first, then puts; grouped by tool (ip, bridge)",
  );
});

test("a route that changes device (VXLAN to direct) is replaced, not deleted first; a changed MAC replaces the neighbour", () => {
  const p = peer(4);
  const vx = objectsOf(VXLAN, p);
  const dr = objectsOf({ ...VXLAN, directRouting: true }, p);
  const d = diff(dr, vx);
  assert.equal(
    d.del.map((o) => o.kind),
    ["neigh", "fdb"],
  );
  assert.equal(d.put, dr);
  const newMac = { ...p, vtepMac: "02:00:00:00:00:ff" };
  const m = diff(objectsOf(VXLAN, newMac), vx);
  assert.equal(
    m.del.map((o) => o.kind),
    ["fdb"],
    "the old FDB entry (keyed by MAC) goes; neighbour and route are replaced in place",
  );
  assert.equal(
    m.put.map((o) => o.kind),
    ["neigh", "fdb"],
  );
});

test("an event for one of 1000 peers costs that peer's ops, not the others'", () => {
  const peers = Array.from({ length: 1000 }, (_, i) => ({
    subnet: { addr: `10.${50 + (i >> 8)}.${i & 255}.0`, len: 24 },
    publicIp: `172.16.${i >> 8}.${i & 255}`,
    vtepMac: `02:00:00:00:${(i >> 8).toString(16).padStart(2, "0")}:${(i & 255).toString(16).padStart(2, "0")}`,
  }));
  const all = peers.flatMap((p) => objectsOf(VXLAN, p));
  assert.is(opsOf(diff(all, [])).length, 3000, "the start-up reconcile of an empty kernel");
  const gone = objectsOf(VXLAN, peers[7]!);
  const ops = opsOf(diff([], gone));
  assert.is(ops.length, 3, "a deleted lease: its route, neighbour and FDB entry");
  assert.equal(
    ops.map((o) => o.op),
    ["route", "neigh", "fdb"],
    "route first out",
  );
});

test.run();
