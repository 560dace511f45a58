import { test } from "uvu";
import * as assert from "uvu/assert";
import { compareVersions } from "../../lib/cni/versions.ts";
test("orders versions numerically", () => {
  assert.ok(compareVersions("0.10.0", "0.4.0") > 0);
});
test.run();
