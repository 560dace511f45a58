import { formatIP, type IP } from "../../lib/ip/address.ts";
import { rangeFor, rangeSetText, type Range, type RangeSet } from "./range.ts";

/**
 * What the allocator needs from a store, for one attachment (container ID + interface). The disk
 * store implements it under its lock; tests use an in-memory one.
 */
export interface AllocationStore {
  /** The address recorded in last_reserved_ip.<set>, if it parses. */
  lastReserved(setIndex: number): IP | undefined;
  /** Reserves ip for this attachment if nobody holds it; records it as the set's last reservation. */
  reserve(ip: IP, setIndex: number): boolean;
  /** Addresses held by this attachment (or, for very old stores, by its container ID alone). */
  held(): IP[];
  /** Releases addresses this attachment holds (rollback of a failed ADD). */
  release(ips: readonly IP[]): void;
  /**
   * Names of the addresses taken right now, if the store can list them in one go. Used only after a
   * run of failed reservations, so a crowded range is skipped in memory instead of probed one by one.
   */
  takenSnapshot?(): ReadonlySet<string>;
}

export interface Allocation {
  setIndex: number;
  ip: IP;
  range: Range;
}

/** An allocation failure; the caller reports it as "failed to allocate for range <i>: <message>". */
export class AllocationError extends Error {
  constructor(
    message: string,
    readonly setIndex: number | undefined,
  ) {
    super(message);
  }
}

const PROBES_BEFORE_SNAPSHOT = 32;

/**
 * The reference's candidate order: start after the set's last reservation (or at the first range's
 * start), advance through each range to its end, wrap to the next range, stop when back at the first
 * candidate. Gateways are skipped. Every address of the set comes up once; the last reserved, last.
 */
export function* candidates(set: RangeSet, last: IP | undefined): Generator<{ range: Range; n: bigint }> {
  let idx = 0;
  let cur: bigint | undefined;
  if (last) {
    const r = rangeFor(set, last);
    const i = r ? set.indexOf(r) : -1;
    if (i >= 0) {
      idx = i;
      cur = last.n;
    }
  }
  let first: bigint | undefined;
  for (;;) {
    let r = set[idx]!;
    if (cur === undefined) {
      cur = r.start;
      first = cur;
    } else {
      if (cur === r.end) {
        idx = (idx + 1) % set.length;
        r = set[idx]!;
        cur = r.start;
      } else cur++;
      if (first === undefined) first = cur;
      else if (cur === first) return;
    }
    if (cur !== r.gateway) yield { range: r, n: cur };
  }
}

/** One address from one range set: the requested one if given, else the next free one in order. */
export function allocateFromSet(
  set: RangeSet,
  setIndex: number,
  requested: IP | undefined,
  containerId: string,
  store: AllocationStore,
): Allocation {
  if (requested) {
    const range = rangeFor(set, requested);
    if (!range) throw new AllocationError(`${formatIP(requested)} not in range set ${rangeSetText(set)}`, setIndex);
    if (requested.n === range.gateway)
      throw new AllocationError(`requested ip ${formatIP(requested)} is subnet's gateway`, setIndex);
    if (!store.reserve(requested, setIndex)) {
      throw new AllocationError(
        `requested IP address ${formatIP(requested)} is not available in range set ${rangeSetText(set)}`,
        setIndex,
      );
    }
    return { setIndex, ip: requested, range };
  }

  // One address per set per attachment, as the spec says: asking again is an error, not a second address.
  for (const held of store.held()) {
    if (rangeFor(set, held)) {
      throw new AllocationError(
        `${formatIP(held)} has been allocated to ${containerId}, duplicate allocation is not allowed`,
        setIndex,
      );
    }
  }
  const family = set[0]!.family;
  let failures = 0;
  let taken: ReadonlySet<string> | undefined;
  for (const { range, n } of candidates(set, store.lastReserved(setIndex))) {
    const ip: IP = { family, n };
    if (taken?.has(formatIP(ip))) continue;
    if (store.reserve(ip, setIndex)) return { setIndex, ip, range };
    if (++failures === PROBES_BEFORE_SNAPSHOT) taken = store.takenSnapshot?.();
  }
  throw new AllocationError(`no IP addresses available in range set: ${rangeSetText(set)}`, setIndex);
}

/**
 * An ADD's allocation: one address per range set, each set taking the first requested address it
 * contains. Any failure, or a requested address no set took, releases what this call reserved.
 */
export function allocateAll(
  sets: readonly RangeSet[],
  requested: readonly IP[],
  containerId: string,
  store: AllocationStore,
): Allocation[] {
  const { perSet, leftover } = assignRequested(sets, requested);
  const done: Allocation[] = [];
  try {
    sets.forEach((set, i) => {
      done.push(allocateFromSet(set, i, perSet[i], containerId, store));
    });
    if (leftover.length > 0)
      throw new AllocationError(`failed to allocate all requested IPs: ${leftover.map(formatIP).join(" ")}`, undefined);
    return done;
  } catch (e) {
    if (done.length > 0) store.release(done.map((a) => a.ip));
    throw e;
  }
}

/**
 * Which requested address each set takes (the first it contains) and which no set takes. Pure, so a
 * request that cannot be met is refused before the store is touched.
 */
export function assignRequested(
  sets: readonly RangeSet[],
  requested: readonly IP[],
): { perSet: (IP | undefined)[]; leftover: IP[] } {
  const pending = [...requested];
  const perSet = sets.map((set) => {
    const k = pending.findIndex((ip) => rangeFor(set, ip) !== undefined);
    return k >= 0 ? pending.splice(k, 1)[0] : undefined;
  });
  return { perSet, leftover: pending };
}

/** The result entry for an allocation: the address with its range's prefix, and the range's gateway. */
export function toIPConfig(a: Allocation): { address: string; gateway: string } {
  return {
    address: `${formatIP(a.ip)}/${a.range.prefix}`,
    gateway: formatIP({ family: a.range.family, n: a.range.gateway }),
  };
}
