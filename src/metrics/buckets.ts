/**
 * Fixed-bucket histograms for the Prometheus exposition. They are kept beside the HDR histograms (which
 * serve /stats percentiles) because a Prometheus histogram must be cumulative and exact per bucket, while
 * the HDR ones are windowed and approximate within their precision. Values are integer microseconds.
 */

/** sgl-router's request duration buckets (seconds). */
export const DURATION_BUCKETS_S: readonly number[] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 45, 60, 90, 120, 180, 240];
/** Time to first token (seconds): prefill ranges from milliseconds to a minute for very long prompts. */
export const TTFT_BUCKETS_S: readonly number[] = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 15, 20, 30, 60];
/** Inter-token latency and time per output token (seconds): decode steps are milliseconds to a second. */
export const ITL_BUCKETS_S: readonly number[] = [0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5];

export function toMicros(boundsS: readonly number[]): Float64Array {
  return Float64Array.from(boundsS, (s) => Math.round(s * 1e6));
}

export class FixedHistogram {
  /** counts[i]: observations <= bounds[i] and > bounds[i-1]; counts[n]: above the last bound. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(readonly bounds: Float64Array) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  record(v: number): void {
    const b = this.bounds;
    const n = b.length;
    let i = 0;
    // Linear: ~20 bounds, and most observations land in the first few.
    while (i < n && v > (b[i] as number)) i++;
    this.counts[i] = (this.counts[i] as number) + 1;
    this.sum += v;
    this.count++;
  }

  /** [counts..., sum, count] for checkpoints. */
  toArray(): number[] {
    return [...this.counts, this.sum, this.count];
  }

  /** Restore from toArray() output; ignored when the shape does not match (bounds changed between versions). */
  load(a: readonly number[]): boolean {
    if (a.length !== this.counts.length + 2) return false;
    for (let i = 0; i < this.counts.length; i++) this.counts[i] = a[i] as number;
    this.sum = a[this.counts.length] as number;
    this.count = a[this.counts.length + 1] as number;
    return true;
  }
}
