import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdirSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { ping as ping46, tracedSpawns } from "../helpers/bridge-net.ts";
import { BIN, type Sandbox, cniEnv, sandboxed } from "../helpers/sandbox.ts";
import {
  EXT_ADDR,
  addSegment,
  addressOf,
  cni,
  linkIn,
  linkNames,
  ok,
  ours,
  ping,
  reference,
} from "../helpers/sublink-net.ts";
import { runPlugin } from "../helpers/plugin-run.ts";

const inSandbox = sandboxed(test, "static");

/**
 * static IPAM: its answers side by side with the reference's for a table of inputs in every result
 * shape, its CHECK and DEL, and static under bridge, macvlan and ptp with real packets, run
 * in-process by our plugins (no second process) and executed by the reference's.
 */
const STATIC = ours("static");
const REF_STATIC = reference("static");

/** A CNI_PATH directory of `plugins` (name → binary), so delegation finds the chosen static. */
function pathOf(sb: Sandbox, label: string, plugins: Record<string, string>): string {
  const dir = join(sb.tmp, `path-${label}`);
  mkdirSync(dir, { recursive: true });
  for (const [name, bin] of Object.entries(plugins)) symlinkSync(bin, join(dir, name));
  return dir;
}

function call(sb: Sandbox, bin: string, command: string, netns: string, config: unknown, args = "", path = BIN) {
  const env = cniEnv(command, { CNI_NETNS: netns, CNI_PATH: path, ...(args ? { CNI_ARGS: args } : {}) });
  return runPlugin(sb, bin, env, config);
}

interface Case {
  what: string;
  ipam?: Record<string, unknown> | null;
  extra?: Record<string, unknown>;
  args?: string;
  /** Both fail, ours with this code and a message that differs on purpose (docs/differences.md). */
  ownMessage?: number;
}

const A = (address: string, gateway?: string) => (gateway ? { address, gateway } : { address });
const CASES: Case[] = [
  { what: "one address", ipam: { addresses: [A("10.0.0.5/24", "10.0.0.1")] } },
  {
    what: "dual stack with routes and dns",
    ipam: {
      addresses: [A("10.0.0.5/24", "10.0.0.1"), A("FD00:0:0::5/64", "fd00::1")],
      routes: [{ dst: "0.0.0.0/0" }, { dst: "10.1.2.3/8", gw: "10.0.0.254" }, { dst: "::/0" }],
      dns: { nameservers: ["10.0.0.53"], domain: "example.org", search: ["a.example.org"], options: ["ndots:2"] },
    },
  },
  { what: "two addresses of a family", ipam: { addresses: [A("10.0.0.5/24"), A("10.0.1.5/24")] } },
  { what: "IPv4-mapped address and gateway", ipam: { addresses: [A("::ffff:10.0.0.5/120", "::ffff:10.0.0.1")] } },
  {
    what: "a gateway outside the subnet, an empty one",
    ipam: { addresses: [A("10.0.0.5/24", "192.168.0.1"), A("10.0.1.5/24", "")] },
  },
  { what: "no addresses", ipam: {} },
  { what: "null lists", ipam: { addresses: null, routes: null, dns: null } },
  {
    what: "CNI_ARGS IP appended, GATEWAY attached to those",
    ipam: { addresses: [A("10.0.0.5/24")] },
    args: "IP= 10.0.0.7/24 ,10.1.0.7/16;GATEWAY=10.1.0.1, 10.0.0.1",
  },
  { what: "CNI_ARGS with IgnoreUnknown", ipam: {}, args: "IgnoreUnknown=1;K8S_POD_NAME=p;IP=10.0.0.7/24,fd00::7/64" },
  { what: "CNI_ARGS empty values", ipam: { addresses: [A("10.0.0.5/24")] }, args: "IP=;GATEWAY=" },
  {
    what: "args.cni.ips replaces CNI_ARGS and the config",
    ipam: { addresses: [A("10.0.0.5/24", "10.0.0.1")] },
    extra: { args: { cni: { ips: ["10.9.0.1/24"] } } },
    args: "IP=10.0.0.7/24",
  },
  {
    what: "runtimeConfig.ips replaces args.cni.ips",
    ipam: { addresses: [A("bad")] },
    extra: { args: { cni: { ips: ["10.9.0.1/24"] } }, runtimeConfig: { ips: ["10.8.0.1/24", "fd00::8/64"] } },
  },
  {
    what: "empty replacement lists",
    ipam: { addresses: [A("10.0.0.5/24")] },
    extra: { args: { cni: { ips: [] } }, runtimeConfig: { ips: [] } },
  },
  { what: "address without prefix", ipam: { addresses: [A("10.0.0.5")] } },
  { what: "address missing", ipam: { addresses: [{}] } },
  { what: "bad gateway", ipam: { addresses: [A("10.0.0.5/24", "bad")] } },
  { what: "bad route (ours names the field)", ipam: { routes: [{ dst: "10.0.0.0/33" }] }, ownMessage: 7 },
  { what: "CNI_ARGS IP without prefix", ipam: {}, args: "IP=10.0.0.7" },
  { what: "CNI_ARGS bad gateway", ipam: {}, args: "IP=10.0.0.7/24;GATEWAY=10.0.0.1,bad " },
  { what: "CNI_ARGS unknown key", ipam: {}, args: "FOO=1", ownMessage: 4 },
  { what: "args.cni.ips without prefix", ipam: {}, extra: { args: { cni: { ips: ["10.9.0.1"] } } } },
  { what: "runtimeConfig.ips bad", ipam: {}, extra: { runtimeConfig: { ips: ["bad"] } } },
  { what: "no ipam", ipam: null },
];
const VERSIONS = ["0.2.0", "0.3.1", "0.4.0", "1.0.0"];

/** A result as the two print it alike: Debian's build prints an empty `dns` in 1.x results, we do not. */
function comparable(json: any, version: string) {
  if (json?.code !== undefined) return { error: json.msg };
  if (version.startsWith("1.") && json?.dns && Object.keys(json.dns).length === 0) delete json.dns;
  return json;
}

inSandbox("ADD answers as the reference does for every source and result version", (sb) => {
  const ctr = sb.addContainer();
  let compared = 0;
  for (const c of CASES) {
    for (const v of VERSIONS) {
      const config: Record<string, unknown> = { cniVersion: v, name: "stnet", type: "static", ...c.extra };
      if (c.ipam !== null) config.ipam = { type: "static", ...c.ipam };
      const mine = call(sb, STATIC, "ADD", ctr.path, config, c.args);
      const theirs = call(sb, REF_STATIC, "ADD", ctr.path, config, c.args);
      const what = `${c.what} (${v}): ours ${mine.stdout} reference ${theirs.stdout}`;
      assert.is(mine.code === 0, theirs.code === 0, what);
      if (c.ownMessage) assert.is(mine.json?.code, c.ownMessage, what);
      else assert.equal(comparable(mine.json, v), comparable(theirs.json, v), what);
      if (mine.code !== 0) assert.ok([7, 4, 999].includes(mine.json?.code), what);
      compared++;
    }
  }
  assert.is(compared, CASES.length * VERSIONS.length);
  assert.equal(linkNames(sb, ctr.name), ["lo"], "IPAM touches no namespace");
});

inSandbox("DEL is a no-op that reads nothing; CHECK finds every configured address with its gateway", (sb) => {
  const ctr = sb.addContainer();
  for (const bin of [STATIC, REF_STATIC]) {
    assert.is(call(sb, bin, "DEL", ctr.path, { cniVersion: "1.0.0", name: "stnet", ipam: "garbage" }).code, 0, bin);
    assert.is(call(sb, bin, "DEL", "", { cniVersion: "1.0.0", name: "stnet" }).code, 0, `${bin} without a netns`);
  }
  const config = {
    cniVersion: "1.0.0",
    name: "stnet",
    type: "static",
    ipam: { type: "static", addresses: [A("10.0.0.5/24", "10.0.0.1"), A("fd00::5/64")] },
  };
  const theirs = ok(call(sb, REF_STATIC, "ADD", ctr.path, config), "reference ADD");
  const check = (prevResult: unknown, bin = STATIC) => call(sb, bin, "CHECK", ctr.path, { ...config, prevResult });
  ok(check(theirs), "our CHECK of the reference's result");
  ok(check(ok(call(sb, STATIC, "ADD", ctr.path, config), "our ADD")), "our CHECK of our result");
  // Extra addresses in prevResult (another plugin's) are fine.
  ok(check({ ...theirs, ips: [...theirs.ips, { address: "10.7.0.1/16" }] }), "extra address");
  const missing = check({ ...theirs, ips: [theirs.ips[0]] });
  assert.is(missing.json?.msg, "static: Failed to match addr fd00::5 on interface eth0");
  const gateway = check({ ...theirs, ips: [{ ...theirs.ips[0], gateway: "10.0.0.254" }, theirs.ips[1]] });
  assert.is(gateway.json?.msg, "static: Failed to match addr 10.0.0.5 on interface eth0");
  assert.is(call(sb, STATIC, "CHECK", ctr.path, config).json?.msg, "Required prevResult missing");
  // Debian's 1.1.1 build has its CHECK commented out: it passes what ours refuses.
  ok(check({ ...theirs, ips: [theirs.ips[0]] }, REF_STATIC), "the reference passes anything");
});

/** Two containers with static addresses on one network: each reaches the other and the gateway. */
inSandbox("bridge: static run in-process (no second process) and the reference's static give the same pods", (sb) => {
  const refPath = pathOf(sb, "refstatic", { bridge: join(BIN, "bridge"), static: REF_STATIC });
  const bridgeConf = (addr: string) => ({
    cniVersion: "1.0.0",
    name: "stbr",
    type: "bridge",
    bridge: "stbr0",
    isGateway: true,
    ipam: {
      type: "static",
      addresses: [A(addr, "10.30.0.1"), A(`fd30::${addr.split(".")[3]!.split("/")[0]}/64`, "fd30::1")],
    },
  });
  const a = sb.addContainer();
  const b = sb.addContainer();
  const env = cniEnv("ADD", { CNI_NETNS: a.path, CNI_CONTAINERID: "a" });
  const ra = tracedSpawns(sb, env, bridgeConf("10.30.0.10/24"));
  assert.is(ra.code, 0, ra.stdout);
  assert.not.ok(ra.spawns.includes("static"), `static ran in-process: ${ra.spawns.join(" ")}`);
  const rb = ok(
    call(sb, join(BIN, "bridge"), "ADD", b.path, bridgeConf("10.30.0.11/24"), "", refPath),
    "ADD b via the reference static",
  );
  const resA = JSON.parse(ra.stdout);
  assert.equal(resA.ips, [
    { interface: 2, address: "10.30.0.10/24", gateway: "10.30.0.1" },
    { interface: 2, address: "fd30::10/64", gateway: "fd30::1" },
  ]);
  assert.equal(
    rb.ips.map((ip: any) => ip.address),
    ["10.30.0.11/24", "fd30::11/64"],
  );
  assert.is(addressOf(linkIn(sb, a.name, "eth0")), "10.30.0.10");
  assert.ok(ping46(sb, a.name, "10.30.0.11"), "a reaches b");
  assert.ok(ping46(sb, b.name, "10.30.0.1"), "b reaches its gateway on the bridge");
  assert.ok(ping46(sb, b.name, "fd30::10", 5), "b reaches a over IPv6");
  ok(call(sb, join(BIN, "bridge"), "CHECK", a.path, { ...bridgeConf("10.30.0.10/24"), prevResult: resA }), "CHECK a");
  ok(call(sb, join(BIN, "bridge"), "DEL", a.path, bridgeConf("10.30.0.10/24")), "DEL a");
  ok(call(sb, join(BIN, "bridge"), "DEL", b.path, bridgeConf("10.30.0.11/24"), "", refPath), "DEL b");
  assert.equal(linkNames(sb, a.name), ["lo"]);
  assert.equal(linkNames(sb, b.name), ["lo"]);
});

inSandbox("macvlan: ours with our static, the reference's with ours executed; a bad address leaves nothing", (sb) => {
  const seg = addSegment(sb);
  const conf = (addr: string, type = "macvlan") => ({
    cniVersion: "1.0.0",
    name: "stmv",
    type,
    master: seg.master,
    ipam: { type: "static", addresses: [A(addr, "192.0.2.1")], routes: [{ dst: "198.51.100.0/24" }] },
  });
  const ourPath = pathOf(sb, "ours", { macvlan: reference("macvlan"), static: STATIC });
  const [a, b] = [sb.addContainer(), sb.addContainer()];
  const ra = ok(cni(sb, ours("macvlan"), "ADD", { netns: a.path, id: "a" }, conf("192.0.2.20/24")), "our macvlan");
  assert.equal(ra.ips, [{ interface: 0, address: "192.0.2.20/24", gateway: "192.0.2.1" }]);
  const rb = ok(
    call(sb, reference("macvlan"), "ADD", b.path, conf("192.0.2.21/24"), "", ourPath),
    "the reference macvlan executing our static",
  );
  assert.is(rb.ips[0].address, "192.0.2.21/24");
  assert.ok(ping(sb, a.name, EXT_ADDR), "a reaches the external host");
  assert.ok(ping(sb, seg.ext, "192.0.2.21"), "the external host reaches b");
  // The route static configured is in the container, via the gateway.
  const routes = sb.inNs(a.name, ["ip", "route", "show", "198.51.100.0/24"]).stdout;
  assert.match(routes, "via 192.0.2.1 dev eth0");

  const c = sb.addContainer();
  const bad = cni(sb, ours("macvlan"), "ADD", { netns: c.path }, conf("192.0.2.22"));
  assert.is(bad.json?.msg, "the 'address' field is expected to be in CIDR notation, got: '192.0.2.22'");
  assert.equal(linkNames(sb, c.name), ["lo"], "the failed ADD removed its link");
});

inSandbox("ptp: a static address with its gateway is routed through the node", (sb) => {
  const conf = {
    cniVersion: "1.0.0",
    name: "stptp",
    type: "ptp",
    ipam: { type: "static", addresses: [A("10.40.0.5/24", "10.40.0.1")], routes: [{ dst: "0.0.0.0/0" }] },
  };
  const ctr = sb.addContainer();
  const r = ok(call(sb, ours("ptp"), "ADD", ctr.path, conf), "ADD");
  assert.equal(r.ips, [{ interface: 1, address: "10.40.0.5/24", gateway: "10.40.0.1" }]);
  assert.ok(ping46(sb, ctr.name, "10.40.0.1"), "the container reaches its gateway on the node's end");
  assert.ok(ping46(sb, sb.node, "10.40.0.5"), "the node reaches the container");
  ok(call(sb, ours("ptp"), "CHECK", ctr.path, { ...conf, prevResult: r }), "CHECK");
  ok(call(sb, ours("ptp"), "DEL", ctr.path, conf), "DEL");
  assert.equal(linkNames(sb, ctr.name), ["lo"]);
  const noGateway = call(sb, ours("ptp"), "ADD", ctr.path, {
    ...conf,
    ipam: { type: "static", addresses: [A("10.40.0.5/24")] },
  });
  assert.is(noGateway.code, 1);
  assert.equal(linkNames(sb, ctr.name), ["lo"]);
});

test.run();
