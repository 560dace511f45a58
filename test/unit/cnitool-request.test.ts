import { test } from "uvu";
import * as assert from "uvu/assert";
import { networkConfFromBytes } from "../../lib/libcni/conf.ts";
import { goMarshal } from "../../lib/libcni/gojson.ts";
import { buildOneConfig, validateAttachment } from "../../lib/libcni/libcni.ts";
import { containerIdFor, parseCapArgs, cniArgsPairs, runtimeConfFromEnv } from "../../lib/libcni/runtime.ts";
import { CniError } from "../../lib/cni/errors.ts";

// What each plugin receives: the request built from the list entry (libcni buildOneConfig), and the
// runtime arguments cnitool reads from its environment.

const list = networkConfFromBytes(
  Buffer.from(
    JSON.stringify({
      cniVersion: "1.0.0",
      name: "net",
      plugins: [
        {
          type: "portmap",
          name: "own-name",
          cniVersion: "0.3.1",
          capabilities: { portMappings: true, bandwidth: false, mac: true },
        },
        { type: "plain", runtimeConfig: { kept: 1 } },
        { type: "replaced", capabilities: { ips: true }, runtimeConfig: { old: 1 } },
      ],
    }),
  ),
);
const [portmap, plain, replaced] = list.plugins as [any, any, any];
const caps = {
  capabilityArgs: {
    portMappings: [{ hostPort: 80, containerPort: 8080, protocol: "tcp" }],
    bandwidth: { ingressRate: 1 },
    ips: ["10.0.0.5/24"],
  },
};

test("name and cniVersion come from the list, overriding the entry's own", () => {
  const req = JSON.parse(buildOneConfig(list, portmap, undefined));
  assert.is(req.name, "net");
  assert.is(req.cniVersion, "1.0.0");
  assert.is(req.type, "portmap");
  assert.equal(
    req.capabilities,
    { portMappings: true, bandwidth: false, mac: true },
    "capabilities stay, as libcni leaves them",
  );
  assert.not.ok("prevResult" in req);
  assert.not.ok("runtimeConfig" in req);
});

test("runtimeConfig holds only capabilities declared true and supplied by the runtime", () => {
  const req = JSON.parse(buildOneConfig(list, portmap, undefined, caps));
  assert.equal(req.runtimeConfig, { portMappings: caps.capabilityArgs.portMappings });
});

test("no matching capability leaves the entry's runtimeConfig alone; a match replaces it", () => {
  assert.equal(JSON.parse(buildOneConfig(list, plain, undefined, caps)).runtimeConfig, { kept: 1 });
  assert.equal(JSON.parse(buildOneConfig(list, replaced, undefined, caps)).runtimeConfig, { ips: ["10.0.0.5/24"] });
  assert.equal(JSON.parse(buildOneConfig(list, replaced, undefined, {})).runtimeConfig, { old: 1 });
});

test("a capability supplied as null is still passed on", () => {
  assert.equal(JSON.parse(buildOneConfig(list, portmap, undefined, { capabilityArgs: { mac: null } })).runtimeConfig, {
    mac: null,
  });
});

test("prevResult is injected when there is one", () => {
  const prev = { cniVersion: "1.0.0", interfaces: [{ name: "lo" }] };
  assert.equal(JSON.parse(buildOneConfig(list, plain, prev)).prevResult, prev);
});

test("requests are serialised as Go serialises a map: compact, keys sorted at every level", () => {
  const req = buildOneConfig(
    list,
    replaced,
    { cniVersion: "1.0.0", ips: [{ interface: 0, address: "10.0.0.5/24" }] },
    caps,
  );
  assert.is(
    req,
    '{"capabilities":{"ips":true},"cniVersion":"1.0.0","name":"net","prevResult":{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.5/24","interface":0}]},"runtimeConfig":{"ips":["10.0.0.5/24"]},"type":"replaced"}',
  );
});

test("goMarshal sorts integer-like keys as strings and escapes HTML characters like Go", () => {
  assert.is(
    goMarshal({ b: 1, "10": 2, "9": 3, a: [{ z: null, y: "<a&b>" }] }),
    '{"10":2,"9":3,"a":[{"y":"\\u003ca\\u0026b\\u003e","z":null}],"b":1}',
  );
});

test("the container ID is derived from the absolute netns path as upstream cnitool does", () => {
  // Expected values from: printf %s PATH | sha512sum | cut -c1-20
  assert.is(containerIdFor("/var/run/netns/demo"), "cnitool-81e3a71f81544407538e");
  assert.is(containerIdFor("/proc/1234/ns/net"), "cnitool-e20e8dcf819b8b3d953a");
  const rt = runtimeConfFromEnv("/var/run/netns/x/../demo/", {});
  assert.is(rt.netns, "/var/run/netns/demo");
  assert.is(rt.containerId, "cnitool-81e3a71f81544407538e");
  assert.is(rt.ifName, "eth0");
});

test("CNI_CONTAINERID and CNI_IFNAME override the defaults", () => {
  const rt = runtimeConfFromEnv("/var/run/netns/demo", { CNI_CONTAINERID: "abc", CNI_IFNAME: "net1" });
  assert.is(rt.containerId, "abc");
  assert.is(rt.ifName, "net1");
});

test("CNI_ARGS become ordered pairs; empty pieces are skipped; a piece without KEY= is refused", () => {
  assert.equal(cniArgsPairs("IgnoreUnknown=1;K8S_POD_NAME=a=b;;X="), [
    ["IgnoreUnknown", "1"],
    ["K8S_POD_NAME", "a=b"],
    ["X", ""],
  ]);
  assert.equal(cniArgsPairs(""), []);
  assert.throws(() => cniArgsPairs("novalue"), /CNI_ARGS: "novalue" is not of the form KEY=VALUE/);
  assert.throws(() => cniArgsPairs("=v"), /not of the form KEY=VALUE/);
});

test("CAP_ARGS must be a JSON object", () => {
  assert.equal(parseCapArgs('{"mac":"c2:11:22:33:44:55"}'), { mac: "c2:11:22:33:44:55" });
  assert.is(parseCapArgs(""), undefined);
  assert.is(parseCapArgs("null"), undefined);
  assert.throws(() => parseCapArgs("{"), /CAP_ARGS is not a JSON object/);
  assert.throws(() => parseCapArgs("[1]"), /CAP_ARGS is not a JSON object: got an array/);
  assert.throws(() => parseCapArgs('"s"'), /CAP_ARGS is not a JSON object: got a string/);
});

test("container ID, network name and ifname are validated with the skel's rules and codes", () => {
  const ok = { containerId: "cnitool-abc", ifName: "eth0" };
  validateAttachment({ name: "net" }, ok);
  const code = (fn: () => void) => {
    try {
      fn();
    } catch (e) {
      return e instanceof CniError ? e.code : -1;
    }
    return 0;
  };
  assert.is(
    code(() => validateAttachment({ name: "net" }, { ...ok, containerId: "../x" })),
    4,
  );
  assert.is(
    code(() => validateAttachment({ name: "a/b" }, ok)),
    7,
  );
  assert.is(
    code(() => validateAttachment({ name: "a..b" }, ok)),
    7,
  );
  assert.is(
    code(() => validateAttachment({ name: "net" }, { ...ok, ifName: "0123456789abcdef" })),
    4,
  );
  assert.is(
    code(() => validateAttachment({ name: "net" }, { ...ok, ifName: "a b" })),
    4,
  );
});

test.run();
