import { test } from "uvu";
import * as assert from "uvu/assert";
import {
  EXT_V4,
  EXT_V6,
  GW_V4,
  GW_V6,
  NODE_V4,
  NODE_V6,
  ask,
  attach,
  inTopology,
  portmapConfig,
  runPortmap,
  runPortmapAsync,
  snapshot,
  startServer,
  withoutHostportTables,
  withoutSharedChains,
  type Snapshot,
} from "../helpers/portmap-net.ts";

// Every behaviour test runs against both backends: same mappings, same traffic, same cleanup.
const BACKENDS = ["iptables", "nftables"] as const;

const MAPPINGS = [
  { hostPort: 8080, containerPort: 80, protocol: "tcp" },
  { hostPort: 8053, containerPort: 53, protocol: "udp" },
  { hostPort: 9090, containerPort: 80, protocol: "tcp", hostIP: NODE_V4 },
  { hostPort: 9091, containerPort: 80, protocol: "tcp", hostIP: NODE_V6 },
];

/** After DEL, the ruleset is what it was before ADD, apart from the shared top-level chains. */
function assertRestored(backend: string, before: Snapshot, after: Snapshot) {
  if (backend === "iptables") {
    assert.fixture(withoutSharedChains(after.ipt4), withoutSharedChains(before.ipt4));
    assert.fixture(withoutSharedChains(after.ipt6), withoutSharedChains(before.ipt6));
    assert.not.match(after.nft, /cni_hostport/);
  } else {
    assert.fixture(withoutHostportTables(after.nft), withoutHostportTables(before.nft));
    assert.fixture(after.ipt4, before.ipt4);
    assert.fixture(after.ipt6, before.ipt6);
  }
}

for (const backend of BACKENDS) {
  test(`${backend}: external host, node and hairpin neighbour reach the container over TCP, UDP and IPv6`, () =>
    inTopology(async (sb, { ext, servers }) => {
      // A second node address, to show that a hostIP-bound mapping answers only on its own.
      sb.inNode(["ip", "addr", "add", "198.51.100.1/32", "dev", "lo"]);
      sb.inNs(ext, ["ip", "route", "add", "198.51.100.1/32", "via", NODE_V4]);
      const a = attach(sb, "ctr-a");
      const b = attach(sb, "ctr-b");
      const add = runPortmap(sb, "ADD", a, portmapConfig(backend, MAPPINGS, a.result));
      assert.is(add.code, 0, add.stdout);
      const { dns: _dns, ...passed } = a.result;
      assert.equal({ ...add.json, dns: undefined }, { ...passed, dns: undefined }, "ADD passes prevResult through");
      servers.push(await startServer(sb, a.ns));

      // From outside, through the node's addresses: no masquerade, the container sees the client.
      assert.is(ask(sb, ext, "tcp", NODE_V4, 8080), `peer=${EXT_V4}`);
      assert.is(ask(sb, ext, "udp", NODE_V4, 8053), `peer=${EXT_V4}`);
      assert.is(ask(sb, ext, "tcp", NODE_V6, 8080), `peer=${EXT_V6}`);
      assert.is(ask(sb, ext, "udp", NODE_V6, 8053), `peer=${EXT_V6}`);
      assert.is(ask(sb, ext, "tcp", "198.51.100.1", 8080), `peer=${EXT_V4}`);

      // From the node itself: its own address, and 127.0.0.1 (masqueraded, via route_localnet).
      assert.match(ask(sb, sb.node, "tcp", NODE_V4, 8080), /^peer=/);
      assert.is(ask(sb, sb.node, "tcp", "127.0.0.1", 8080), `peer=${GW_V4}`);
      assert.is(ask(sb, sb.node, "udp", "127.0.0.1", 8053), `peer=${GW_V4}`);
      assert.is(sb.inNode(["sysctl", "-n", "net.ipv4.conf.cni0.route_localnet"]).stdout.trim(), "1");

      // Hairpin: a neighbour on the same bridge, through the node address; replies return only
      // because the connection is masqueraded (br_netfilter is off in the node).
      assert.is(ask(sb, b.ns, "tcp", NODE_V4, 8080), `peer=${GW_V4}`);
      assert.is(ask(sb, b.ns, "udp", NODE_V4, 8053), `peer=${GW_V4}`);
      assert.is(ask(sb, b.ns, "tcp", NODE_V6, 8080), `peer=${GW_V6}`);

      // hostIP-bound mapping: answers on that address only.
      assert.is(ask(sb, ext, "tcp", NODE_V4, 9090), `peer=${EXT_V4}`);
      assert.is(ask(sb, ext, "tcp", "198.51.100.1", 9090), "error ECONNREFUSED");
      assert.is(ask(sb, sb.node, "tcp", "127.0.0.1", 9090), "error ECONNREFUSED");
      assert.is(ask(sb, ext, "tcp", NODE_V6, 9090), "error ECONNREFUSED");
      assert.is(ask(sb, ext, "tcp", NODE_V6, 9091), `peer=${EXT_V6}`);
      assert.is(ask(sb, ext, "tcp", NODE_V4, 9091), "error ECONNREFUSED");

      // After DEL the ports are closed again.
      const del = runPortmap(sb, "DEL", a, portmapConfig(backend, MAPPINGS, a.result));
      assert.is(del.code, 0, del.stdout);
      assert.is(ask(sb, ext, "tcp", NODE_V4, 8080), "error ECONNREFUSED");
      assert.is(ask(sb, sb.node, "tcp", "127.0.0.1", 8080), "error ECONNREFUSED");
    }));

  test(`${backend}: with snat false nothing is masqueraded, so a hairpin neighbour gets no answer`, () =>
    inTopology(async (sb, { ext, servers }) => {
      const a = attach(sb, "ctr-a");
      const b = attach(sb, "ctr-b");
      assert.is(runPortmap(sb, "ADD", a, portmapConfig(backend, MAPPINGS, a.result, { snat: false })).code, 0);
      servers.push(await startServer(sb, a.ns));
      assert.is(ask(sb, ext, "tcp", NODE_V4, 8080), `peer=${EXT_V4}`);
      // The container answers the neighbour directly, from an address it did not ask: no reply.
      assert.is(ask(sb, b.ns, "tcp", NODE_V4, 8080), "error timeout");
    }));

  test(`${backend}: conditions restrict which traffic is forwarded`, () =>
    inTopology(async (sb, { ext, servers }) => {
      const a = attach(sb, "ctr-a");
      const notExt = backend === "iptables" ? ["!", "-s", `${EXT_V4}/32`] : ["ip", "saddr", "!=", EXT_V4];
      assert.is(runPortmap(sb, "ADD", a, portmapConfig(backend, MAPPINGS, a.result, { conditionsV4: notExt })).code, 0);
      servers.push(await startServer(sb, a.ns));
      assert.is(ask(sb, ext, "tcp", NODE_V4, 8080), "error ECONNREFUSED");
      assert.is(ask(sb, sb.node, "tcp", "127.0.0.1", 8080), `peer=${GW_V4}`);
      assert.is(ask(sb, ext, "tcp", NODE_V6, 8080), `peer=${EXT_V6}`, "conditionsV4 leave IPv6 alone");
    }));

  test(`${backend}: DEL restores the ruleset, is idempotent and works without the netns`, () =>
    inTopology((sb) => {
      const a = attach(sb, "ctr-a");
      const before = snapshot(sb);
      const config = portmapConfig(backend, MAPPINGS, a.result);
      assert.is(runPortmap(sb, "ADD", a, config).code, 0);
      const during = snapshot(sb);
      assert.match(backend === "iptables" ? during.ipt4 : during.nft, /8080/);
      assert.is(runPortmap(sb, "DEL", a, config).code, 0);
      assertRestored(backend, before, snapshot(sb));
      // Again, then with the netns gone and no prevResult: still success, still clean.
      const again = runPortmap(sb, "DEL", a, config);
      assert.is(again.code, 0, again.stdout);
      // ADD again so the netns-less DEL has rules to remove: it must find them by container ID.
      assert.is(runPortmap(sb, "ADD", a, config).code, 0);
      assert.match(backend === "iptables" ? snapshot(sb).ipt4 : snapshot(sb).nft, /8080/);
      const gone = { id: a.id, path: "/var/run/netns/portmap-no-such-ns" };
      const noNetns = runPortmap(sb, "DEL", gone, portmapConfig(backend, MAPPINGS));
      assert.is(noNetns.code, 0, noNetns.stdout);
      assertRestored(backend, before, snapshot(sb));
    }));

  test(`${backend}: CHECK passes after ADD and fails when a rule is missing`, () =>
    inTopology((sb) => {
      const a = attach(sb, "ctr-a");
      const config = portmapConfig(backend, MAPPINGS, a.result);
      assert.is(runPortmap(sb, "ADD", a, config).code, 0);
      const ok = runPortmap(sb, "CHECK", a, config);
      assert.is(ok.code, 0, ok.stdout);
      // CHECK compares against the mappings: an extra mapping is not programmed.
      const more = portmapConfig(
        backend,
        [...MAPPINGS, { hostPort: 7070, containerPort: 70, protocol: "tcp" }],
        a.result,
      );
      assert.is(runPortmap(sb, "CHECK", a, more).code, 1);
      if (backend === "iptables") {
        const chain = /^-A (CNI-DN-\w+) .*--dport 8080 -j DNAT/m.exec(snapshot(sb).ipt4)![1]!;
        const target = `${a.result.ips[0].address.split("/")[0]}:80`;
        sb.inNode([
          "iptables",
          "-t",
          "nat",
          "-D",
          chain,
          "-p",
          "tcp",
          "--dport",
          "8080",
          "-j",
          "DNAT",
          "--to-destination",
          target,
        ]);
      } else {
        const listing = JSON.parse(
          sb.inNode(["nft", "-j", "-a", "list", "chain", "ip", "cni_hostport", "hostports"]).stdout,
        ).nftables;
        const rule = listing.find((o: any) => o.rule && JSON.stringify(o.rule.expr).includes("8080"))!.rule;
        sb.inNode(["nft", "delete", "rule", "ip", "cni_hostport", "hostports", "handle", String(rule.handle)]);
      }
      const broken = runPortmap(sb, "CHECK", a, config);
      assert.is(broken.code, 1);
      assert.match(broken.json.msg, /8080|not found|missing/);
      // Without prevResult CHECK refuses, naming it.
      const noPrev = runPortmap(sb, "CHECK", a, portmapConfig(backend, MAPPINGS));
      assert.is(noPrev.code, 1);
      assert.match(noPrev.json.msg, /prevResult/);
    }));

  test(`${backend}: ADD flushes stale UDP conntrack entries of mapped ports only`, () =>
    inTopology((sb) => {
      const a = attach(sb, "ctr-a");
      const entry = (port: number) => [
        "conntrack",
        "-I",
        "-s",
        EXT_V4,
        "-d",
        NODE_V4,
        "-p",
        "udp",
        "--sport",
        "40000",
        "--dport",
        String(port),
        "-t",
        "300",
      ];
      sb.inNode(entry(8053));
      sb.inNode(entry(8054));
      const list = (port: number) =>
        sb.inNode(["conntrack", "-L", "-p", "udp", "--orig-port-dst", String(port)], { allowFailure: true }).stdout;
      assert.match(list(8053), /dport=8053/);
      assert.is(runPortmap(sb, "ADD", a, portmapConfig(backend, MAPPINGS, a.result)).code, 0);
      assert.not.match(list(8053), /dport=8053/);
      assert.match(list(8054), /dport=8054/, "entries of other ports stay");
    }));

  test(`${backend}: the most recent container to claim a host port receives it`, () =>
    inTopology(async (sb, { ext, servers }) => {
      const a = attach(sb, "ctr-a");
      const b = attach(sb, "ctr-b");
      const one = portmapConfig(backend, [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }]);
      servers.push(await startServer(sb, a.ns, "a"), await startServer(sb, b.ns, "b"));
      assert.is(runPortmap(sb, "ADD", a, { ...one, prevResult: a.result }).code, 0);
      assert.is(ask(sb, ext, "tcp", NODE_V4, 8080), `peer=${EXT_V4} tag=a`);
      assert.is(runPortmap(sb, "ADD", b, { ...one, prevResult: b.result }).code, 0);
      assert.is(ask(sb, ext, "tcp", NODE_V4, 8080), `peer=${EXT_V4} tag=b`);
      assert.is(runPortmap(sb, "DEL", b, one).code, 0);
      assert.is(ask(sb, ext, "tcp", NODE_V4, 8080), `peer=${EXT_V4} tag=a`);
    }));

  test(`${backend}: concurrent ADDs and DELs of many containers share one set of top-level rules`, () =>
    inTopology(async (sb, { ext, servers }) => {
      const ctrs = Array.from({ length: 6 }, (_, i) => attach(sb, `ctr-${i}`));
      const config = (i: number, prev?: unknown) =>
        portmapConfig(backend, [{ hostPort: 8100 + i, containerPort: 80, protocol: "tcp" }], prev);
      const adds = await Promise.all(ctrs.map((c, i) => runPortmapAsync(sb, "ADD", c, config(i, c.result))));
      assert.equal(
        adds.map((r) => r.code),
        ctrs.map(() => 0),
        adds.map((r) => r.stdout).join(""),
      );
      const s = snapshot(sb);
      if (backend === "iptables") {
        const count = (re: RegExp) => s.ipt4.split("\n").filter((l) => re.test(l)).length;
        assert.is(count(/^-A (PREROUTING|OUTPUT) .*-j CNI-HOSTPORT-DNAT$/), 2, s.ipt4);
        assert.is(count(/^-A POSTROUTING .*-j CNI-HOSTPORT-MASQ$/), 1, s.ipt4);
        assert.is(count(/^-A CNI-HOSTPORT-(SETMARK|MASQ) /), 2, s.ipt4);
        assert.is(count(/^:CNI-DN-/), 6, s.ipt4);
      } else {
        assert.is(s.nft.split("\n").filter((l) => l.includes("jump hostports_all")).length, 4, s.nft);
      }
      servers.push(await startServer(sb, ctrs[5]!.ns));
      assert.is(ask(sb, ext, "tcp", NODE_V4, 8105), `peer=${EXT_V4}`);
      const dels = await Promise.all(ctrs.map((c, i) => runPortmapAsync(sb, "DEL", c, config(i))));
      assert.equal(
        dels.map((r) => r.code),
        ctrs.map(() => 0),
        dels.map((r) => r.stdout).join(""),
      );
      const after = snapshot(sb);
      if (backend === "iptables") assert.not.match(after.ipt4 + after.ipt6, /CNI-DN-|dnat name/);
      else assert.not.throws(() => withoutHostportTables(after.nft), "no container rule left");
    }));
}

test.run();
