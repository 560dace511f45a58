import { test } from "uvu";
import * as assert from "uvu/assert";
import { KernelError } from "../../lib/kernel/errors.ts";
import { runAsync } from "../../lib/kernel/exec.ts";
import { lineOf, type LinkKind } from "../../lib/kernel/link.ts";

// The typed link operations render to the iproute2 lines the plugins used to write by hand.

test("link ops render to ip batch lines", () => {
  assert.equal(lineOf({ op: "link-set", dev: "lo", up: true }), ["link", "set", "lo", "up"]);
  assert.equal(lineOf({ op: "link-set", dev: "veth1", master: "cni0", mtu: 1400, up: false }), [
    "link",
    "set",
    "veth1",
    "mtu",
    "1400",
    "master",
    "cni0",
    "down",
  ]);
  assert.equal(lineOf({ op: "link-set", dev: "veth1", master: null }), ["link", "set", "veth1", "nomaster"]);
  assert.equal(lineOf({ op: "link-del", dev: "veth1" }), ["link", "del", "veth1"]);
  assert.equal(lineOf({ op: "addr", verb: "add", dev: "eth0", cidr: "10.0.0.2/24", broadcast: true }), [
    "addr",
    "add",
    "10.0.0.2/24",
    "brd",
    "+",
    "dev",
    "eth0",
  ]);
  assert.equal(lineOf({ op: "addr", verb: "replace", dev: "cni0", cidr: "fd00::1/64", nodad: true }), [
    "addr",
    "replace",
    "fd00::1/64",
    "nodad",
    "dev",
    "cni0",
  ]);
  assert.equal(lineOf({ op: "route", verb: "append", dst: "0.0.0.0/0", via: "10.0.0.1", dev: "eth0", metric: 5 }), [
    "route",
    "append",
    "0.0.0.0/0",
    "via",
    "10.0.0.1",
    "dev",
    "eth0",
    "metric",
    "5",
  ]);
  // ptp's point-to-point routes: a link-scope host route to the gateway and the subnet via it, from the container's address.
  assert.is(
    lineOf({ op: "route", verb: "replace", dst: "10.1.0.1/32", dev: "eth0", scope: 253, src: "10.1.0.2" }).join(" "),
    "route replace 10.1.0.1/32 dev eth0 scope 253 src 10.1.0.2",
  );
  assert.equal(
    lineOf({
      op: "neigh",
      verb: "replace",
      ip: "10.1.0.0",
      lladdr: "aa:bb:cc:dd:ee:ff",
      permanent: true,
      dev: "flannel.1",
    }),
    ["neigh", "replace", "10.1.0.0", "lladdr", "aa:bb:cc:dd:ee:ff", "nud", "permanent", "dev", "flannel.1"],
  );
  assert.equal(lineOf({ op: "show", dev: "eth0" }), ["addr", "show", "dev", "eth0"]);
  assert.equal(lineOf({ op: "ports", master: "cni0" }), ["link", "show", "master", "cni0"]);
  assert.equal(lineOf({ op: "links" }), ["link", "show"]);
  assert.equal(lineOf({ op: "routes", family: 6 }), ["route", "show", "table", "all", "root", "::/0"]);
});

test("link-add renders each kind with its own words, common attributes before the type", () => {
  const add = (kind: LinkKind, extra: object = {}) => lineOf({ op: "link-add", dev: "x0", kind, ...extra }).join(" ");
  assert.is(
    add(
      { type: "veth", peer: { name: "eth0", mtu: 1450, mac: "02:00:00:00:00:01", netns: "/proc/1/ns/net" } },
      { mtu: 1450 },
    ),
    "link add x0 mtu 1450 type veth peer name eth0 mtu 1450 address 02:00:00:00:00:01 netns /proc/1/ns/net",
  );
  assert.is(
    add({ type: "bridge", vlanFiltering: true }, { mac: "02:00:00:00:00:02" }),
    "link add x0 address 02:00:00:00:00:02 type bridge vlan_filtering 1",
  );
  assert.is(add({ type: "bridge" }), "link add x0 type bridge");
  assert.is(
    add({ type: "macvlan", parent: "eth0", mode: "bridge" }, { netns: "/run/netns/c" }),
    "link add x0 link eth0 netns /run/netns/c type macvlan mode bridge",
  );
  assert.is(
    add({ type: "macvlan", parent: "eth0", mode: "private", bcqueuelen: 2000 }),
    "link add x0 link eth0 type macvlan mode private bcqueuelen 2000",
  );
  assert.is(
    add({ type: "ipvlan", parent: "eth0", mode: "l2", flag: "private" }),
    "link add x0 link eth0 type ipvlan mode l2 private",
  );
  assert.is(add({ type: "vlan", parent: "eth0", id: 42 }), "link add x0 link eth0 type vlan id 42");
  assert.is(
    add({ type: "vxlan", id: 1, local: "10.0.0.1", parent: "eth0", port: 8472, learning: false, gbp: true }),
    "link add x0 type vxlan id 1 local 10.0.0.1 dev eth0 dstport 8472 nolearning gbp",
  );
  assert.is(add({ type: "dummy" }), "link add x0 type dummy");
  assert.is(add({ type: "vrf", table: 1001 }), "link add x0 type vrf table 1001");
});

test("tuntap-add: a tap with the queue mode, virtio header and owner asked for, nothing else", () => {
  const tap = (o: object) => lineOf({ op: "tuntap-add", dev: "t0", ...o }).join(" ");
  assert.is(tap({}), "tuntap add dev t0 mode tap");
  assert.is(
    tap({ multiQueue: true, vnetHdr: true, user: 0, group: 4294967295 }),
    "tuntap add dev t0 mode tap multi_queue vnet_hdr user 0 group 4294967295",
  );
  assert.is(tap({ multiQueue: false, vnetHdr: false, group: 100 }), "tuntap add dev t0 mode tap group 100");
});

test("port, VLAN and FDB ops; link-set moves, renames and sets each attribute", () => {
  assert.is(
    lineOf({ op: "port-set", dev: "veth1", hairpin: true, isolated: false }).join(" "),
    "link set veth1 type bridge_slave hairpin on isolated off",
  );
  assert.is(
    lineOf({ op: "port-vlan", verb: "add", dev: "veth1", vid: 100, pvid: true, untagged: true }).join(" "),
    "vlan add dev veth1 vid 100 pvid untagged master",
  );
  assert.is(
    lineOf({ op: "port-vlan", verb: "del", dev: "veth1", vid: 1 }).join(" "),
    "vlan del dev veth1 vid 1 master",
  );
  assert.is(
    lineOf({ op: "fdb", verb: "replace", dev: "flannel.1", mac: "aa:bb:cc:dd:ee:ff", dst: "10.0.0.2" }).join(" "),
    "fdb replace aa:bb:cc:dd:ee:ff dev flannel.1 dst 10.0.0.2 self permanent",
  );
  assert.is(
    lineOf({ op: "link-set", dev: "mv0", netns: "/run/netns/c", name: "eth0" }).join(" "),
    "link set mv0 netns /run/netns/c name eth0",
  );
  assert.is(
    lineOf({ op: "link-set", dev: "eth0", allmulti: false, txqlen: 10, promisc: true }).join(" "),
    "link set eth0 promisc on allmulticast off txqueuelen 10",
  );
  assert.is(
    lineOf({ op: "route", verb: "append", dst: "10.9.0.0/16", dev: "eth0", table: 7, scope: 253, onlink: true }).join(
      " ",
    ),
    "route append 10.9.0.0/16 dev eth0 table 7 scope 253 onlink",
  );
});

test("runAsync: output and status without blocking; a failure is a KernelError unless allowed", async () => {
  const ok = await runAsync(["cat"], { input: "hello\n" });
  assert.equal(ok, { status: 0, stdout: "hello\n", stderr: "" });
  const failed = await runAsync(["sh", "-c", "echo no >&2; exit 3"], { allowFailure: true });
  assert.is(failed.status, 3);
  assert.is(failed.stderr, "no\n");
  const err = await runAsync(["sh", "-c", "exit 4"]).catch((e: unknown) => e);
  assert.ok(err instanceof KernelError && err.fault === "failed" && err.detail.status === 4, String(err));
  const missing = await runAsync(["/nonexistent/tool"]).catch((e: unknown) => e);
  assert.ok(missing instanceof KernelError, String(missing));
});

test.run();
