/**
 * The fixed-bucket histogram families of the Prometheus exposition (request duration per route; TTFT,
 * ITL and TPOT per worker): their buckets in microseconds and their rendering. The stats store keeps the
 * histograms (stats-store.ts); prometheus.ts renders zeros from here when the stats actor is off.
 */
import { DURATION_BUCKETS_S, FixedHistogram, ITL_BUCKETS_S, TTFT_BUCKETS_S, toMicros } from './buckets.js';
import { labels, PromWriter } from './prom-text.js';
import { ROUTE_LABELS } from './route-labels.js';

export const DURATION_US = toMicros(DURATION_BUCKETS_S);
export const TTFT_US = toMicros(TTFT_BUCKETS_S);
export const ITL_US = toMicros(ITL_BUCKETS_S);

/** One worker's fixed histograms (absent: rendered as zeros). */
export interface HistogramSource {
  readonly url: string;
  readonly nodeId: number;
  readonly ttft: FixedHistogram | undefined;
  readonly itl: FixedHistogram | undefined;
  readonly tpot: FixedHistogram | undefined;
}

export const HISTOGRAM_HELP = {
  duration: 'Request duration in seconds by route (router side: arrival to last byte)',
  ttft: 'Time to first token in seconds (request sent to first non-empty content chunk; streams)',
  itl: 'Inter-token latency in seconds (every gap between consecutive content chunks, pooled)',
  tpot: 'Time per output token in seconds ((E2E - TTFT) / (output_tokens - 1), per request)',
} as const;

/**
 * The histogram families, from whatever fixed histograms exist (absent ones render as zeros, so the
 * families and their series exist before the first request and when the stats actor is off).
 */
export function renderHistogramFamilies(durations: readonly (FixedHistogram | undefined)[], workers: readonly HistogramSource[]): string {
  const w = new PromWriter();
  const zeroDuration = new FixedHistogram(DURATION_US);
  w.family('sgl_router_request_duration_seconds', 'histogram', HISTOGRAM_HELP.duration);
  ROUTE_LABELS.forEach((_r, i) => {
    const h = durations[i] ?? zeroDuration;
    w.histogram('sgl_router_request_duration_seconds', labels(['route', ROUTE_LABELS[i] as string]), h.bounds, h.counts, h.sum, 1e-6);
  });
  const zeroTtft = new FixedHistogram(TTFT_US);
  const zeroItl = new FixedHistogram(ITL_US);
  const families: [string, string, 'ttft' | 'itl' | 'tpot', FixedHistogram][] = [
    ['sgl_router_ttft_seconds', HISTOGRAM_HELP.ttft, 'ttft', zeroTtft],
    ['sgl_router_inter_token_latency_seconds', HISTOGRAM_HELP.itl, 'itl', zeroItl],
    ['sgl_router_tpot_seconds', HISTOGRAM_HELP.tpot, 'tpot', zeroItl],
  ];
  for (const [name, help, key, zero] of families) {
    w.family(name, 'histogram', help);
    for (const src of workers) {
      const h = src[key] ?? zero;
      w.histogram(name, labels(['worker', src.url], ['gpu', String(src.nodeId)]), h.bounds, h.counts, h.sum, 1e-6);
    }
  }
  return w.text();
}
