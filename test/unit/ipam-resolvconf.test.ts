import { test } from "uvu";
import * as assert from "uvu/assert";
import { parseResolvConf } from "../../plugins/host-local/resolvconf.ts";

test("resolv.conf: nameservers, last domain, search and options; comments and short lines skipped", () => {
  const text = [
    "# comment",
    "; another",
    "nameserver 10.0.0.53",
    "  nameserver   fd00::53  ",
    "nameserver",
    "domain a.example",
    "domain b.example",
    "search x.example y.example",
    "options ndots:5 edns0",
    "sortlist 10.0.0.0",
    "",
  ].join("\n");
  assert.equal(parseResolvConf(text), {
    nameservers: ["10.0.0.53", "fd00::53"],
    domain: "b.example",
    search: ["x.example", "y.example"],
    options: ["ndots:5", "edns0"],
  });
  assert.equal(parseResolvConf(""), {});
});

test.run();
