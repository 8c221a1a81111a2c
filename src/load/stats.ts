/**
 * The one way the load generator computes distribution figures, used by summary.json, the console table,
 * per-GPU metrics, compare and sweep alike (so a figure recomputed from requests.csv agrees with it):
 *
 * - percentile: linear interpolation between closest ranks, numpy's default (`np.percentile(x, p)`,
 *   method "linear"): rank = p/100 * (n - 1); value = x[floor] + (x[ceil] - x[floor]) * frac(rank).
 *   SGLang's bench_serving uses exactly this.
 * - std: population standard deviation (numpy's default ddof = 0), as bench_serving reports it.
 * - Empty input gives NaN (written as null in JSON).
 */

/** numpy-style linear-interpolation percentile of an ascending array; p in [0, 100]. */
export function percentileSorted(sorted: ArrayLike<number>, p: number): number {
  const n = sorted.length;
  if (n === 0) return Number.NaN;
  if (n === 1) return sorted[0] as number;
  const rank = (Math.min(100, Math.max(0, p)) / 100) * (n - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  const a = sorted[lo] as number;
  if (hi === lo) return a;
  const b = sorted[hi] as number;
  return a + (b - a) * (rank - lo);
}

/** An ascending copy (typed-array numeric sort, no comparator allocation). */
export function sortedCopy(values: ArrayLike<number>): Float64Array {
  const out = Float64Array.from(values as ArrayLike<number>);
  out.sort();
  return out;
}

export interface Distribution {
  count: number;
  mean: number;
  median: number;
  std: number;
  min: number;
  max: number;
  p50: number;
  p90: number;
  p95: number;
  p99: number;
}

/** Mean and population std of an array (two passes for accuracy). */
export function meanStd(values: ArrayLike<number>): { mean: number; std: number } {
  const n = values.length;
  if (n === 0) return { mean: Number.NaN, std: Number.NaN };
  let sum = 0;
  for (let i = 0; i < n; i++) sum += values[i] as number;
  const mean = sum / n;
  let sq = 0;
  for (let i = 0; i < n; i++) {
    const d = (values[i] as number) - mean;
    sq += d * d;
  }
  return { mean, std: Math.sqrt(sq / n) };
}

/** Every figure of a distribution from an ascending array. */
export function describeSorted(sorted: ArrayLike<number>): Distribution {
  const n = sorted.length;
  const { mean, std } = meanStd(sorted);
  return {
    count: n,
    mean,
    median: percentileSorted(sorted, 50),
    std,
    min: n === 0 ? Number.NaN : (sorted[0] as number),
    max: n === 0 ? Number.NaN : (sorted[n - 1] as number),
    p50: percentileSorted(sorted, 50),
    p90: percentileSorted(sorted, 90),
    p95: percentileSorted(sorted, 95),
    p99: percentileSorted(sorted, 99),
  };
}

export function describe(values: ArrayLike<number>): Distribution {
  return describeSorted(sortedCopy(values));
}

/** Welford's running mean/variance: exact count, mean, std, min, max of a stream without keeping it. */
export class RunningStats {
  count = 0;
  mean = 0;
  private m2 = 0;
  min = Number.POSITIVE_INFINITY;
  max = Number.NEGATIVE_INFINITY;

  add(x: number): void {
    this.count++;
    const d = x - this.mean;
    this.mean += d / this.count;
    this.m2 += d * (x - this.mean);
    if (x < this.min) this.min = x;
    if (x > this.max) this.max = x;
  }

  /** Population standard deviation. */
  get std(): number {
    return this.count === 0 ? Number.NaN : Math.sqrt(this.m2 / this.count);
  }
}

/** A growable Float64Array (amortised doubling); `view()` is the filled part. */
export class GrowableFloat64 {
  private buf: Float64Array;
  length = 0;

  constructor(initial = 1024) {
    this.buf = new Float64Array(Math.max(16, initial));
  }

  push(x: number): void {
    if (this.length === this.buf.length) {
      const next = new Float64Array(this.buf.length * 2);
      next.set(this.buf);
      this.buf = next;
    }
    this.buf[this.length++] = x;
  }

  view(): Float64Array {
    return this.buf.subarray(0, this.length);
  }

  get bytes(): number {
    return this.buf.byteLength;
  }
}

/** Rounds a millisecond figure to the microsecond: what requests.csv prints and what the summary uses. */
export function roundMs(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
