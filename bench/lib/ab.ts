import type { Side } from "./side.ts";

/** A value per side of the comparison. */
export interface Pair<T> {
  ours: T;
  reference: T;
}

export type Sides = Pair<Side>;

export const pairOf = <T>(make: () => T): Pair<T> => ({ ours: make(), reference: make() });

/**
 * Runs `step` for both sides, `iterations` times, alternating which side goes first (ABBA...), so
 * a slow drift of the machine's load lands on both sides alike.
 */
export async function alternate(
  sides: Sides,
  iterations: number,
  step: (side: Side, key: keyof Pair<Side>, i: number) => Promise<void>,
) {
  for (let i = 0; i < iterations; i++) {
    const order: (keyof Pair<Side>)[] = i % 2 === 0 ? ["ours", "reference"] : ["reference", "ours"];
    for (const key of order) await step(sides[key], key, i);
  }
}

/** Runs `fn` over `items` with at most `limit` in flight. */
export async function pool<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  });
  await Promise.all(lanes);
  return out;
}
