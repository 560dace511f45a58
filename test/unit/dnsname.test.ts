import { test } from "uvu";
import * as assert from "uvu/assert";
import type { CniEnv } from "../../lib/cni/env.ts";
import { CniError } from "../../lib/cni/errors.ts";
import { parseConfig } from "../../plugins/dnsname/config.ts";
import { dnsmasqOptions, renderConf } from "../../plugins/dnsname/dnsmasq.ts";
import { formatLine, ownedBy, parseHosts, parseLine, renderHosts } from "../../plugins/dnsname/hosts.ts";
import { networkFiles } from "../../plugins/dnsname/store.ts";

// dnsname's pure parts: the hosts-file lines (ours with the container ID, the reference's without),
// which lines a DEL takes, the dnsmasq.conf the options render to, and the configuration's checks.

const env = (command: CniEnv["command"], args = ""): CniEnv => ({
  command,
  containerId: "c1",
  netns: "/var/run/netns/x",
  ifname: "eth0",
  args,
  path: [],
});
const conf = (extra: Record<string, unknown> = {}, args = "K8S_POD_NAME=web", command: CniEnv["command"] = "ADD") =>
  parseConfig(
    { cniVersion: "1.0.0", name: "mynet", type: "dnsname", domainName: "dns.podman", ...extra },
    env(command, args),
  );

test("our lines carry the container ID as a comment; the reference's parse without one", () => {
  const ours = formatLine("10.89.0.2", ["web", "alias"], "abc");
  assert.is(ours, "10.89.0.2\tweb\talias\t#cid=abc");
  assert.equal(parseLine(ours), { ip: "10.89.0.2", names: ["web", "alias"], containerId: "abc", raw: ours });
  assert.equal(parseLine("10.89.0.3\tdb\tdbalias"), {
    ip: "10.89.0.3",
    names: ["db", "dbalias"],
    containerId: undefined,
    raw: "10.89.0.3\tdb\tdbalias",
  });
  // A nameless container: all comment to dnsmasq, still a line of its own.
  const nameless = formatLine("10.89.0.4", [], "def");
  assert.is(nameless, "#10.89.0.4\t#cid=def");
  assert.equal(parseLine(nameless).names, []);
  assert.is(parseLine(nameless).ip, "10.89.0.4");
  const text = `${ours}\n10.89.0.3\tdb\n\n`;
  assert.is(renderHosts(parseHosts(text)), `${ours}\n10.89.0.3\tdb\n`);
});

test("DEL takes lines by container ID; reference lines by address, or by name without one", () => {
  const [ours, refDb, refWeb] = parseHosts("10.89.0.2\tweb\t#cid=abc\n10.89.0.3\tdb\n10.89.0.4\tweb\n");
  const owner = { containerId: "abc", ips: [], podName: "web" };
  assert.ok(ownedBy(ours!, owner));
  assert.not.ok(ownedBy(ours!, { ...owner, containerId: "other" }), "another container of the same name");
  assert.ok(ownedBy(refWeb!, owner), "no address known: by name, as the reference");
  assert.not.ok(ownedBy(refDb!, owner));
  assert.ok(ownedBy(refDb!, { containerId: "x", ips: ["10.89.0.3"] }));
  assert.not.ok(ownedBy(refWeb!, { containerId: "x", ips: ["10.89.0.3"], podName: "web" }), "address wins over name");
});

test("dnsmasq.conf: the reference's lines in its order", () => {
  const files = networkFiles("mynet", {});
  assert.is(files.dir, "/run/containers/cni/dnsname/mynet");
  assert.is(
    networkFiles("mynet", { XDG_RUNTIME_DIR: "/run/user/1000" }).dir,
    "/run/user/1000/containers/cni/dnsname/mynet",
  );
  const lines = renderConf(dnsmasqOptions(files, "dns.podman", "cni-podman1"))
    .split("\n")
    .filter((l) => l !== "" && !l.startsWith("#"));
  assert.equal(lines, [
    "strict-order",
    "local=/dns.podman/",
    "domain=dns.podman",
    "expand-hosts",
    "pid-file=/run/containers/cni/dnsname/mynet/pidfile",
    "except-interface=lo",
    "bind-dynamic",
    "no-hosts",
    "interface=cni-podman1",
    "addn-hosts=/run/containers/cni/dnsname/mynet/addnhosts",
  ]);
  assert.throws(() => renderConf([["domain", "x\naddress=/#/1.2.3.4"]]), /refusing dnsmasq option/);
});

test("aliases as Podman sends them (keyed by network) and as a plain list; the name from K8S_POD_NAME", () => {
  const c = conf({ runtimeConfig: { aliases: { mynet: ["db", "web", "0123456789ab"], other: ["x"] } } });
  assert.is(c.podName, "web");
  assert.equal(c.aliases, ["db", "0123456789ab"], "the name itself is not repeated");
  assert.equal(conf({ runtimeConfig: { aliases: ["a", "a", "b"] } }).aliases, ["a", "b"]);
  assert.equal(conf({}, "").aliases, []);
  assert.is(conf({}, "").podName, undefined);
  assert.is(conf({}, "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;FOO=1").podName, "p");
});

const refused = (extra: Record<string, unknown>, args = "K8S_POD_NAME=web") => {
  try {
    conf(extra, args);
  } catch (e) {
    assert.instance(e, CniError);
    return (e as CniError).code;
  }
  throw new Error(`accepted ${JSON.stringify(extra)} ${args}`);
};

test("ADD refuses names, aliases and domains that are not DNS names; DEL does not", () => {
  for (const name of ["we b", "web\n1.2.3.4\tevil", "-web", "a..b", "a.", ".a", "a#b", "_a", "x".repeat(64)])
    assert.is(refused({}, `K8S_POD_NAME=${name}`), 7, name);
  // What Podman allows in container names (`--name my_app`) resolves as it does with aardvark-dns.
  for (const name of ["my_app", "web.1", "web-", "a_b.c-d"]) assert.is(conf({}, `K8S_POD_NAME=${name}`).podName, name);
  assert.is(refused({ runtimeConfig: { aliases: ["ok", "not ok"] } }), 7);
  for (const domain of ["", "a..b", "dns.podman.", "a/b", "dns\npodman", `${"a".repeat(64)}.x`])
    assert.is(refused({ domainName: domain }), 7, domain);
  assert.is(refused({ domainName: 7 }), 7);
  assert.is(refused({}, "K8S_POD_NAME=web;FOO=1"), 4);
  // DEL of a container whose ADD was refused succeeds: the bad name just matches nothing.
  assert.is(conf({ domainName: "a..b" }, "K8S_POD_NAME=we b", "DEL").podName, undefined);
  assert.is(conf({}, "K8S_POD_NAME=web", "DEL").podName, "web");
});

test.run();
