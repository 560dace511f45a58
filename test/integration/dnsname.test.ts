import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { sleepMs } from "../../lib/sleep.ts";
import { BIN, type Sandbox, cniEnv, withSandbox } from "../helpers/sandbox.ts";
import { libcniClient, ourCnitool, writeNetconf } from "../helpers/libcni.ts";
import { runPlugin } from "../helpers/plugin-run.ts";
import {
  DOMAIN,
  type Net,
  type Pod,
  chain,
  chainAsync,
  daemonPid,
  dnsInputRules,
  goneSoon,
  dig,
  hostsLines,
  isDnsmasq,
  netDir,
  netconf,
  network,
  pod,
  refDnsnamePath,
  stopDaemons,
  ttls,
} from "../helpers/dnsname-net.ts";

// bridge + host-local + dnsname conflists driven by our cnitool and by the libcni client, with the
// dnsmasq each network gets running in the sandbox's node namespace; lookups with dig from the
// containers' namespaces. Every daemon is stopped by its PID when the test ends.

function inNets<T>(label: string, nets: Net[], fn: (sb: Sandbox, netconfPath: string) => T | Promise<T>) {
  return withSandbox(label, async (sb) => {
    try {
      return await fn(sb, netconf(sb, nets));
    } finally {
      stopDaemons(nets);
    }
  });
}

const addOk = (sb: Sandbox, call: Parameters<typeof chain>[1], net: Net, p: Pod) => {
  const r = chain(sb, call, "add", net, p);
  assert.is(r.code, 0, `${p.name}: ${r.stdout}${r.stderr}`);
  return JSON.parse(r.stdout);
};

const ipOf = (result: any, family: 4 | 6) =>
  (result.ips as { address: string }[])
    .map((i) => i.address.split("/")[0]!)
    .find((a) => a.includes(":") === (family === 6))!;

test("two containers resolve each other by name and alias (A, AAAA, PTR, TTL 0); another network does not", () => {
  const a = network(true);
  const b = network(false);
  return inNets("dnsname", [a, b], (sb, netconfPath) => {
    const call = { netconfPath, client: ourCnitool() };
    const db = pod(sb, "db", ["database"]);
    const web = pod(sb, "web");
    const dbRes = addOk(sb, call, a, db);
    const webRes = addOk(sb, call, a, web);
    // The result points the container at the bridge and adds the domain to its search list.
    assert.equal(webRes.dns.nameservers, [a.gateway, a.v6!.gateway]);
    assert.equal(webRes.dns.search, [DOMAIN]);
    const dbV4 = ipOf(dbRes, 4);
    const dbV6 = ipOf(dbRes, 6);
    for (const name of ["db", `db.${DOMAIN}`, "database", `database.${DOMAIN}`, db.id.slice(0, 12)])
      assert.equal(dig(sb, web.ns, a.gateway, [name]), { status: "NOERROR", answers: [dbV4] }, name);
    assert.equal(dig(sb, web.ns, a.gateway, ["AAAA", `db.${DOMAIN}`]).answers, [dbV6]);
    assert.equal(dig(sb, db.ns, a.gateway, [`web.${DOMAIN}`]).answers, [ipOf(webRes, 4)]);
    assert.equal(dig(sb, web.ns, a.gateway, ["-x", dbV4]).answers, [`db.${DOMAIN}.`]);
    assert.equal(ttls(sb, web.ns, a.gateway, [`db.${DOMAIN}`]), [0]);
    assert.is(dig(sb, web.ns, a.gateway, [`nope.${DOMAIN}`]).status, "NXDOMAIN");
    // Names Podman allows (`--name my_app`, `--network-alias api.v1`) resolve too; dnsmasq's
    // expand-hosts adds the domain only to names without a dot, as with the reference.
    const app = pod(sb, "my_app", ["api.v1"]);
    const appV4 = ipOf(addOk(sb, call, a, app), 4);
    for (const name of ["my_app", `my_app.${DOMAIN}`, "api.v1"])
      assert.equal(dig(sb, web.ns, a.gateway, [name]), { status: "NOERROR", answers: [appV4] }, name);

    // A container on an IPv4-only network: its own server knows only its network's names.
    const other = pod(sb, "other");
    const otherRes = addOk(sb, call, b, other);
    assert.equal(otherRes.dns.nameservers, [b.gateway]);
    assert.equal(dig(sb, other.ns, b.gateway, [`other.${DOMAIN}`]).answers, [ipOf(otherRes, 4)]);
    assert.equal(dig(sb, other.ns, b.gateway, ["AAAA", `other.${DOMAIN}`]), { status: "NOERROR", answers: [] });
    assert.equal(dig(sb, other.ns, b.gateway, [`db.${DOMAIN}`]), { status: "NXDOMAIN", answers: [] });
    assert.equal(dig(sb, web.ns, a.gateway, [`other.${DOMAIN}`]), { status: "NXDOMAIN", answers: [] });
    // Two networks, two daemons.
    assert.ok(isDnsmasq(daemonPid(a)) && isDnsmasq(daemonPid(b)));
    assert.is(dnsInputRules(sb, a, 6).length, 2, "a dual-stack bridge's queries over IPv6 too");
    assert.is(dnsInputRules(sb, b, 6).length, 0);
    assert.is.not(daemonPid(a), daemonPid(b));
  });
});

test("names outside the domain are forwarded to the node's resolv.conf servers; unknown names under it are not", () => {
  const a = network(false);
  return inNets("dnsname", [a], async (sb, netconfPath) => {
    // An upstream server on an external host the node reaches; `ip netns exec` gives the node (and
    // so its dnsmasq) /etc/netns/<node>/resolv.conf as its /etc/resolv.conf.
    const ext = sb.addExternalHost("192.0.2.1/24", "192.0.2.2/24");
    const etc = join("/etc/netns", sb.node);
    const logFile = join(sb.tmp, "upstream.log");
    const hadNetnsDir = existsSync("/etc/netns");
    mkdirSync(etc, { recursive: true });
    writeFileSync(join(etc, "resolv.conf"), "nameserver 192.0.2.2\n");
    const upstream = spawn(
      "ip",
      [
        "netns",
        "exec",
        ext,
        "dnsmasq",
        "--keep-in-foreground",
        "--no-resolv",
        "--no-hosts",
        "-u",
        "root",
        "--pid-file=",
        "--listen-address=192.0.2.2",
        "--bind-interfaces",
        "--address=/example.test/192.0.2.7",
        "--log-queries",
        `--log-facility=${logFile}`,
      ],
      { stdio: "ignore" },
    );
    try {
      const web = pod(sb, "web");
      addOk(sb, { netconfPath, client: ourCnitool() }, a, web);
      assert.is(dig(sb, web.ns, a.gateway, [`nope.${DOMAIN}`]).status, "NXDOMAIN");
      assert.equal(dig(sb, web.ns, a.gateway, ["host.example.test"]).answers, ["192.0.2.7"]);
      // The upstream logs queries in arrival order, maybe after answering: once the forwarded one
      // is there (bounded wait), the domain's earlier query would be too had it been forwarded.
      const logged = () => (existsSync(logFile) ? readFileSync(logFile, "utf8") : "");
      for (let i = 0; i < 500 && !/example\.test/.test(logged()); i++) sleepMs(10);
      const log = logged();
      assert.match(log, /query\[A\] host\.example\.test/);
      assert.not.match(log, /nope/, "a name under the domain never leaves the network's server");
    } finally {
      upstream.kill("SIGKILL");
      rmSync(etc, { recursive: true, force: true });
      // Only our own entry goes; the directory too when we made it and nobody else uses it now.
      if (!hadNetnsDir) {
        try {
          rmdirSync("/etc/netns");
        } catch {}
      }
    }
  });
});

test("CHECK passes; DEL removes the name; the last DEL stops dnsmasq and removes the files (libcni)", () => {
  const a = network(false);
  return inNets("dnsname", [a], (sb, netconfPath) => {
    const call = { netconfPath, client: libcniClient() };
    const db = pod(sb, "db");
    const web = pod(sb, "web");
    const dbRes = addOk(sb, call, a, db);
    addOk(sb, call, a, web);
    const pid = daemonPid(a);
    assert.ok(isDnsmasq(pid), "one dnsmasq for the network");
    assert.equal(dnsInputRules(sb, a), [
      `-A INPUT -i ${a.bridge} -p tcp -m tcp --dport 53 -j ACCEPT`,
      `-A INPUT -i ${a.bridge} -p udp -m udp --dport 53 -j ACCEPT`,
    ]);
    for (const p of [db, web]) assert.is(chain(sb, call, "check", a, p).code, 0, `CHECK ${p.name}`);
    assert.equal(dig(sb, web.ns, a.gateway, [`db.${DOMAIN}`]).answers, [ipOf(dbRes, 4)]);

    assert.is(chain(sb, call, "del", a, db).code, 0);
    assert.is(dig(sb, web.ns, a.gateway, [`db.${DOMAIN}`]).status, "NXDOMAIN");
    assert.is(daemonPid(a), pid, "the daemon stays while a container is left");
    assert.ok(isDnsmasq(pid));
    assert.is(hostsLines(a).length, 1);

    assert.is(chain(sb, call, "del", a, web).code, 0);
    assert.not.ok(isDnsmasq(pid), "the last DEL stopped dnsmasq");
    assert.not.ok(existsSync(netDir(a)), "and removed the network's files");
    assert.equal(dnsInputRules(sb, a), [], "and the INPUT rules");
    // A DEL once everything is gone succeeds and makes nothing.
    assert.is(chain(sb, call, "del", a, web).code, 0);
    assert.not.ok(existsSync(netDir(a)));
  });
});

/** The dnsname plugin alone, after the bridge, with prevResult `prev` (or none). */
function dnsname(sb: Sandbox, command: string, net: Net, p: Pod, prev: unknown, args: string, extra = {}) {
  const config = {
    cniVersion: "1.0.0",
    name: net.name,
    type: "dnsname",
    domainName: DOMAIN,
    ...(prev === undefined ? {} : { prevResult: prev }),
    ...extra,
  };
  return runPlugin(
    sb,
    join(BIN, "dnsname"),
    cniEnv(command, { CNI_CONTAINERID: p.id, CNI_NETNS: p.path, CNI_ARGS: args }),
    config,
  );
}

function bridgeAdd(sb: Sandbox, net: Net, p: Pod) {
  const r = runPlugin(sb, join(BIN, "bridge"), cniEnv("ADD", { CNI_CONTAINERID: p.id, CNI_NETNS: p.path }), {
    cniVersion: "1.0.0",
    name: net.name,
    type: "bridge",
    bridge: net.bridge,
    isGateway: true,
    ipam: { type: "host-local", dataDir: join(sb.tmp, "ipam"), ranges: [[{ subnet: net.subnet }]] },
  });
  assert.is(r.code, 0, r.stdout);
  return r.json;
}

test("names, aliases and domains that are not DNS names are refused, and nothing is left", () => {
  const a = network(false);
  return inNets("dnsname", [a], (sb) => {
    const p = pod(sb, "web");
    const prev = bridgeAdd(sb, a, p);
    const cases: [string, string, Record<string, unknown>][] = [
      ["a newline injecting a record", "K8S_POD_NAME=web\n10.9.9.9\tevil", {}],
      ["a space", "K8S_POD_NAME=we b", {}],
      ["an empty label", "K8S_POD_NAME=web..evil", {}],
      ["a leading hyphen", "K8S_POD_NAME=-web", {}],
      ["64 characters", `K8S_POD_NAME=${"a".repeat(64)}`, {}],
      ["an alias with a tab", "K8S_POD_NAME=web", { runtimeConfig: { aliases: ["ok", "x\ty"] } }],
      [
        "an alias keyed by network with a newline",
        "K8S_POD_NAME=web",
        { runtimeConfig: { aliases: { [a.name]: ["a\nb"] } } },
      ],
      ["a domain with a newline", "K8S_POD_NAME=web", { domainName: "dns.podman\naddress=/#/1.2.3.4" }],
      ["an empty domain label", "K8S_POD_NAME=web", { domainName: "dns..podman" }],
      ["a domain with a slash", "K8S_POD_NAME=web", { domainName: "dns/podman" }],
    ];
    for (const [what, args, extra] of cases) {
      const r = dnsname(sb, "ADD", a, p, prev, args, extra);
      assert.is(r.code, 1, `${what}: ${r.stdout}`);
      assert.is(r.json?.code, 7, `${what}: ${r.stdout}`);
      assert.not.ok(existsSync(netDir(a)), `${what}: nothing written`);
    }
    // Unknown CNI_ARGS keys need IgnoreUnknown, as in the reference.
    assert.is(dnsname(sb, "ADD", a, p, prev, "K8S_POD_NAME=web;FOO=1").json?.code, 4);
    // Through the chain: the runtime's ADD fails and is rolled back, and no daemon was started.
    const netconfPath = netconf(sb, [a]);
    const bad = { ...pod(sb, "bad name"), name: "bad name" };
    const r = chain(sb, { netconfPath, client: ourCnitool() }, "add", a, bad);
    assert.is.not(r.code, 0);
    assert.not.ok(existsSync(netDir(a)));
  });
});

test("an ADD whose dnsmasq fails to start takes back its conf, lines and INPUT rules", () => {
  const a = network(false);
  return inNets("dnsname", [a], (sb) => {
    const p = pod(sb, "web");
    const prev = bridgeAdd(sb, a, p);
    const fake = join(sb.tmp, "fake-bin");
    mkdirSync(fake);
    writeFileSync(join(fake, "dnsmasq"), "#!/bin/sh\necho 'dnsmasq: failed to create listening socket' >&2\nexit 2\n", {
      mode: 0o755,
    });
    const r = runPlugin(
      sb,
      join(BIN, "dnsname"),
      {
        ...cniEnv("ADD", { CNI_CONTAINERID: p.id, CNI_NETNS: p.path, CNI_ARGS: "K8S_POD_NAME=web" }),
        PATH: `${fake}:${process.env.PATH}`,
      },
      { cniVersion: "1.0.0", name: a.name, type: "dnsname", domainName: DOMAIN, prevResult: prev },
    );
    assert.is(r.code, 1, r.stdout);
    assert.match(r.json.msg, /failed to start dnsmasq: dnsmasq: failed to create listening socket/);
    assert.not.ok(existsSync(netDir(a)));
    assert.equal(dnsInputRules(sb, a), []);
  });
});

test("DEL without prevResult removes the container's entries by its ID, even when another has its name", () => {
  const a = network(false);
  return inNets("dnsname", [a], (sb) => {
    const one = pod(sb, "web");
    const two = pod(sb, "web2");
    const prevOne = bridgeAdd(sb, a, one);
    const prevTwo = bridgeAdd(sb, a, two);
    assert.is(dnsname(sb, "ADD", a, one, prevOne, "K8S_POD_NAME=web").code, 0);
    // A second container with the same name (a recreated one): DEL of the first must not take it.
    assert.is(dnsname(sb, "ADD", a, two, prevTwo, "K8S_POD_NAME=web").code, 0);
    assert.is(dnsname(sb, "DEL", a, one, undefined, "").code, 0);
    assert.equal(dig(sb, two.ns, a.gateway, [`web.${DOMAIN}`]).answers, [ipOf(prevTwo, 4)]);
    assert.is(hostsLines(a).length, 1);
    assert.is(dnsname(sb, "CHECK", a, one, prevOne, "").code, 1, "CHECK of the deleted one fails");
    assert.is(dnsname(sb, "CHECK", a, two, prevTwo, "").code, 0);
    const pid = daemonPid(a);
    const last = dnsname(sb, "DEL", a, two, undefined, "");
    assert.is(last.code, 0, last.stdout);
    assert.not.ok(isDnsmasq(pid));
    assert.not.ok(existsSync(netDir(a)));
  });
});

test("GC (1.1.0) drops the entries of containers the runtime no longer lists; with none left, the network", () => {
  const a = network(false);
  return inNets("dnsname", [a], (sb) => {
    const one = pod(sb, "one");
    const two = pod(sb, "two");
    for (const p of [one, two])
      assert.is(dnsname(sb, "ADD", a, p, bridgeAdd(sb, a, p), `K8S_POD_NAME=${p.name}`).code, 0);
    const gc = (ids: string[]) =>
      runPlugin(
        sb,
        join(BIN, "dnsname"),
        { CNI_COMMAND: "GC", CNI_PATH: BIN },
        {
          cniVersion: "1.1.0",
          name: a.name,
          type: "dnsname",
          domainName: DOMAIN,
          "cni.dev/valid-attachments": ids.map((containerID) => ({ containerID, ifname: "eth0" })),
        },
      );
    assert.is(gc([two.id]).code, 0);
    assert.is(dig(sb, two.ns, a.gateway, [`one.${DOMAIN}`]).status, "NXDOMAIN");
    assert.is(dig(sb, two.ns, a.gateway, [`two.${DOMAIN}`]).status, "NOERROR");
    const pid = daemonPid(a);
    assert.is(gc([]).code, 0);
    assert.not.ok(isDnsmasq(pid));
    assert.not.ok(existsSync(netDir(a)));
  });
});

test("concurrent ADDs of one network: every entry, one dnsmasq; a killed dnsmasq is started again", () => {
  const a = network(false);
  return inNets("dnsname", [a], async (sb, netconfPath) => {
    const call = { netconfPath, client: ourCnitool() };
    const pods = Array.from({ length: 6 }, (_, i) => pod(sb, `c${i}`));
    const runs = await Promise.all(pods.map((p) => chainAsync(sb, call, "add", a, p)));
    for (const [i, r] of runs.entries()) assert.is(r.code, 0, `c${i}: ${r.stdout}${r.stderr}`);
    assert.is(hostsLines(a).length, 6);
    const dnsmasqs = sb.inNode(["pgrep", "-f", `--conf-file=${netDir(a)}/dnsmasq.conf`], { allowFailure: true });
    assert.is(dnsmasqs.stdout.trim().split("\n").length, 1, dnsmasqs.stdout);
    for (const p of pods) assert.is(dig(sb, pods[0]!.ns, a.gateway, [`${p.name}.${DOMAIN}`]).status, "NOERROR");

    process.kill(daemonPid(a)!, "SIGKILL");
    const late = pod(sb, "late");
    addOk(sb, call, a, late);
    assert.ok(isDnsmasq(daemonPid(a)), "restarted");
    assert.is(dig(sb, late.ns, a.gateway, [`c3.${DOMAIN}`]).status, "NOERROR");
    for (const p of [...pods, late]) assert.is(chain(sb, call, "del", a, p).code, 0);
    assert.not.ok(existsSync(netDir(a)));
  });
});

test("the last DEL racing ADDs: the lock holds across the directory's removal (ours, and the reference's DEL)", () => {
  const a = network(false);
  return inNets("dnsname", [a], async (sb, netconfPath) => {
    const ours = { netconfPath, client: ourCnitool() };
    const ref = { ...ours, cniPath: refDnsnamePath(sb) };
    for (let round = 0; round < 6; round++) {
      const first = pod(sb, `first${round}`);
      const next = [pod(sb, `next${round}a`), pod(sb, `next${round}b`)];
      addOk(sb, ours, a, first);
      // The DEL of the only container removes the directory and its lock while the ADDs wait on it.
      const del = chainAsync(sb, round % 2 === 0 ? ours : ref, "del", a, first);
      const adds = next.map((p) => chainAsync(sb, ours, "add", a, p));
      for (const r of await Promise.all([del, ...adds])) assert.is(r.code, 0, `round ${round}: ${r.stdout}${r.stderr}`);
      assert.is(hostsLines(a).length, 2, `round ${round}: ${hostsLines(a).join(" | ")}`);
      assert.ok(isDnsmasq(daemonPid(a)), `round ${round}: a dnsmasq serves the new containers`);
      for (const p of next)
        assert.is(dig(sb, next[0]!.ns, a.gateway, [`${p.name}.${DOMAIN}`]).status, "NOERROR", `round ${round}`);
      const pid = daemonPid(a);
      for (const p of next) assert.is(chain(sb, ours, "del", a, p).code, 0);
      assert.not.ok(isDnsmasq(pid));
      assert.not.ok(existsSync(netDir(a)));
    }
  });
});

test("cross-implementation: our ADD, the reference's DEL; the reference's ADD, our CHECK and DEL", () => {
  const a = network(false);
  return inNets("dnsname", [a], (sb, netconfPath) => {
    const ours = { netconfPath, client: libcniClient() };
    const ref = { ...ours, cniPath: refDnsnamePath(sb) };
    const db = pod(sb, "db");
    const web = pod(sb, "web");
    addOk(sb, ours, a, db);
    const webRes = addOk(sb, ours, a, web);
    let pid = daemonPid(a);
    assert.is(chain(sb, ref, "del", a, db).code, 0);
    assert.is(dig(sb, web.ns, a.gateway, [`db.${DOMAIN}`]).status, "NXDOMAIN");
    assert.equal(dig(sb, web.ns, a.gateway, [`web.${DOMAIN}`]).answers, [ipOf(webRes, 4)]);
    assert.is(chain(sb, ref, "del", a, web).code, 0);
    assert.ok(goneSoon(pid), "the reference's last DEL stopped our dnsmasq");
    assert.not.ok(existsSync(netDir(a)));
    assert.is(dnsInputRules(sb, a).length, 2, "the reference leaves the INPUT rules");

    const dbRes = addOk(sb, ref, a, db);
    addOk(sb, ref, a, web);
    pid = daemonPid(a);
    assert.ok(isDnsmasq(pid));
    assert.is(dnsInputRules(sb, a).length, 2, "its ADD finds its UDP rule there and adds no copy");
    assert.is(chain(sb, ours, "check", a, db).code, 0, "our CHECK of the reference's ADD");
    assert.equal(dig(sb, web.ns, a.gateway, [`db.${DOMAIN}`]).answers, [ipOf(dbRes, 4)]);
    // Our ADD into the reference's files, then our DELs.
    const third = pod(sb, "third");
    addOk(sb, ours, a, third);
    assert.is(daemonPid(a), pid, "our ADD reuses the reference's daemon");
    assert.is(dig(sb, web.ns, a.gateway, [`third.${DOMAIN}`]).status, "NOERROR");
    for (const p of [db, web]) assert.is(chain(sb, ours, "del", a, p).code, 0);
    assert.is(dig(sb, third.ns, a.gateway, [`web.${DOMAIN}`]).status, "NXDOMAIN");
    assert.is(chain(sb, ours, "del", a, third).code, 0);
    assert.not.ok(isDnsmasq(pid));
    assert.not.ok(existsSync(netDir(a)));
    assert.equal(dnsInputRules(sb, a), [], "our last DEL also takes the reference's rule");
  });
});

test("conf/docker-dns.conflist: a user-defined network whose containers find each other by name", () => {
  const file = join(import.meta.dirname, "..", "..", "conf", "docker-dns.conflist");
  const list = JSON.parse(readFileSync(file, "utf8"));
  const net: Net = { name: list.name, bridge: list.plugins[0].bridge, gateway: "10.85.0.1", subnet: "10.85.0.0/24" };
  return withSandbox("dnsname", (sb) => {
    try {
      list.plugins[0].ipam.dataDir = join(sb.tmp, "ipam");
      const call = { netconfPath: writeNetconf(sb, { "docker-dns.conflist": list }), client: libcniClient() };
      const db = pod(sb, "db");
      const web = pod(sb, "web", ["www"]);
      const dbRes = addOk(sb, call, net, db);
      addOk(sb, call, net, web);
      assert.equal(dig(sb, db.ns, net.gateway, [`www.${DOMAIN}`]).status, "NOERROR");
      assert.equal(dig(sb, web.ns, net.gateway, ["db"]).answers, [ipOf(dbRes, 4)]);
      for (const p of [db, web]) assert.is(chain(sb, call, "del", net, p).code, 0);
      assert.not.ok(existsSync(netDir(net)));
    } finally {
      stopDaemons([net]);
    }
  });
});

test.run();
