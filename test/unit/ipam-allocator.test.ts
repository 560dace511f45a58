import { test } from "uvu";
import * as assert from "uvu/assert";
import {
  AllocationError,
  allocateAll,
  allocateFromSet,
  candidates,
  toIPConfig,
  type AllocationStore,
} from "../../plugins/host-local/allocator.ts";
import { formatIP, parseIP, type IP } from "../../lib/ip/address.ts";
import { canonicalizeRangeSet, type RangeInput, type RangeSet } from "../../plugins/host-local/range.ts";

const ip = (s: string) => parseIP(s)!;
const set = (...ranges: RangeInput[]) => canonicalizeRangeSet(ranges);

/** An in-memory store: address name -> owner, plus last_reserved per set; counts reservation attempts. */
class MemoryStore implements AllocationStore {
  readonly taken = new Map<string, string>();
  readonly last = new Map<number, IP>();
  attempts = 0;
  snapshots = 0;
  constructor(
    public owner = "ctr\r\neth0",
    private readonly canSnapshot = true,
  ) {}
  lastReserved(i: number) {
    return this.last.get(i);
  }
  reserve(a: IP, i: number) {
    this.attempts++;
    const name = formatIP(a);
    if (this.taken.has(name)) return false;
    this.taken.set(name, this.owner);
    this.last.set(i, a);
    return true;
  }
  held() {
    return [...this.taken].filter(([, o]) => o === this.owner).map(([n]) => ip(n));
  }
  release(ips: readonly IP[]) {
    for (const a of ips) if (this.taken.get(formatIP(a)) === this.owner) this.taken.delete(formatIP(a));
  }
  get takenSnapshot() {
    if (!this.canSnapshot) return undefined;
    return () => {
      this.snapshots++;
      return new Set(this.taken.keys());
    };
  }
  as(owner: string) {
    this.owner = owner;
    return this;
  }
}

const order = (s: RangeSet, last?: string) =>
  [...candidates(s, last ? ip(last) : undefined)].map((c) => formatIP({ family: c.range.family, n: c.n }));

test("round robin: continue after last_reserved_ip, wrap, the last reserved comes last", () => {
  const s = set({ subnet: "10.40.0.0/24", rangeStart: "10.40.0.10", rangeEnd: "10.40.0.13" });
  assert.equal(order(s), ["10.40.0.10", "10.40.0.11", "10.40.0.12", "10.40.0.13"]);
  assert.equal(order(s, "10.40.0.11"), ["10.40.0.12", "10.40.0.13", "10.40.0.10", "10.40.0.11"]);
  assert.equal(order(s, "10.40.0.13"), ["10.40.0.10", "10.40.0.11", "10.40.0.12", "10.40.0.13"]);
  // A last_reserved_ip outside the set (ranges changed) restarts at the first range's start.
  assert.equal(order(s, "10.40.0.200")[0], "10.40.0.10");
});

test("default /24 hands out .2-.254; a /30 only .2 (gateway .1, broadcast excluded)", () => {
  const c24 = order(set({ subnet: "10.1.0.0/24" }));
  assert.is(c24.length, 253);
  assert.equal([c24[0], c24.at(-1)], ["10.1.0.2", "10.1.0.254"]);
  assert.equal(order(set({ subnet: "10.1.0.0/30" })), ["10.1.0.2"]);
  assert.equal(order(set({ subnet: "10.1.0.0/24" }), "10.1.0.254")[0], "10.1.0.2");
});

test("several ranges in a set are one pool: each range's end wraps to the next range's start", () => {
  const s = set(
    { subnet: "10.1.0.0/24", rangeStart: "10.1.0.10", rangeEnd: "10.1.0.11" },
    { subnet: "10.2.0.0/24", rangeStart: "10.2.0.10", rangeEnd: "10.2.0.11" },
  );
  assert.equal(order(s, "10.1.0.11"), ["10.2.0.10", "10.2.0.11", "10.1.0.10", "10.1.0.11"]);
  assert.equal(order(s, "10.2.0.11"), ["10.1.0.10", "10.1.0.11", "10.2.0.10", "10.2.0.11"]);
});

test("every address of a set comes up exactly once, from any starting point", () => {
  const s = set(
    { subnet: "10.1.0.0/28", rangeStart: "10.1.0.1", rangeEnd: "10.1.0.6", gateway: "10.1.0.3" },
    { subnet: "10.9.0.0/29" },
  );
  const all = order(s);
  assert.equal(new Set(all).size, all.length);
  assert.ok(!all.includes("10.1.0.3"), "the gateway is never a candidate");
  for (const last of [...all, "10.1.0.3"]) {
    const o = order(s, last);
    assert.equal([...o].sort(), [...all].sort(), `from ${last}`);
    if (last !== "10.1.0.3") assert.is(o.at(-1), last);
  }
});

test("IPv6 /64: the default range ends at the all-ones address", () => {
  const s = set({ subnet: "fd00::/64" });
  const first = (last: string, n: number) => {
    const out: string[] = [];
    for (const c of candidates(s, ip(last))) if (out.push(formatIP({ family: 6, n: c.n })) === n) break;
    return out;
  };
  // fd00::1 is the gateway, so after the all-ones address comes fd00::2.
  assert.equal(first("fd00::ffff:ffff:ffff:fffe", 2), ["fd00::ffff:ffff:ffff:ffff", "fd00::2"]);
});

test("dynamic allocation takes the next free address and records it", () => {
  const s = set({ subnet: "10.40.0.0/24", rangeStart: "10.40.0.10", rangeEnd: "10.40.0.12" });
  const st = new MemoryStore();
  st.taken.set("10.40.0.11", "other");
  st.last.set(0, ip("10.40.0.10"));
  const a = allocateFromSet(s, 0, undefined, "ctr", st);
  assert.equal(toIPConfig(a), { address: "10.40.0.12/24", gateway: "10.40.0.1" });
  assert.is(formatIP(st.last.get(0)!), "10.40.0.12");
});

test("exhaustion names the range set", () => {
  const s = set({ subnet: "10.30.0.0/24", rangeStart: "10.30.0.1", rangeEnd: "10.30.0.3" });
  const st = new MemoryStore();
  allocateFromSet(s, 0, undefined, "a", st.as("a\r\neth0"));
  allocateFromSet(s, 0, undefined, "b", st.as("b\r\neth0"));
  assert.throws(
    () => allocateFromSet(s, 0, undefined, "c", st.as("c\r\neth0")),
    (e: Error) => e.message === "no IP addresses available in range set: 10.30.0.1-10.30.0.3",
  );
});

test("the same attachment asking again is refused, per set", () => {
  const s = set({ subnet: "10.40.0.0/24" });
  const st = new MemoryStore();
  allocateFromSet(s, 0, undefined, "ctr", st);
  assert.throws(
    () => allocateFromSet(s, 0, undefined, "ctr", st),
    (e: Error) => e.message === "10.40.0.2 has been allocated to ctr, duplicate allocation is not allowed",
  );
  // Another set is another pool: the attachment gets one address there too.
  assert.is(toIPConfig(allocateFromSet(set({ subnet: "fd00::/64" }), 1, undefined, "ctr", st)).address, "fd00::2/64");
});

test("requested addresses: taken, gateway, success", () => {
  const s = set({ subnet: "10.40.0.0/24", rangeStart: "10.40.0.10", rangeEnd: "10.40.0.20" });
  const st = new MemoryStore();
  st.taken.set("10.40.0.15", "other");
  assert.throws(
    () => allocateFromSet(s, 0, ip("10.40.0.15"), "ctr", st),
    (e: Error) => e.message === "requested IP address 10.40.0.15 is not available in range set 10.40.0.10-10.40.0.20",
  );
  const g = set({ subnet: "10.40.0.0/24", gateway: "10.40.0.9" });
  assert.throws(
    () => allocateFromSet(g, 0, ip("10.40.0.9"), "ctr", st),
    (e: Error) => e.message === "requested ip 10.40.0.9 is subnet's gateway",
  );
  assert.is(toIPConfig(allocateFromSet(s, 0, ip("10.40.0.16"), "ctr", st)).address, "10.40.0.16/24");
  assert.is(formatIP(st.last.get(0)!), "10.40.0.16", "requested addresses move last_reserved_ip too");
});

test("allocateAll: one address per set; a later failure releases what this call reserved", () => {
  const sets = [
    set({ subnet: "10.1.0.0/24" }),
    set({ subnet: "fd00::/64", rangeStart: "fd00::5", rangeEnd: "fd00::5" }),
  ];
  const st = new MemoryStore();
  st.taken.set("fd00::5", "other");
  assert.throws(
    () => allocateAll(sets, [], "ctr", st),
    (e: unknown) => e instanceof AllocationError && e.setIndex === 1,
  );
  assert.equal([...st.taken.keys()], ["fd00::5"], "the v4 address was rolled back");
});

test("allocateAll: requested addresses go to the set that contains them; leftovers fail the call", () => {
  const sets = [set({ subnet: "10.1.0.0/24" }), set({ subnet: "fd00::/64" })];
  const st = new MemoryStore();
  const got = allocateAll(sets, [ip("fd00::99"), ip("10.1.0.77")], "ctr", st).map(toIPConfig);
  assert.equal(
    got.map((g) => g.address),
    ["10.1.0.77/24", "fd00::99/64"],
  );
  const st2 = new MemoryStore();
  // Inside the subnet but outside [rangeStart, rangeEnd]: no set takes it.
  const narrow = [set({ subnet: "10.1.0.0/24", rangeStart: "10.1.0.10", rangeEnd: "10.1.0.20" })];
  assert.throws(
    () => allocateAll(narrow, [ip("10.1.0.30")], "ctr", st2),
    (e: Error) => e.message === "failed to allocate all requested IPs: 10.1.0.30",
  );
  assert.is(st2.taken.size, 0, "the dynamic address of set 0 was rolled back");
});

test("a crowded range is skipped in memory after a run of failed reservations", () => {
  const s = set({ subnet: "10.1.0.0/16" });
  const st = new MemoryStore();
  for (let i = 2; i < 5002; i++) st.taken.set(formatIP({ family: 4, n: ip("10.1.0.0").n + BigInt(i) }), "other");
  const a = allocateFromSet(s, 0, undefined, "ctr", st);
  assert.is(formatIP(a.ip), "10.1.19.138"); // 10.1.0.0 + 5002
  assert.ok(st.attempts <= 33, `${st.attempts} reservation attempts`);
  assert.is(st.snapshots, 1);
  // Without a snapshot, the store is probed address by address and the outcome is the same.
  const plain = new MemoryStore("ctr\r\neth0", false);
  for (const [k, v] of st.taken) if (v === "other") plain.taken.set(k, v);
  assert.is(formatIP(allocateFromSet(s, 0, undefined, "ctr", plain).ip), "10.1.19.138");
  assert.is(plain.attempts, 5001);
});

test.run();
