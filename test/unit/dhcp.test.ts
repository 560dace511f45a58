import { test } from "uvu";
import * as assert from "uvu/assert";
import { clientIdOf } from "../../plugins/dhcp/client.ts";
import { clientOptions, parseDhcpConfig } from "../../plugins/dhcp/config.ts";
import { parseDuration, parseFlags } from "../../plugins/dhcp/daemon.ts";
import { classlessRoutes, decode, encode, MessageType, maskBits, Opt, typeOf, u32 } from "../../plugins/dhcp/packet.ts";

// The dhcp plugin's pure parts: DHCP messages, option lists, the client ID and the daemon's flags.

const MAC = Uint8Array.from([2, 0, 0, 0, 0, 1]);

/** A server's reply to `req`, built by turning our request into a BOOTREPLY with these options. */
function reply(xid: number, options: number[]): Uint8Array {
  const b = encode({ type: MessageType.OFFER, xid, mac: MAC, broadcast: true, options: [] });
  b[0] = 2;
  b.set([192, 0, 2, 100], 16);
  b.set([...options, Opt.END], 240);
  return b;
}

test("a DISCOVER has the BOOTP header, the broadcast flag and its options in order", () => {
  const m = encode({
    type: MessageType.DISCOVER,
    xid: 0x01020304,
    mac: MAC,
    broadcast: true,
    options: [[Opt.PARAM_REQUEST, Uint8Array.from([1, 3])]],
  });
  assert.ok(m.length >= 300, "BOOTP minimum size");
  assert.equal([...m.subarray(0, 3)], [1, 1, 6]);
  assert.equal([...m.subarray(4, 8)], [1, 2, 3, 4]);
  assert.equal([...m.subarray(10, 12)], [0x80, 0]);
  assert.equal([...m.subarray(28, 34)], [...MAC]);
  assert.equal([...m.subarray(236, 240)], [99, 130, 83, 99]);
  assert.equal([...m.subarray(240, 248)], [53, 1, 1, 55, 2, 1, 3, 255]);
});

test("a reply decodes: type, times, mask, classless routes; truncated options are refused", () => {
  const r = decode(
    reply(
      7,
      [53, 1, 5, 51, 4, 0, 0, 0, 120, 1, 4, 255, 255, 240, 0, 121, 13, 24, 10, 1, 2, 192, 0, 2, 1, 0, 192, 0, 2, 254],
    ),
  )!;
  assert.is(r.xid, 7);
  assert.is(typeOf(r), MessageType.ACK);
  assert.is(u32(r, Opt.LEASE_TIME), 120);
  assert.is(maskBits(r.options.get(Opt.SUBNET_MASK)), 20);
  assert.equal(classlessRoutes(r), [
    { dst: "10.1.2.0/24", gw: "192.0.2.1" },
    { dst: "0.0.0.0/0", gw: "192.0.2.254" },
  ]);
  assert.is(decode(reply(7, [53, 9, 5]).subarray(0, 244)), undefined);
  assert.is(decode(new Uint8Array(100)), undefined);
});

test("the client ID is 0x00 and containerID/network/ifname, at most 255 bytes", () => {
  assert.equal([...clientIdOf("c", "n", "eth0")], [0, ...new TextEncoder().encode("c/n/eth0")]);
  assert.is(clientIdOf("x".repeat(400), "n", "eth0").length, 255);
});

test("request and provide: names or numbers, skipDefault, fromArg from CNI_ARGS", () => {
  const c = parseDhcpConfig({
    cniVersion: "1.0.0",
    name: "n",
    ipam: {
      type: "dhcp",
      request: [{ option: "42", skipDefault: true }, { option: "routers" }],
      provide: [
        { option: "host-name", fromArg: "K8S_POD_NAME" },
        { option: 60, value: "v" },
        { option: "user-class", fromArg: "ABSENT" },
      ],
    },
  });
  const o = clientOptions(c, "IgnoreUnknown=1;K8S_POD_NAME=web-0");
  assert.equal(o.request, [42, 3]);
  assert.equal(
    o.provide.map(([code, v]) => [code, new TextDecoder().decode(v)]),
    [
      [12, "web-0"],
      [60, "v"],
    ],
  );
  assert.throws(() => clientOptions({ ...c, ipam: { ...c.ipam, request: [{ option: "no-such" }] } }, ""), /no-such/);
});

test("the daemon's flags and Go durations", () => {
  assert.is(parseDuration("1m2s"), 62_000);
  assert.is(parseDuration("500ms"), 500);
  assert.is(parseDuration("10"), undefined);
  const f = parseFlags(["-socketpath", "/tmp/s.sock", "--timeout=3s", "-broadcast", "-resendmax", "2s"]);
  assert.is(f.socketPath, "/tmp/s.sock");
  assert.equal(f.timing, { timeoutMs: 3000, resendMaxMs: 2000 });
  assert.throws(() => parseFlags(["-pidfile", "rel"]), /absolute/);
  assert.throws(() => parseFlags(["-nope", "1"]), /not defined/);
});

test.run();
