import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { lineOf, type IpLink } from "../../lib/kernel/link.ts";
import { findHostDevice, parseHwaddr } from "../../plugins/host-device/lookup.ts";

// host-device's lookup as the reference's getLink, on a sysfs tree of the test's own (the
// integration tests' sandbox sees the machine's sysfs, not its node namespace's).

const link = (ifname: string, address: string): IpLink => ({ ifindex: 1, ifname, flags: [], mtu: 1500, address });
const LINKS = [
  link("eth0", "0a:00:00:00:00:01"),
  link("ens5", "0a:00:00:00:00:02"),
  link("virt0", "0a:00:00:00:00:03"),
];
const none = { device: "", hwaddr: "", kernelpath: "", pciBusID: "" };

function sysTree() {
  const root = mkdtempSync(join(tmpdir(), "hostdev-sys-"));
  mkdirSync(join(root, "devices/pci0000:00/0000:00:19.0/net/ens5"), { recursive: true });
  mkdirSync(join(root, "bus/pci/devices/0000:00:19.0/net/ens5"), { recursive: true });
  mkdirSync(join(root, "bus/pci/devices/0000:00:1a.0/virtio3/net/virt0"), { recursive: true });
  mkdirSync(join(root, "bus/pci/devices/0000:00:1b.0/net"), { recursive: true });
  return root;
}

const msg = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    return (e as Error).message;
  }
  return "no error";
};

test("device and hwaddr (any case, colons or hyphens) pick the node's link", () => {
  assert.is(findHostDevice({ ...none, device: "eth0" }, LINKS).ifname, "eth0");
  assert.is(findHostDevice({ ...none, hwaddr: "0A-00-00-00-00-02" }, LINKS).ifname, "ens5");
  assert.is(parseHwaddr("0a00.0000.0003"), "0a:00:00:00:00:03");
  assert.is(
    msg(() => findHostDevice({ ...none, device: "nope" }, LINKS)),
    "failed to find host device: Link not found",
  );
  assert.match(
    msg(() => findHostDevice({ ...none, hwaddr: "zz" }, LINKS)),
    'failed to parse MAC address "zz"',
  );
});

test("kernelpath: the first interface under <path>/net; only /sys/devices paths", () => {
  const root = sysTree();
  try {
    const kp = { ...none, kernelpath: "/sys/devices/pci0000:00/0000:00:19.0" };
    assert.is(findHostDevice(kp, LINKS, root).ifname, "ens5");
    for (const bad of ["sys/devices/x", "/sys/class/net/eth0", "/sys/devices/../../etc"])
      assert.match(
        msg(() => findHostDevice({ ...none, kernelpath: bad }, LINKS, root)),
        "must be absolute and begin with /sys/devices/",
      );
    assert.match(
      msg(() => findHostDevice({ ...none, kernelpath: "/sys/devices/none" }, LINKS, root)),
      "failed to find network devices at",
    );
  } finally {
    rmSync(root, { recursive: true });
  }
});

test("pciBusID (and runtimeConfig deviceID, which overrides it): the device's net directory or its virtio child's", () => {
  const root = sysTree();
  try {
    assert.is(findHostDevice({ ...none, pciBusID: "0000:00:19.0" }, LINKS, root).ifname, "ens5");
    assert.is(findHostDevice({ ...none, pciBusID: "0000:00:1a.0" }, LINKS, root).ifname, "virt0");
    assert.match(
      msg(() => findHostDevice({ ...none, pciBusID: "0000:00:1b.0" }, LINKS, root)),
      "failed to find network devices at",
    );
    assert.match(
      msg(() => findHostDevice({ ...none, pciBusID: "0000:00:1c.0" }, LINKS, root)),
      "no net directory under pci device 0000:00:1c.0",
    );
    assert.match(
      msg(() => findHostDevice({ ...none, pciBusID: "../../x" }, LINKS, root)),
      "no net directory under pci device",
    );
  } finally {
    rmSync(root, { recursive: true });
  }
});

test("the alias as an ip line: set, or cleared with ip's empty word", () => {
  assert.is(lineOf({ op: "link-set", dev: "eth0", alias: "ens5" }).join(" "), "link set eth0 alias ens5");
  assert.is(lineOf({ op: "link-set", dev: "ens5", alias: null }).join(" "), 'link set ens5 alias ""');
});

test.run();
