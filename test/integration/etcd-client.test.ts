import { test } from "uvu";
import * as assert from "uvu/assert";
import { join } from "node:path";
import { sandboxed } from "../helpers/sandbox.ts";
import { startEtcd, waitGone } from "../helpers/etcd.ts";

/** The etcd v3 JSON-gateway client against a real etcd 3.4 in a sandbox namespace. */
const it = sandboxed(test, "etcdcl");
const ROOT = join(import.meta.dirname, "..", "..");

it("range, put with a lease, create-if-absent, keepalive, revoke and a streamed watch", async (sb) => {
  const etcd = await startEtcd(sb, sb.node);
  try {
    const out = sb.inNode([
      join(ROOT, "node_modules", ".bin", "tsx"),
      join(ROOT, "test", "helpers", "etcd-probe.ts"),
      etcd.url,
    ]);
    const r = JSON.parse(out.stdout);
    assert.is(r.beforeCount, 0);
    assert.ok(Number(r.lease.id) !== 0 && r.lease.ttl >= 30, JSON.stringify(r.lease));
    assert.is(r.first, true, "the first create-if-absent wins");
    assert.is(r.second, false, "the second finds the key taken");
    assert.is(r.created1.value, '{"PublicIP":"1"}');
    assert.is(r.created1.lease, r.lease.id, "the key is attached to the lease");
    assert.ok(r.keptAlive > 0);
    assert.is(r.renewed.createRevision, r.created1.createRevision, "a re-put keeps the create revision");
    assert.ok(Number(r.renewed.modRevision) > Number(r.created1.modRevision));
    assert.equal(r.listed, ["/probe/subnets/10.1.1.0-24", "/probe/subnets/10.1.2.0-24"]);
    assert.equal(r.events, [
      ["PUT", "/probe/subnets/10.1.1.0-24", '{"PublicIP":"1"}'],
      ["PUT", "/probe/subnets/10.1.2.0-24", "reservation"],
      ["PUT", "/probe/subnets/10.1.1.0-24", '{"PublicIP":"1","renewed":true}'],
    ]);
    assert.is(r.watchResult, "", "the watch ended by its abort");
    assert.equal(
      r.afterRevoke,
      ["/probe/subnets/10.1.2.0-24"],
      "revoking the lease removed its key, not the reservation",
    );
    assert.is(r.ttlGone, -1);
    assert.is(r.deleted, 1);
    assert.match(r.missing, /etcd at http:\/\/127\.0\.0\.1:1 unreachable/);
    assert.is(r.endpoint, etcd.url, "the client moved to the endpoint that answered");
  } finally {
    etcd.stop();
    await waitGone(etcd.pid);
  }
});

test.run();
