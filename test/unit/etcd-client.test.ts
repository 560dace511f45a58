import { test } from "uvu";
import * as assert from "uvu/assert";
import { b64, decodeKv, decodeWatchMessage, prefixEnd, splitMessages } from "../../lib/etcd/client.ts";

const unb64 = (s: string) => Buffer.from(s, "base64");

test("prefixEnd is the prefix with its last byte plus one", () => {
  assert.is(unb64(prefixEnd("/coreos.com/network/subnets/")).toString(), "/coreos.com/network/subnets0");
  assert.equal([...unb64(prefixEnd("a"))], [0x62]);
  // bytes, not characters: "é" is c3 a9 in UTF-8
  assert.equal([...unb64(prefixEnd("é"))], [0xc3, 0xaa]);
});

test("decodeKv reads base64 and fills proto3's omitted zero values", () => {
  const kv = decodeKv({ key: b64("/k"), value: b64('{"a":1}'), create_revision: "5", mod_revision: "7" });
  assert.equal(kv, { key: "/k", value: '{"a":1}', createRevision: "5", modRevision: "7", lease: "0" });
  assert.is(decodeKv({ key: b64("/k") }).value, "");
});

test("a watch event without a type is a PUT; DELETE is named", () => {
  const d = decodeWatchMessage({
    result: {
      header: { revision: "9" },
      events: [{ kv: { key: b64("/a"), value: b64("x") } }, { type: "DELETE", kv: { key: b64("/b") } }],
    },
  });
  assert.equal(
    d.events.map((e) => [e.type, e.kv.key]),
    [
      ["PUT", "/a"],
      ["DELETE", "/b"],
    ],
  );
  assert.is(d.ended, undefined);
});

test("created, compacted, canceled and error messages", () => {
  assert.is(decodeWatchMessage({ result: { created: true } }).created, true);
  assert.match(decodeWatchMessage({ result: { compact_revision: "12" } }).ended ?? "", /compacted \(at 12\)/);
  assert.match(decodeWatchMessage({ result: { canceled: true, cancel_reason: "x" } }).ended ?? "", /canceled: x/);
  assert.match(decodeWatchMessage({ error: { message: "boom" } }).ended ?? "", /boom/);
});

test("splitMessages keeps an unfinished tail for the next chunk", () => {
  const a = splitMessages('{"result":{"created":true}}\n{"result":');
  assert.equal(a.messages, [{ result: { created: true } }]);
  assert.is(a.rest, '{"result":');
  const b = splitMessages(`${a.rest}{"events":[]}}\n`);
  assert.equal(b.messages, [{ result: { events: [] } }]);
  assert.is(b.rest, "");
});

test.run();
