import { test } from "uvu";
import * as assert from "uvu/assert";
import { join } from "node:path";
import type { IpLink, IpRoute, LinkOp, LinkOutcome } from "../../lib/kernel/link.ts";
import { type Sandbox, sandboxed, sh } from "../helpers/sandbox.ts";

const inSandbox = sandboxed(test, "nlcar");

// The netlink carrier against iproute2 on the real kernel: the same op lists through both, the
// same kernel state, the same typed reports and the same error texts.

const FIXTURE = join(import.meta.dirname, "..", "fixtures", "apply-link-ops.ts");
const BUN = join(import.meta.dirname, "..", "..", "node_modules", ".bin", "bun");

function apply(sb: Sandbox, ops: LinkOp[], netlink: boolean): LinkOutcome {
  const r = sb.inNode([BUN, FIXTURE], { input: JSON.stringify({ ops, async: false, netlink }) });
  return JSON.parse(r.stdout) as LinkOutcome;
}

// Only what the report types name: ip prints much more, which no caller reads.
const LINK_KEYS = [
  "ifindex",
  "ifname",
  "flags",
  "mtu",
  "address",
  "master",
  "link_type",
  "link_index",
  "operstate",
  "promiscuity",
  "txqlen",
  "link",
  "link_netnsid",
] as const;
const ADDR_KEYS = ["family", "local", "prefixlen", "scope", "tentative", "dadfailed"] as const;
const ROUTE_KEYS = ["dst", "gateway", "dev", "table", "metric", "protocol", "nexthops"] as const;
const DATA_KEYS = ["vlan_default_pvid", "mode", "id", "bcqueuelen", "type", "multi_queue", "table"] as const;

function pick<T extends object>(o: T, keys: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of keys) if ((o as Record<string, unknown>)[k] !== undefined) out[k] = (o as Record<string, unknown>)[k];
  return out;
}

function typed(item: unknown): unknown {
  const o = item as Record<string, unknown>;
  if ("ifname" in o) {
    const l = o as unknown as IpLink;
    const out = pick(l, LINK_KEYS);
    if (l.linkinfo) {
      const li: Record<string, unknown> = pick(l.linkinfo, ["info_kind", "info_slave_kind"]);
      const data = l.linkinfo.info_data ? pick(l.linkinfo.info_data, DATA_KEYS) : {};
      if (Object.keys(data).length > 0) li.info_data = data;
      out.linkinfo = li;
    }
    if (l.addr_info) out.addr_info = l.addr_info.map((a) => pick(a, ADDR_KEYS));
    return out;
  }
  const route = pick(o, ROUTE_KEYS);
  const hops = (o as unknown as IpRoute).nexthops;
  if (hops) route.nexthops = hops.map((h) => pick(h, ["gateway", "dev", "weight"]));
  return route;
}

const typedGroups = (r: LinkOutcome) => r.groups.map((g) => g.map(typed));

const REPORTS = (devs: string[]): LinkOp[] => [
  ...devs.map((dev) => ({ op: "show", dev }) as const),
  { op: "ports", master: "nbr0" },
  { op: "links" },
  { op: "routes", family: 4 },
  { op: "routes", family: 6 },
];

inSandbox("a bridge ADD's node and container ops: same kernel state, same reports from either carrier", (sb) => {
  const ctr = sb.addContainer();
  const ops: LinkOp[] = [
    { op: "link-add", dev: "nbr0", mac: "02:00:00:00:aa:01", mtu: 1450, kind: { type: "bridge" } },
    { op: "link-set", dev: "nbr0", promisc: true, up: true },
    {
      op: "link-add",
      dev: "nveth0",
      mtu: 1450,
      kind: { type: "veth", peer: { name: "eth0", mtu: 1450, netns: ctr.path } },
    },
    { op: "link-set", dev: "nveth0", master: "nbr0" },
    { op: "port-set", dev: "nveth0", hairpin: true, isolated: true },
    { op: "link-set", dev: "nveth0", up: true },
    { op: "addr", verb: "add", dev: "nbr0", cidr: "10.78.0.1/24", broadcast: true },
    { op: "addr", verb: "replace", dev: "nbr0", cidr: "fd00:78::1/64", nodad: true },
    { op: "link-add", dev: "ndum0", kind: { type: "veth", peer: { name: "ndum0p" } } },
    { op: "link-set", dev: "ndum0", mtu: 1300, txqlen: 50, allmulti: true, name: "ndum1", up: true },
    { op: "addr", verb: "add", dev: "ndum1", cidr: "10.79.0.1/30", broadcast: true },
    { op: "route", verb: "append", dst: "10.90.0.0/24", via: "10.78.0.9", dev: "nbr0", metric: 5 },
    { op: "route", verb: "replace", dst: "10.91.0.1/32", dev: "nbr0", scope: 253, src: "10.78.0.1" },
    { op: "route", verb: "append", dst: "10.92.0.0/16", via: "10.78.0.9", dev: "nbr0", table: 300 },
    { op: "route", verb: "append", dst: "fd00:90::/64", via: "fd00:78::9", dev: "nbr0" },
    { op: "route", verb: "del", dst: "10.90.0.0/24", dev: "nbr0" },
  ];
  const made = apply(sb, ops, true);
  assert.ok(made.ok, `op ${made.failedOp}: ${made.stderr}`);
  const port = JSON.parse(sb.inNode(["ip", "-j", "-d", "link", "show", "nveth0"]).stdout)[0];
  assert.is(port.linkinfo.info_slave_data.hairpin, true);
  assert.is(port.linkinfo.info_slave_data.isolated, true);
  const br = JSON.parse(sb.inNode(["ip", "-j", "-d", "link", "show", "nbr0"]).stdout)[0];
  assert.ok(br.flags.includes("PROMISC") && br.mtu === 1450, JSON.stringify(br.flags));
  const peer = JSON.parse(sh(["ip", "-n", ctr.name, "-j", "link", "show", "dev", "eth0"]).stdout)[0];
  assert.is(peer.mtu, 1450, "the peer was created in the container namespace");
  const table = sb.inNode(["ip", "route", "show", "table", "300"]).stdout;
  assert.match(table, /10\.92\.0\.0\/16 via 10\.78\.0\.9 dev nbr0/);

  // A multipath route (no op makes one): its nexthops read the same either way.
  sb.inNode(
    ["ip", "route", "add", "10.93.0.0/16", "nexthop", "via", "10.78.0.9", "dev", "nbr0"].concat([
      "nexthop",
      "via",
      "10.78.0.10",
      "dev",
      "nbr0",
      "weight",
      "3",
    ]),
  );
  sb.inNode(
    ["ip", "-6", "route", "add", "fd93::/64", "nexthop", "via", "fd00:78::9", "dev", "nbr0"].concat([
      "nexthop",
      "via",
      "fd00:78::10",
      "dev",
      "nbr0",
    ]),
  );
  const reports = REPORTS(["nbr0", "nveth0", "ndum1", "lo"]);
  const viaIp = apply(sb, reports, false);
  const viaNl = apply(sb, reports, true);
  assert.ok(viaIp.ok && viaNl.ok, `${viaIp.stderr} ${viaNl.stderr}`);
  assert.equal(typedGroups(viaNl), typedGroups(viaIp));
  const inCtr = (netlink: boolean) =>
    typedGroups(
      JSON.parse(
        sh(["ip", "netns", "exec", ctr.name, BUN, FIXTURE], {
          input: JSON.stringify({ ops: [{ op: "show", dev: "eth0" }, { op: "links" }], async: false, netlink }),
        }).stdout,
      ) as LinkOutcome,
    );
  assert.equal(inCtr(true), inCtr(false), "a veth whose peer is in another namespace");
});

inSandbox("the same op list through each carrier leaves the same links, addresses and routes", (sb) => {
  const ops: LinkOp[] = [
    { op: "link-add", dev: "nbr0", mac: "02:00:00:00:aa:02", kind: { type: "bridge" } },
    { op: "link-set", dev: "nbr0", up: true },
    {
      op: "link-add",
      dev: "na0",
      mac: "02:00:00:00:aa:03",
      kind: { type: "veth", peer: { name: "nb0", mac: "02:00:00:00:aa:04" } },
    },
    { op: "link-set", dev: "na0", master: "nbr0", up: true },
    { op: "addr", verb: "add", dev: "nbr0", cidr: "10.80.0.1/24", broadcast: true },
    { op: "route", verb: "append", dst: "10.81.0.0/24", via: "10.80.0.2", dev: "nbr0" },
    {
      op: "link-add",
      dev: "nmv0",
      mac: "02:00:00:00:aa:05",
      kind: { type: "macvlan", parent: "nb0", mode: "private", bcqueuelen: 100 },
    },
    { op: "link-add", dev: "nmv1", mac: "02:00:00:00:aa:06", kind: { type: "macvlan", parent: "nb0", mode: "bridge" } },
  ];
  const state = (netlink: boolean) => {
    const made = apply(sb, ops, netlink);
    assert.ok(made.ok, `op ${made.failedOp}: ${made.stderr}`);
    const missingParent = apply(
      sb,
      [{ op: "link-add", dev: "nmv9", kind: { type: "macvlan", parent: "nosuch0", mode: "bridge" } }],
      netlink,
    );
    const seen = typedGroups(apply(sb, REPORTS(["nbr0", "na0", "nb0", "nmv0", "nmv1"]), false)).map((g) =>
      g.map((x) => ({ ...(x as object), ifindex: 0 })),
    );
    apply(
      sb,
      [
        { op: "link-del", dev: "na0" },
        { op: "link-del", dev: "nbr0" },
      ],
      netlink,
    );
    return { seen, missingParent: [missingParent.ok, missingParent.stderr.trim()] };
  };
  const viaNetlink = state(true);
  assert.equal(viaNetlink, state(false));
  assert.equal(viaNetlink.missingParent, [false, 'Cannot find device "nosuch0"']);
});

inSandbox("tap devices (made by ip tuntap, which no carrier takes) are reported alike by either carrier", (sb) => {
  const made = apply(
    sb,
    [
      { op: "tuntap-add", dev: "nt0", multiQueue: true, vnetHdr: true, user: 0 },
      { op: "tuntap-add", dev: "nt1" },
    ],
    true,
  );
  assert.ok(made.ok, `op ${made.failedOp}: ${made.stderr}`);
  const shows: LinkOp[] = [
    { op: "show", dev: "nt0" },
    { op: "show", dev: "nt1" },
  ];
  const viaNetlink = typedGroups(apply(sb, shows, true));
  assert.equal(viaNetlink, typedGroups(apply(sb, shows, false)));
  const data = viaNetlink.map((g) => (g[0] as IpLink).linkinfo?.info_data);
  assert.equal(data, [
    { type: "tap", multi_queue: true },
    { type: "tap", multi_queue: false },
  ]);
});

inSandbox("failures: the same error text and failing op from either carrier", (sb) => {
  apply(
    sb,
    [
      { op: "link-add", dev: "nbr0", kind: { type: "bridge" } },
      { op: "addr", verb: "add", dev: "nbr0", cidr: "10.82.0.1/24" },
      { op: "link-set", dev: "nbr0", up: true },
      { op: "route", verb: "append", dst: "10.83.0.0/24", via: "10.82.0.9", dev: "nbr0" },
    ],
    false,
  );
  const cases: LinkOp[][] = [
    [{ op: "link-add", dev: "nbr0", kind: { type: "bridge" } }],
    [
      { op: "link-set", dev: "lo", up: true },
      { op: "link-set", dev: "nabsent", up: true },
    ],
    [{ op: "link-del", dev: "nabsent" }],
    [{ op: "addr", verb: "add", dev: "nabsent", cidr: "10.0.0.1/24" }],
    [{ op: "addr", verb: "add", dev: "nbr0", cidr: "10.82.0.1/24" }],
    [{ op: "addr", verb: "del", dev: "nbr0", cidr: "10.82.0.7/24" }],
    [{ op: "route", verb: "append", dst: "10.84.0.0/24", dev: "nabsent" }],
    [{ op: "route", verb: "append", dst: "10.84.0.0/24", via: "10.99.0.1", dev: "nbr0" }],
    [{ op: "route", verb: "del", dst: "10.85.0.0/24", dev: "nbr0" }],
    [{ op: "route", verb: "append", dst: "10.86.0.5/24", dev: "nbr0" }],
    [{ op: "link-set", dev: "nbr0", mtu: 100000 }],
    [{ op: "link-set", dev: "lo", master: "nbr0" }],
    [{ op: "show", dev: "nabsent" }],
  ];
  for (const ops of cases) {
    const viaIp = apply(sb, ops, false);
    const viaNl = apply(sb, ops, true);
    const what = JSON.stringify(ops);
    assert.not.ok(viaIp.ok, what);
    assert.not.ok(viaNl.ok, what);
    assert.is(viaNl.stderr, viaIp.stderr, what);
    assert.is(viaNl.failedOp, viaIp.failedOp, what);
  }
  // Refusals ip makes while parsing end its whole batch (no failing line named): same words here,
  // and the netlink carrier also names the op.
  for (const ops of [
    [{ op: "link-set", dev: "nbr0", master: "nabsent" }],
    [{ op: "ports", master: "nabsent" }],
    [{ op: "link-add", dev: "nv0", kind: { type: "veth", peer: { name: "nv1", netns: "/nonexistent/ns" } } }],
  ] as LinkOp[][]) {
    const viaIp = apply(sb, ops, false);
    const viaNl = apply(sb, ops, true);
    assert.is(viaNl.stderr, viaIp.stderr, JSON.stringify(ops));
    assert.is(viaNl.failedOp, 0);
  }
});

test.run();
