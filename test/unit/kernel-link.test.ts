import { test } from "uvu";
import * as assert from "uvu/assert";
import { KernelError } from "../../lib/kernel/errors.ts";
import { runAsync } from "../../lib/kernel/exec.ts";
import { lineOf } from "../../lib/kernel/link.ts";

// The typed link operations render to the iproute2 lines the plugins used to write by hand.

test("link ops render to ip batch lines", () => {
  assert.equal(lineOf({ op: "link-set", dev: "lo", up: true }), ["link", "set", "lo", "up"]);
  assert.equal(lineOf({ op: "link-set", dev: "veth1", master: "cni0", mtu: 1400, up: false }), [
    "link",
    "set",
    "veth1",
    "mtu",
    "1400",
    "master",
    "cni0",
    "down",
  ]);
  assert.equal(lineOf({ op: "link-set", dev: "veth1", master: null }), ["link", "set", "veth1", "nomaster"]);
  assert.equal(lineOf({ op: "link-del", dev: "veth1" }), ["link", "del", "veth1"]);
  assert.equal(lineOf({ op: "addr", verb: "add", dev: "eth0", cidr: "10.0.0.2/24", flags: ["noprefixroute"] }), [
    "addr",
    "add",
    "10.0.0.2/24",
    "noprefixroute",
    "dev",
    "eth0",
  ]);
  assert.equal(lineOf({ op: "route", verb: "append", dst: "0.0.0.0/0", via: "10.0.0.1", dev: "eth0", metric: 5 }), [
    "route",
    "append",
    "0.0.0.0/0",
    "via",
    "10.0.0.1",
    "dev",
    "eth0",
    "metric",
    "5",
  ]);
  assert.equal(
    lineOf({
      op: "neigh",
      verb: "replace",
      ip: "10.1.0.0",
      lladdr: "aa:bb:cc:dd:ee:ff",
      permanent: true,
      dev: "flannel.1",
    }),
    ["neigh", "replace", "10.1.0.0", "lladdr", "aa:bb:cc:dd:ee:ff", "nud", "permanent", "dev", "flannel.1"],
  );
  assert.equal(lineOf({ op: "show", dev: "eth0" }), ["addr", "show", "dev", "eth0"]);
});

test("runAsync: output and status without blocking; a failure is a KernelError unless allowed", async () => {
  const ok = await runAsync(["cat"], { input: "hello\n" });
  assert.equal(ok, { status: 0, stdout: "hello\n", stderr: "" });
  const failed = await runAsync(["sh", "-c", "echo no >&2; exit 3"], { allowFailure: true });
  assert.is(failed.status, 3);
  assert.is(failed.stderr, "no\n");
  const err = await runAsync(["sh", "-c", "exit 4"]).catch((e: unknown) => e);
  assert.ok(err instanceof KernelError && err.fault === "failed" && err.detail.status === 4, String(err));
  const missing = await runAsync(["/nonexistent/tool"]).catch((e: unknown) => e);
  assert.ok(missing instanceof KernelError, String(missing));
});

test.run();
