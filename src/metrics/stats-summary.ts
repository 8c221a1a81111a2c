/**
 * The figures of a stats snapshot computed from merged histograms and counters: latency summaries
 * (count, mean, p50/p90/p99, max in ms), request counts, and the balance of requests across members.
 */
import type { Histogram } from 'hdr-histogram-js';
import { Metric, type BalanceFigure, type LatencySet, type LatencySummary, type RequestCounts } from './stats-protocol.js';
import { C } from './stats-series.js';

/** cv at or below this counts as balanced. */
export const BALANCED_CV = 0.2;

export function round(v: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

const EMPTY_SUMMARY: LatencySummary = Object.freeze({ count: 0, mean: null, p50: null, p90: null, p99: null, max: null });

function summarize(h: Histogram | undefined): LatencySummary {
  if (h === undefined || h.totalCount === 0) return EMPTY_SUMMARY;
  const ms = (us: number): number => round(us / 1000, 3);
  return {
    count: h.totalCount,
    mean: ms(h.mean),
    p50: ms(h.getValueAtPercentile(50)),
    p90: ms(h.getValueAtPercentile(90)),
    p99: ms(h.getValueAtPercentile(99)),
    // The top of the max's bucket, like the percentiles (stable across merges and checkpoints).
    max: ms(h.getValueAtPercentile(100)),
  };
}

export function latencySet(accs: readonly Histogram[] | null): LatencySet {
  const pick = (m: Metric): Histogram | undefined => (accs === null ? undefined : accs[m]);
  return {
    ttft_ms: summarize(pick(Metric.Ttft)),
    itl_ms: summarize(pick(Metric.Itl)),
    tpot_ms: summarize(pick(Metric.Tpot)),
    e2e_ms: summarize(pick(Metric.E2e)),
    queue_ms: summarize(pick(Metric.Queue)),
    server_queue_ms: summarize(pick(Metric.ServerQueue)),
  };
}

export function requestCounts(c: Float64Array): RequestCounts {
  return { total: c[C.Total] as number, completed: c[C.Completed] as number, failed: c[C.Failed] as number, aborted: c[C.Aborted] as number };
}

/** Balance of request counts across members: coefficient of variation and max/min. */
export function balanceOf(counts: readonly number[]): BalanceFigure {
  const n = counts.length;
  if (n === 0) return { cv: null, max_min_ratio: null, max_requests: 0, min_requests: 0, score: null, balanced: null, members: 0 };
  let sum = 0;
  let max = -Infinity;
  let min = Infinity;
  for (const c of counts) {
    sum += c;
    if (c > max) max = c;
    if (c < min) min = c;
  }
  if (sum === 0) return { cv: null, max_min_ratio: null, max_requests: 0, min_requests: 0, score: null, balanced: null, members: n };
  const mean = sum / n;
  let sq = 0;
  for (const c of counts) sq += (c - mean) * (c - mean);
  const cv = Math.sqrt(sq / n) / mean;
  return {
    cv: round(cv, 4),
    max_min_ratio: min > 0 ? round(max / min, 4) : null,
    max_requests: max,
    min_requests: min,
    score: round(Math.max(0, 1 - cv), 4),
    balanced: cv <= BALANCED_CV,
    members: n,
  };
}
