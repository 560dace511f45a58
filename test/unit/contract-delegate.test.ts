import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { delegate, findInPath } from "../../lib/cni/delegate.ts";
import type { Request } from "../../lib/cni/skel.ts";
import { CniError } from "../../lib/cni/errors.ts";

// Finding a delegated (IPAM) plugin in CNI_PATH, with the reference's rules and messages.

const dir = mkdtempSync(join(tmpdir(), "tscni-unit-delegate-"));
const a = join(dir, "a");
const b = join(dir, "b");
mkdirSync(a);
mkdirSync(b);
writeFileSync(join(b, "host-local"), "");
writeFileSync(join(a, "host-local"), "");
mkdirSync(join(a, "static")); // a directory of that name is not a plugin
writeFileSync(join(b, "static"), "");

function fails(fn: () => unknown, code: number, msg: string) {
  try {
    fn();
  } catch (e) {
    assert.instance(e, CniError);
    assert.is((e as CniError).code, code);
    assert.is((e as CniError).message, msg);
    return;
  }
  assert.unreachable(`expected "${msg}"`);
}

test("the first directory of CNI_PATH holding a regular file of that name wins", () => {
  assert.is(findInPath("host-local", [a, b]), join(a, "host-local"));
  assert.is(findInPath("host-local", [b, a]), join(b, "host-local"));
  assert.is(findInPath("static", [a, b]), join(b, "static"));
});

test("lookup errors carry the reference's messages", () => {
  fails(() => findInPath("", [a]), 7, "no plugin name provided");
  fails(() => findInPath("../host-local", [a]), 7, "invalid plugin name: ../host-local");
  fails(() => findInPath("x/y", [a]), 7, "invalid plugin name: x/y");
  fails(() => findInPath("host-local", []), 4, "no paths provided");
  fails(() => findInPath("dhcp", [a, b]), 7, `failed to find plugin "dhcp" in path [${a} ${b}]`);
});

test("a plugin named as its own IPAM is refused (it would run itself forever); its DEL has nothing to do", async () => {
  const req = { config: { type: "ptp", ipam: { type: "ptp" } }, path: [a] } as unknown as Request<unknown>;
  for (const command of ["ADD", "CHECK"] as const) {
    try {
      await delegate(command, "ptp", req);
      assert.unreachable("expected a refusal");
    } catch (e) {
      assert.instance(e, CniError);
      assert.equal([(e as CniError).code, (e as CniError).message], [7, 'ipam type "ptp" is the plugin itself']);
    }
  }
  assert.is(await delegate("DEL", "ptp", req), undefined);
});

test.after(() => rmSync(dir, { recursive: true, force: true }));

test.run();
