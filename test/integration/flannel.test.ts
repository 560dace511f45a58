import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BIN, type Sandbox, cniEnv, sandboxed } from "../helpers/sandbox.ts";
import { runPlugin } from "../helpers/plugin-run.ts";
import { ping } from "../helpers/bridge-net.ts";

const inSandbox = sandboxed(test, "flannel");

// The flannel meta plugin over a subnet.env as the node agent writes it: the bridge + host-local
// network it delegates to (in-process), DEL from the saved delegate config when subnet.env is gone,
// and the errors a node without an agent gets.

const FLANNEL = join(BIN, "flannel");
const SUBNET_ENV = "FLANNEL_NETWORK=10.70.0.0/16\nFLANNEL_SUBNET=10.70.3.1/24\nFLANNEL_MTU=1400\nFLANNEL_IPMASQ=true\n";

function setUp(sb: Sandbox) {
  const subnetFile = join(sb.tmp, "subnet.env");
  writeFileSync(subnetFile, SUBNET_ENV);
  const dataDir = join(sb.tmp, "flannel");
  const config = {
    cniVersion: "1.0.0",
    name: "cbr0",
    type: "flannel",
    subnetFile,
    dataDir,
    delegate: { bridge: "cni0", hairpinMode: true, isDefaultGateway: true },
    ipam: { dataDir: join(sb.tmp, "ipam") },
  };
  return { subnetFile, dataDir, config };
}

const call = (sb: Sandbox, command: string, netns: string, config: unknown, id = "ctr1") =>
  runPlugin(sb, FLANNEL, cniEnv(command, { CNI_NETNS: netns, CNI_CONTAINERID: id }), config);

const json = (sb: Sandbox, ns: string | undefined, argv: string[]) =>
  JSON.parse((ns ? sb.inNs(ns, argv) : sb.inNode(argv)).stdout);

inSandbox(
  "ADD delegates to bridge + host-local over the node's subnet, with the agent's MTU and a route to the cluster network",
  (sb) => {
    const { dataDir, config, subnetFile } = setUp(sb);
    const ctr = sb.addContainer();
    const add = call(sb, "ADD", ctr.path, config);
    assert.is(add.code, 0, add.stdout + add.stderr);
    const result = add.json;
    assert.equal(
      result.ips.map((ip: { address: string; gateway: string }) => [ip.address, ip.gateway]),
      [["10.70.3.2/24", "10.70.3.1"]],
    );
    // The bridge is the gateway of the node's subnet, at the agent's MTU.
    const [br] = json(sb, undefined, ["ip", "-j", "addr", "show", "cni0"]);
    assert.is(br.mtu, 1400);
    assert.ok(br.addr_info.some((a: { local: string }) => a.local === "10.70.3.1"));
    const [eth0] = json(sb, ctr.name, ["ip", "-j", "link", "show", "eth0"]);
    assert.is(eth0.mtu, 1400);
    // isDefaultGateway, and the cluster network's route from subnet.env.
    const routes = json(sb, ctr.name, ["ip", "-j", "route", "show"]).map((r: { dst: string; gateway?: string }) =>
      `${r.dst} ${r.gateway ?? ""}`.trim(),
    );
    assert.ok(routes.includes("default 10.70.3.1"), routes.join("; "));
    assert.ok(routes.includes("10.70.0.0/16 10.70.3.1"), routes.join("; "));
    // The agent masquerades (FLANNEL_IPMASQ=true), so the delegate does not.
    assert.not.match(sb.inNode(["iptables-save", "-t", "nat"]).stdout, /10\.70\.3\.2/);
    assert.ok(ping(sb, ctr.name, "10.70.3.1"), "the container reaches its gateway");
    // The delegate config is saved before the ADD, as upstream saves it.
    const saved = JSON.parse(readFileSync(join(dataDir, "ctr1"), "utf8"));
    assert.is(saved.type, "bridge");
    assert.is(saved.ipMasq, false);
    assert.equal(saved.ipam.ranges, [[{ subnet: "10.70.3.0/24" }]]);

    assert.is(call(sb, "CHECK", ctr.path, { ...config, prevResult: result }).code, 0, "CHECK asks the delegate");

    // The agent went away (or rewrote subnet.env): DEL still undoes exactly the ADD.
    rmSync(subnetFile);
    const del = call(sb, "DEL", ctr.path, { ...config, prevResult: result });
    assert.is(del.code, 0, del.stdout + del.stderr);
    assert.not.ok(existsSync(join(dataDir, "ctr1")), "saved config removed");
    assert.equal(
      json(sb, ctr.name, ["ip", "-j", "link", "show"]).map((l: { ifname: string }) => l.ifname),
      ["lo"],
    );
    assert.equal(
      readdirSync(join(sb.tmp, "ipam", "cbr0")).filter((f) => f.startsWith("10.")),
      [],
      "reservation released",
    );
    assert.is(call(sb, "DEL", ctr.path, config).code, 0, "a second DEL finds nothing to do");
  },
);

inSandbox("no subnet.env: ADD fails naming the file and the agent, leaves nothing; STATUS says not available", (sb) => {
  const { subnetFile, dataDir, config } = setUp(sb);
  rmSync(subnetFile);
  const ctr = sb.addContainer();
  const add = call(sb, "ADD", ctr.path, config);
  assert.is(add.json?.code, 5);
  assert.ok(add.json.msg.includes(subnetFile) && /agent/.test(add.json.msg), add.json.msg);
  assert.not.ok(existsSync(join(dataDir, "ctr1")));
  assert.not.ok(sb.inNode(["ip", "-o", "link", "show"]).stdout.includes("cni0"), "no bridge");
  const status = runPlugin(sb, FLANNEL, { CNI_COMMAND: "STATUS", CNI_PATH: BIN }, { ...config, cniVersion: "1.1.0" });
  assert.is(status.json?.code, 50);
  writeFileSync(subnetFile, SUBNET_ENV);
  assert.is(
    runPlugin(sb, FLANNEL, { CNI_COMMAND: "STATUS", CNI_PATH: BIN }, { ...config, cniVersion: "1.1.0" }).code,
    0,
  );
  // An incomplete one names what is missing.
  writeFileSync(subnetFile, "FLANNEL_NETWORK=10.70.0.0/16\n");
  const partial = call(sb, "ADD", ctr.path, config);
  assert.match(partial.json?.msg ?? "", /missing FLANNEL_SUBNET, FLANNEL_MTU, FLANNEL_IPMASQ/);
});

inSandbox("a failed delegate ADD removes the saved config; the delegate's own keys are refused", (sb) => {
  const { dataDir, config } = setUp(sb);
  const ctr = sb.addContainer();
  const bad = call(sb, "ADD", ctr.path, { ...config, delegate: { bridge: "cni0", mtu: "big" } });
  assert.is(bad.json?.code, 7);
  assert.not.ok(existsSync(join(dataDir, "ctr1")));
  for (const key of ["name", "ipam"]) {
    const r = call(sb, "ADD", ctr.path, { ...config, delegate: { [key]: key === "ipam" ? {} : "x" } });
    assert.is(r.json?.code, 7, key);
    assert.match(r.json.msg, new RegExp(`must not contain "${key}"`));
  }
});

test.run();
