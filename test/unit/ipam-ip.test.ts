import { test } from "uvu";
import * as assert from "uvu/assert";
import { formatIP, parseCIDR, parseIP } from "../../lib/ip/address.ts";

// Expected values produced by Go's net.ParseIP / IP.String / net.ParseCIDR (the reference's rules).
const GO_PARSE_IP: [string, [number, string] | null][] = [
  ["10.0.0.1", [4, "10.0.0.1"]],
  ["010.0.0.1", null],
  ["1.2.3", null],
  ["256.0.0.1", null],
  ["::ffff:10.0.0.1", [4, "10.0.0.1"]],
  ["FD00::1", [6, "fd00::1"]],
  ["1:2:3:4:5:6:7:8", [6, "1:2:3:4:5:6:7:8"]],
  ["1:2:3:4:5:6:7::8", null],
  ["1:2:3:4:5:6:7::", [6, "1:2:3:4:5:6:7:0"]],
  ["::", [6, "::"]],
  ["1::2::3", null],
  ["::1.2.3.4", [6, "::102:304"]],
  ["fe80::1%eth0", null],
  ["12345::1", null],
  ["2001:db8:0:0:1:0:0:1", [6, "2001:db8::1:0:0:1"]],
  ["2001:db8:0:1:1:1:1:1", [6, "2001:db8:0:1:1:1:1:1"]],
  ["1:0:0:0:0:0:0:0", [6, "1::"]],
  ["0:0:0:0:0:0:0:1", [6, "::1"]],
  ["1:0:0:2:0:0:0:3", [6, "1:0:0:2::3"]],
  ["1:0:2:0:0:3:0:0", [6, "1:0:2::3:0:0"]],
  [" 10.0.0.1", null],
  ["10.0.0.1\n", null],
  ["0.0.0.0", [4, "0.0.0.0"]],
  ["::ffff:a00:1", [4, "10.0.0.1"]],
  ["1.2.3.4.5", null],
  ["", null],
  ["1:2:3:4:5:6:1.2.3.4", [6, "1:2:3:4:5:6:102:304"]],
  ["1:2:3:4:5:6:7:1.2.3.4", null],
];

test("parseIP and formatIP follow Go's net package", () => {
  for (const [input, want] of GO_PARSE_IP) {
    const ip = parseIP(input);
    const got = ip ? [ip.family, formatIP(ip)] : null;
    assert.equal(got, want, JSON.stringify(input));
  }
});

test("parseCIDR keeps the written address and rejects what Go rejects", () => {
  const c = parseCIDR("10.0.0.5/24")!;
  assert.equal([formatIP(c.ip), c.prefix, c.maskBits], ["10.0.0.5", 24, 32]);
  assert.equal(parseCIDR("10.0.0.0/08")?.prefix, 8);
  const mapped = parseCIDR("::ffff:10.0.0.0/104")!;
  assert.equal([formatIP(mapped.ip), mapped.prefix, mapped.maskBits], ["10.0.0.0", 104, 128]);
  for (const bad of ["10.0.0.0/33", "10.0.0.0", "10.0.0.0/", "fd00::/129", "x/8", "10.0.0.0/-1"])
    assert.is(parseCIDR(bad), undefined, bad);
});

test.run();
