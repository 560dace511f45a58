import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { sandboxed } from "../helpers/sandbox.ts";
import { addEnv, runNamed } from "../helpers/hostile.ts";

const inSandbox = sandboxed(test, "reliab");

/**
 * An ADD fails after the plugin did its work when the result cannot be written in the config's
 * version (a pre-0.3.0 result needs an IP address). The runtime sees a failure and will not send
 * DEL for it, so the failed ADD must undo itself. (Found by the binary fuzzer: tuning changed the
 * interface and kept its saved originals.)
 */

inSandbox(
  "tuning ADD whose result the old config version cannot express: fails and leaves the interface and dataDir as they were",
  (sb) => {
    const ctr = sb.addContainer();
    sb.inNs(ctr.name, ["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"]);
    const link = () =>
      JSON.parse(sb.inNs(ctr.name, ["ip", "-j", "link", "show", "eth0"]).stdout)[0] as { address: string; mtu: number };
    const before = link();
    const dataDir = join(sb.tmp, "tuning");
    for (const cniVersion of ["0.1.0", "0.2.0"]) {
      const config = {
        cniVersion,
        name: "rbnet",
        type: "tuning",
        dataDir,
        mtu: 1300,
        mac: "0a:58:0a:3f:00:29",
        prevResult: { cniVersion: "1.0.0", interfaces: [{ name: "eth0", sandbox: ctr.path }] },
      };
      const r = runNamed(sb, "tuning", addEnv(ctr.path, { CNI_CONTAINERID: "rb1" }), config);
      assert.is(r.code, 1, r.stdout);
      assert.match(r.json.msg, /no valid IP addresses/);
      assert.equal(link().address, before.address, `${cniVersion}: MAC restored`);
      assert.is(link().mtu, before.mtu, `${cniVersion}: MTU restored`);
      assert.not.ok(existsSync(join(dataDir, "rb1_eth0.json")), `${cniVersion}: no saved originals left`);
    }
  },
);

/** The attachment lock files and DEL notices the bridge keeps (test/private-run.sh gives a private /run). */
const attachmentFiles = () =>
  existsSync("/run/tscni/attachments") ? readdirSync("/run/tscni/attachments").sort() : [];

inSandbox(
  "bridge ADD that fails after taking its attachment lock: the lock file goes with the rolled-back attachment",
  (sb) => {
    const ctr = sb.addContainer();
    const before = attachmentFiles();
    const config = {
      cniVersion: "1.0.0",
      name: "rbnet",
      type: "bridge",
      bridge: "rbbr0",
      ipam: { type: "host-local", subnet: "10.63.0.0/24", dataDir: join(sb.tmp, "ipam"), ranges: "not a list" },
    };
    const r = runNamed(sb, "bridge", addEnv(ctr.path, { CNI_CONTAINERID: "rb2" }), config);
    assert.is(r.code, 1, r.stdout);
    assert.equal(attachmentFiles(), before);
  },
);

test.run();
