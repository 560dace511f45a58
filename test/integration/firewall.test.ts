import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { BIN, cniEnv, REF_BIN, type Sandbox, sh, sandboxed, withSandbox } from "../helpers/sandbox.ts";
import { runPlugin, runPluginAsync } from "../helpers/plugin-run.ts";

const inSandbox = sandboxed(test, "fwtune");

// The firewall plugin in a sandbox "node" namespace whose FORWARD policy is DROP, with containers
// wired by hand (a veth into a container namespace, optionally enslaved to a test bridge) and a
// hand-built prevResult, so only this plugin decides what the node forwards. Traffic is real TCP:
// a small server in one namespace, a bash /dev/tcp client in another. A dropped SYN shows as the
// client's bounded wait expiring (exit 124), distinct from a refused connection.

const OURS = join(BIN, "firewall");
const REF = join(REF_BIN, "firewall");
const PORT = 8080;

interface Ctr {
  name: string;
  path: string;
  addr: string;
}

/** A container namespace with eth0 at `addr`/24, default route via `gw`, the node side named `hostIf`. */
function addContainer(
  sb: Sandbox,
  hostIf: string,
  addr: string,
  gw: string,
  opts: { bridge?: string; v6?: string } = {},
): Ctr {
  const c = sb.addContainer();
  sh(["ip", "link", "add", hostIf, "netns", sb.node, "type", "veth", "peer", "name", "eth0", "netns", c.name]);
  if (opts.bridge) sb.inNode(["ip", "link", "set", hostIf, "master", opts.bridge]);
  else sb.inNode(["ip", "addr", "add", `${gw}/24`, "dev", hostIf]);
  sb.inNode(["ip", "link", "set", hostIf, "up"]);
  sb.inNs(c.name, ["ip", "addr", "add", `${addr}/24`, "dev", "eth0"]);
  if (opts.v6) sb.inNs(c.name, ["ip", "addr", "add", `${opts.v6}/64`, "dev", "eth0", "nodad"]);
  sb.inNs(c.name, ["ip", "link", "set", "eth0", "up"]);
  sb.inNs(c.name, ["ip", "link", "set", "lo", "up"]);
  sb.inNs(c.name, ["ip", "route", "add", "default", "via", gw]);
  return { ...c, addr };
}

function addBridge(sb: Sandbox, name: string, cidr: string) {
  sb.inNode(["ip", "link", "add", name, "type", "bridge"]);
  sb.inNode(["ip", "addr", "add", cidr, "dev", name]);
  sb.inNode(["ip", "link", "set", name, "up"]);
}

/** A routing node that forwards nothing unless a rule says so. */
function lockDown(sb: Sandbox) {
  sb.inNode(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
  sb.inNode(["iptables", "-P", "FORWARD", "DROP"]);
}

function prevResult(ctr: Ctr, firstIf: string, extraIps: string[] = []) {
  return {
    cniVersion: "1.0.0",
    interfaces: [{ name: firstIf }, { name: "eth0", sandbox: ctr.path }],
    ips: [{ interface: 1, address: `${ctr.addr}/24` }, ...extraIps.map((address) => ({ interface: 1, address }))],
  };
}

function conf(prev: unknown, extra: Record<string, unknown> = {}) {
  return {
    cniVersion: "1.0.0",
    name: "fwnet",
    type: "firewall",
    backend: "iptables",
    ...extra,
    ...(prev ? { prevResult: prev } : {}),
  };
}

function call(sb: Sandbox, bin: string, cmd: string, ctr: Ctr, config: unknown, env: Record<string, string> = {}) {
  return runPlugin(
    sb,
    bin,
    { ...cniEnv(cmd, { CNI_NETNS: ctr.path, CNI_CONTAINERID: `id-${ctr.name}` }), ...env },
    config,
  );
}

function ok(r: { code: number; stdout: string; stderr: string }, what: string) {
  assert.is(r.code, 0, `${what} failed: ${r.stdout}${r.stderr}`);
}

const SERVER = `const s=require("net").createServer(c=>c.end("ok"));s.listen(+process.argv[2],process.argv[1],()=>console.log("ready"));`;

async function listen(ns: string, addr: string): Promise<ChildProcess> {
  const p = spawn("ip", ["netns", "exec", ns, process.execPath, "-e", SERVER, addr, String(PORT)], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise<void>((resolve, reject) => {
    p.stdout!.on("data", (d) => String(d).includes("ready") && resolve());
    p.on("exit", (code) => reject(new Error(`test server in ${ns} exited with ${code}`)));
  });
  return p;
}

/** Connects from `ns`; "ok" when the server answered, "dropped" when the SYN went unanswered. */
function connect(sb: Sandbox, ns: string, addr: string, expect: "ok" | "dropped"): string {
  // A generous bound when a connection is expected, a short one when a drop is.
  const bound = expect === "ok" ? "20" : "2";
  const r = sb.inNs(
    ns,
    ["timeout", bound, "bash", "-c", 'exec 3<>"/dev/tcp/$0/$1" && head -c 2 <&3', addr, String(PORT)],
    { allowFailure: true },
  );
  if (r.code === 0 && r.stdout === "ok") return "ok";
  if (r.code === 124) return "dropped";
  return `failed (${r.code}: ${r.stderr.trim()})`;
}

function filterRules(sb: Sandbox, family: 4 | 6 = 4): string[] {
  const out = sb.inNode([family === 4 ? "iptables-save" : "ip6tables-save", "-t", "filter"]).stdout;
  // Rules and user-defined chains (built-ins print a policy instead of "-").
  return out.split("\n").filter((l) => l.startsWith("-A ") || / - \[\d+:\d+\]$/.test(l));
}

const DNAT_EXEMPT = "-m conntrack --ctstate DNAT";
const FORWARD_JUMP = '-A FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD';
const ADMIN_JUMP = '-A CNI-FORWARD -m comment --comment "CNI firewall plugin admin overrides" -j CNI-ADMIN';
const inbound = (cidr: string) => `-A CNI-FORWARD -d ${cidr} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`;
const outbound = (cidr: string) => `-A CNI-FORWARD -s ${cidr} -j ACCEPT`;

inSandbox(
  "ADD lets the container's traffic out and its replies in, not new inbound; DEL takes that back",
  async (sb) => {
    const servers: ChildProcess[] = [];
    try {
      const ctr = addContainer(sb, "vctr", "10.99.0.2", "10.99.0.1");
      const ext = sb.addExternalHost("192.0.2.1/24", "192.0.2.2/24");
      sb.inNs(ext, ["ip", "route", "add", "10.99.0.0/24", "via", "192.0.2.1"]);
      lockDown(sb);
      servers.push(await listen(ext, "192.0.2.2"), await listen(ctr.name, "10.99.0.2"));
      const config = conf(prevResult(ctr, "vctr"));

      assert.is(connect(sb, ctr.name, "192.0.2.2", "dropped"), "dropped", "the node must forward nothing before ADD");

      const add = call(sb, OURS, "ADD", ctr, config);
      ok(add, "ADD");
      assert.equal(add.json, config.prevResult, "ADD passes prevResult on");
      assert.equal(filterRules(sb), [
        ":CNI-ADMIN - [0:0]",
        ":CNI-FORWARD - [0:0]",
        FORWARD_JUMP,
        ADMIN_JUMP,
        inbound("10.99.0.2/32"),
        outbound("10.99.0.2/32"),
      ]);

      assert.is(connect(sb, ctr.name, "192.0.2.2", "ok"), "ok", "container -> external host");
      assert.is(connect(sb, ext, "10.99.0.2", "dropped"), "dropped", "new connections from outside stay blocked");
      ok(call(sb, OURS, "CHECK", ctr, config), "CHECK");

      ok(call(sb, OURS, "DEL", ctr, config), "DEL");
      assert.equal(
        filterRules(sb),
        [":CNI-ADMIN - [0:0]", ":CNI-FORWARD - [0:0]", FORWARD_JUMP, ADMIN_JUMP],
        "DEL removes the container's rules, the chains stay",
      );
      assert.is(connect(sb, ctr.name, "192.0.2.2", "dropped"), "dropped", "after DEL the container is cut off again");
      ok(call(sb, OURS, "DEL", ctr, config), "second DEL");
      const check = call(sb, OURS, "CHECK", ctr, config);
      assert.is(check.code, 1);
      assert.match(check.json.msg, /CNI-FORWARD -d 10\.99\.0\.2\/32 .* not found/);
    } finally {
      for (const s of servers) s.kill();
    }
  },
);

inSandbox("dual stack: one transaction per family, IPv6 host routes in canonical form", (sb) => {
  const ctr = addContainer(sb, "vctr", "10.99.0.2", "10.99.0.1", { v6: "fd00:99::2" });
  const config = conf(prevResult(ctr, "vctr", ["fd00:99:0:0::2/64"]));
  ok(call(sb, OURS, "ADD", ctr, config), "ADD");
  assert.ok(filterRules(sb, 6).includes(inbound("fd00:99::2/128")));
  assert.ok(filterRules(sb, 6).includes(outbound("fd00:99::2/128")));
  assert.not.ok(
    filterRules(sb, 6).some((l) => l.includes("10.99.0.2")),
    "IPv4 rules stay out of ip6tables",
  );
  ok(call(sb, OURS, "CHECK", ctr, config), "CHECK");
  ok(call(sb, OURS, "DEL", ctr, config), "DEL");
  assert.not.ok(filterRules(sb, 6).some((l) => l.includes("fd00:99::2")));
  assert.not.ok(filterRules(sb, 4).some((l) => l.includes("10.99.0.2")));
});

inSandbox("ingressPolicy same-bridge cuts traffic between bridges but not within one; open does not", async (sb) => {
  const servers: ChildProcess[] = [];
  try {
    addBridge(sb, "br1", "10.98.1.1/24");
    addBridge(sb, "br2", "10.98.2.1/24");
    const a = addContainer(sb, "va", "10.98.1.2", "10.98.1.1", { bridge: "br1" });
    const a2 = addContainer(sb, "va2", "10.98.1.3", "10.98.1.1", { bridge: "br1" });
    const b = addContainer(sb, "vb", "10.98.2.2", "10.98.2.1", { bridge: "br2" });
    lockDown(sb);
    servers.push(await listen(a.name, a.addr));
    const attach = (policy: string, cmd: string) => {
      for (const [c, br] of [
        [a, "br1"],
        [a2, "br1"],
        [b, "br2"],
      ] as const)
        ok(call(sb, OURS, cmd, c, conf(prevResult(c, br), { ingressPolicy: policy })), `${cmd} ${policy}`);
    };

    attach("open", "ADD");
    assert.is(connect(sb, b.name, a.addr, "ok"), "ok", "open: another bridge may connect");
    assert.not.ok(
      filterRules(sb).some((l) => l.includes("ISOLATION")),
      "open adds no isolation rules",
    );
    attach("open", "DEL");

    attach("same-bridge", "ADD");
    const rules = filterRules(sb);
    const comment = '-m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge)"';
    assert.is(
      rules.find((l) => l.startsWith("-A FORWARD")),
      `-A FORWARD ${comment} -j CNI-ISOLATION-STAGE-1`,
      "isolation is consulted before CNI-FORWARD",
    );
    for (const br of ["br1", "br2"]) {
      assert.ok(rules.includes(`-A CNI-ISOLATION-STAGE-1 -i ${br} ! -o ${br} ${comment} -j CNI-ISOLATION-STAGE-2`));
      assert.ok(rules.includes(`-A CNI-ISOLATION-STAGE-2 -o ${br} ${comment} -j DROP`));
      const exempt = rules.indexOf(`-A CNI-ISOLATION-STAGE-2 -o ${br} ${DNAT_EXEMPT} ${comment} -j RETURN`);
      assert.ok(exempt >= 0 && exempt < rules.indexOf(`-A CNI-ISOLATION-STAGE-2 -o ${br} ${comment} -j DROP`));
    }
    assert.is(
      rules.filter((l) => l.includes("-i br1 ! -o br1")).length,
      1,
      "one rule per bridge, however many containers",
    );
    assert.is(rules.at(-1), `-A CNI-ISOLATION-STAGE-2 ${comment} -j RETURN`);
    assert.is(connect(sb, b.name, a.addr, "dropped"), "dropped", "same-bridge: another bridge is cut off");
    assert.is(connect(sb, a2.name, a.addr, "ok"), "ok", "same-bridge: the same bridge still connects");
    // A published port (the node DNATs its gateway address on br2 to a on br1, as portmap would a
    // host port) still connects across the isolated bridges, request and replies.
    sb.inNode(
      ["iptables", "-t", "nat", "-A", "PREROUTING", "-d", "10.98.2.1", "-p", "tcp", "--dport", String(PORT)].concat([
        "-j",
        "DNAT",
        "--to-destination",
        `${a.addr}:${PORT}`,
      ]),
    );
    assert.is(connect(sb, b.name, "10.98.2.1", "ok"), "ok", "same-bridge: a DNATed connection passes");
    ok(call(sb, OURS, "CHECK", a, conf(prevResult(a, "br1"), { ingressPolicy: "same-bridge" })), "CHECK");

    attach("same-bridge", "DEL");
    assert.ok(
      filterRules(sb).includes(`-A CNI-ISOLATION-STAGE-2 -o br1 ${comment} -j DROP`),
      "bridge isolation is shared and survives DEL",
    );
    assert.not.ok(
      filterRules(sb).some((l) => l.includes("10.98.")),
      "container rules are gone",
    );
  } finally {
    for (const s of servers) s.kill();
  }
});

test("cross-implementation: same rules as the reference, and each DEL/CHECK accepts the other's ADD", () =>
  withSandbox("fwtune", (ours) =>
    withSandbox("fwtune", (ref) => {
      const make = (sb: Sandbox) => addContainer(sb, "vctr", "10.99.0.2", "10.99.0.1", { v6: "fd00:99::2" });
      const co = make(ours);
      const cr = make(ref);
      const config = (c: Ctr) => conf(prevResult(c, "vctr", ["fd00:99::2/64"]), { ingressPolicy: "same-bridge" });
      ok(call(ours, OURS, "ADD", co, config(co)), "our ADD");
      ok(call(ref, REF, "ADD", cr, config(cr)), "reference ADD");
      // Identical but for our exemption of DNATed connections from the isolation drop.
      const isExempt = (l: string) => l.includes(DNAT_EXEMPT);
      for (const f of [4, 6] as const)
        assert.equal(
          filterRules(ours, f).filter((l) => !isExempt(l)),
          filterRules(ref, f),
          `IPv${f} rules identical to the reference's`,
        );
      assert.ok(filterRules(ours).some(isExempt), "ours exempts DNATed connections");

      // Reference ADD, our CHECK and DEL.
      ok(call(ref, OURS, "CHECK", cr, config(cr)), "our CHECK of the reference's ADD");
      ok(call(ref, OURS, "DEL", cr, config(cr)), "our DEL of the reference's ADD");
      for (const f of [4, 6] as const)
        assert.not.ok(
          filterRules(ref, f).some((l) => /10\.99\.0\.2|fd00:99::2/.test(l)),
          `IPv${f}: our DEL cleaned the reference's rules`,
        );

      // Our ADD, reference CHECK and DEL.
      ok(call(ours, REF, "CHECK", co, config(co)), "reference CHECK of our ADD");
      ok(call(ours, REF, "DEL", co, config(co)), "reference DEL of our ADD");
      for (const f of [4, 6] as const)
        assert.not.ok(
          filterRules(ours, f).some((l) => /10\.99\.0\.2|fd00:99::2/.test(l)),
          `IPv${f}: the reference's DEL cleaned our rules`,
        );
    }),
  ));

inSandbox(
  "parallel ADDs on a fresh node race for the shared chains: all succeed, nothing is duplicated",
  async (sb) => {
    const n = 6;
    const ctrs = Array.from({ length: n }, (_, i) => addContainer(sb, `vc${i}`, `10.97.${i}.2`, `10.97.${i}.1`));
    const runs = ctrs.map((c) =>
      runPluginAsync(
        sb,
        OURS,
        cniEnv("ADD", { CNI_NETNS: c.path, CNI_CONTAINERID: `id-${c.name}` }),
        conf(prevResult(c, `vc${c.addr}`)),
      ),
    );
    for (const r of await Promise.all(runs)) assert.is(r.code, 0, r.stdout + r.stderr);
    const rules = filterRules(sb);
    assert.is(rules.filter((l) => l === FORWARD_JUMP).length, 1);
    assert.is(rules.filter((l) => l === ADMIN_JUMP).length, 1);
    for (const c of ctrs) {
      assert.is(rules.filter((l) => l === inbound(`${c.addr}/32`)).length, 1, c.addr);
      assert.is(rules.filter((l) => l === outbound(`${c.addr}/32`)).length, 1, c.addr);
    }
    assert.is(rules.filter((l) => l.startsWith("-A CNI-FORWARD")).length, 1 + 2 * n);
  },
);

inSandbox("custom admin chain: jumped first from CNI-FORWARD, left empty for the operator", (sb) => {
  const ctr = addContainer(sb, "vctr", "10.99.0.2", "10.99.0.1");
  const config = conf(prevResult(ctr, "vctr"), { iptablesAdminChainName: "MY-ADMIN" });
  ok(call(sb, OURS, "ADD", ctr, config), "ADD");
  const rules = filterRules(sb);
  assert.ok(rules.includes(":MY-ADMIN - [0:0]"));
  assert.is(
    rules.filter((l) => l.startsWith("-A CNI-FORWARD"))[0],
    '-A CNI-FORWARD -m comment --comment "CNI firewall plugin admin overrides" -j MY-ADMIN',
  );
  assert.not.ok(rules.some((l) => l.startsWith("-A MY-ADMIN")));
});

inSandbox("bad input: a CNI error naming the problem, and no rule anywhere", (sb) => {
  const ctr = addContainer(sb, "vctr", "10.99.0.2", "10.99.0.1");
  const prev = prevResult(ctr, "vctr");
  const cases: [unknown, RegExp, number][] = [
    [conf(undefined), /missing prevResult from earlier plugin/, 7],
    [conf(prev, { ingressPolicy: "closed" }), /^invalid network config: ingressPolicy:/, 7],
    [conf(prev, { backend: "nftables" }), /^invalid network config: backend:/, 7],
    [conf(prev, { iptablesAdminChainName: "bad name" }), /^invalid network config: iptablesAdminChainName:/, 7],
    [conf({ ...prev, ips: [{ address: "10.99.0/24" }] }), /invalid IP address/, 6],
    [
      conf({ ...prev, interfaces: [] }, { ingressPolicy: "same-bridge" }),
      /interface needs to be set for ingress policy "same-bridge"/,
      7,
    ],
    [{ ...conf(prev), cniVersion: "0.3.1" }, /incompatible CNI versions/, 1],
  ];
  for (const [config, msg, code] of cases) {
    const r = call(sb, OURS, "ADD", ctr, config);
    assert.is(r.code, 1, `should fail: ${JSON.stringify(config)}`);
    assert.is(r.json.code, code, r.stdout);
    assert.match(r.json.msg, msg);
  }
  assert.equal(filterRules(sb), [], "no chain or rule was created");
  assert.equal(filterRules(sb, 6), []);
});

inSandbox("DEL is idempotent: without prevResult, with the netns gone, and with nothing to remove", (sb) => {
  const ctr = addContainer(sb, "vctr", "10.99.0.2", "10.99.0.1");
  const config = conf(prevResult(ctr, "vctr"));
  ok(call(sb, OURS, "DEL", ctr, conf(undefined)), "DEL without prevResult");
  ok(call(sb, OURS, "DEL", ctr, config), "DEL before any ADD");
  const noBridge = conf({ ...prevResult(ctr, "vctr"), interfaces: [] }, { ingressPolicy: "same-bridge" });
  ok(call(sb, OURS, "DEL", ctr, noBridge), "DEL does not need the bridge of an ingress policy");
  ok(call(sb, OURS, "ADD", ctr, config), "ADD");
  // After an ADD, a DEL without prevResult still succeeds, but the rules are keyed by the
  // container's addresses only (as the reference's), so it has nothing to match them by.
  ok(call(sb, OURS, "DEL", ctr, conf(undefined)), "DEL without prevResult after ADD");
  assert.ok(
    filterRules(sb).some((l) => l.includes("10.99.0.2")),
    "a DEL without prevResult cannot find the rules",
  );
  sh(["ip", "netns", "del", ctr.name]);
  ok(call(sb, OURS, "DEL", ctr, config), "DEL with the netns gone");
  assert.not.ok(
    filterRules(sb).some((l) => l.includes("10.99.0.2")),
    "rules removed although the netns is gone",
  );
});

inSandbox(
  "firewalld backend: a clear error when it is not running, never a silent fallback to iptables",
  async (sb) => {
    let bus: ChildProcess | undefined;
    try {
      const ctr = addContainer(sb, "vctr", "10.99.0.2", "10.99.0.1");
      const prev = prevResult(ctr, "vctr");
      // No bus at all (the address names a socket that does not exist).
      const noBus = { DBUS_SYSTEM_BUS_ADDRESS: `unix:path=${sb.tmp}/no-bus` };
      const r = call(sb, OURS, "ADD", ctr, conf(prev, { backend: "firewalld" }), noBus);
      assert.is(r.code, 1);
      assert.match(
        r.json.msg,
        /backend "firewalld" selected but firewalld is not running \(no system D-Bus socket found\)/,
      );
      ok(call(sb, OURS, "DEL", ctr, conf(prev, { backend: "firewalld" }), noBus), "DEL with firewalld gone");

      // A bus without firewalld on it (a private dbus-daemon).
      const busConf = join(sb.tmp, "bus.conf");
      const socket = join(sb.tmp, "bus");
      writeFileSync(
        busConf,
        `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>system</type><listen>unix:path=${socket}</listen><auth>EXTERNAL</auth>
<policy context="default"><allow send_type="*"/><allow receive_type="*"/><allow own="*"/></policy></busconfig>`,
      );
      bus = spawn("dbus-daemon", [`--config-file=${busConf}`, "--nofork", "--print-address"], {
        stdio: ["ignore", "pipe", "ignore"],
      });
      await new Promise<void>((resolve, reject) => {
        bus!.stdout!.on("data", (d) => String(d).includes(socket) && resolve());
        bus!.on("exit", (code) => reject(new Error(`dbus-daemon exited with ${code}`)));
      });
      const privateBus = { DBUS_SYSTEM_BUS_ADDRESS: `unix:path=${socket}` };
      const r2 = call(sb, OURS, "ADD", ctr, conf(prev, { backend: "firewalld" }), privateBus);
      assert.is(r2.code, 1);
      assert.match(
        r2.json.msg,
        /firewalld is not running \(org\.fedoraproject\.FirewallD1 does not answer on the system D-Bus\)/,
      );
      assert.equal(filterRules(sb), [], "no iptables fallback");

      // Without a backend key the reference's default applies: iptables when firewalld does not answer.
      const { backend: _, ...noBackend } = conf(prev);
      ok(call(sb, OURS, "ADD", ctr, noBackend, privateBus), "ADD with the default backend");
      assert.ok(filterRules(sb).includes(outbound("10.99.0.2/32")));
    } finally {
      bus?.kill();
    }
  },
);

test.run();
