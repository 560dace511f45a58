/** Summary statistics for benchmark samples (milliseconds, bytes, anything numeric). */
export interface Summary {
  n: number;
  median: number;
  min: number;
  max: number;
}

export function summarize(samples: readonly number[]): Summary {
  if (samples.length === 0) return { n: 0, median: NaN, min: NaN, max: NaN };
  const s = [...samples].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { n: s.length, median, min: s[0]!, max: s[s.length - 1]! };
}

export const ratio = (ours: number, ref: number) => (ref > 0 && Number.isFinite(ours) ? ours / ref : NaN);

/** "12.3" / "123" / "1234": three significant figures at most, no trailing noise. */
export function fmt(x: number, digits = 1): string {
  if (!Number.isFinite(x)) return "–";
  if (Math.abs(x) >= 100) return x.toFixed(0);
  return x.toFixed(digits);
}

export const fmtRatio = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : "–");

/** "median [min–max]" in ms. */
export const fmtSummary = (s: Summary) => (s.n === 0 ? "–" : `${fmt(s.median)} [${fmt(s.min)}–${fmt(s.max)}]`);
