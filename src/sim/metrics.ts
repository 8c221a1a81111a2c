/**
 * The simulated server's metrics: cheap fixed-bucket histograms and sliding windows, kept by the
 * engine on its hot path, and the Prometheus text exposition with SGLang's metric names.
 */

/** Bucket bounds in seconds: SGLang's coarse buckets plus fine ones, so scaled-down time still resolves. */
export const LATENCY_BUCKETS: readonly number[] = [
  0.001, 0.0025, 0.005, 0.0075, 0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 1.5, 2, 3,
  4, 5, 7.5, 10, 15, 20, 30, 60, 120, 300,
];

export class Histogram {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(readonly bounds: readonly number[] = LATENCY_BUCKETS) {
    this.counts = new Float64Array(bounds.length);
  }

  observe(value: number): void {
    this.sum += value;
    this.count++;
    const b = this.bounds;
    // Linear scan from the low end: most observations (ITL) land in the first buckets.
    for (let i = 0; i < b.length; i++) {
      if (value <= (b[i] as number)) {
        this.counts[i]!++;
        return;
      }
    }
  }
}

/** Events per second over a sliding window of fixed buckets (real time). */
export class RateWindow {
  private readonly buckets: Float64Array;
  private readonly stamps: Float64Array;

  constructor(
    private readonly bucketMs = 500,
    size = 10,
  ) {
    this.buckets = new Float64Array(size);
    this.stamps = new Float64Array(size).fill(-1);
  }

  add(amount: number, nowMs: number): void {
    const slot = Math.floor(nowMs / this.bucketMs);
    const i = slot % this.buckets.length;
    if (this.stamps[i] !== slot) {
      this.stamps[i] = slot;
      this.buckets[i] = 0;
    }
    this.buckets[i]! += amount;
  }

  /** Average rate over the window ending now (per second). */
  rate(nowMs: number): number {
    const slot = Math.floor(nowMs / this.bucketMs);
    const oldest = slot - this.buckets.length + 1;
    let total = 0;
    for (let i = 0; i < this.buckets.length; i++) {
      const s = this.stamps[i] as number;
      if (s >= oldest && s <= slot) total += this.buckets[i] as number;
    }
    return total / ((this.buckets.length * this.bucketMs) / 1000);
  }
}

/** Cache hit rate over the last N admissions (SGLang reports it over recent prefill batches). */
export class HitRateWindow {
  private readonly cached: Float64Array;
  private readonly total: Float64Array;
  private next = 0;
  private sumCached = 0;
  private sumTotal = 0;

  constructor(size = 256) {
    this.cached = new Float64Array(size);
    this.total = new Float64Array(size);
  }

  add(cached: number, total: number): void {
    const i = this.next;
    this.sumCached += cached - (this.cached[i] as number);
    this.sumTotal += total - (this.total[i] as number);
    this.cached[i] = cached;
    this.total[i] = total;
    this.next = (i + 1) % this.cached.length;
  }

  rate(): number {
    return this.sumTotal > 0 ? this.sumCached / this.sumTotal : 0;
  }
}

/** What the exposition needs from an engine at scrape time. */
export interface MetricsSnapshot {
  numRunningReqs: number;
  numQueueReqs: number;
  numUsedTokens: number;
  tokenUsage: number;
  cacheHitRate: number;
  genThroughput: number;
  promptTokensTotal: number;
  generationTokensTotal: number;
  cachedTokensTotal: number;
  numRequestsTotal: number;
  numAbortedRequestsTotal: number;
  ttft: Histogram;
  itl: Histogram;
  e2e: Histogram;
  queueTime: Histogram;
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function num(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Number.POSITIVE_INFINITY) return '+Inf';
  return String(v);
}

/** Prometheus text format 0.0.4 with SGLang's names (`sglang:` prefix, model_name label). */
export function renderPrometheus(s: MetricsSnapshot, modelName: string): string {
  const label = `model_name="${escapeLabel(modelName)}"`;
  const out: string[] = [];
  const gauge = (name: string, help: string, value: number): void => {
    out.push(`# HELP sglang:${name} ${help}`, `# TYPE sglang:${name} gauge`, `sglang:${name}{${label}} ${num(value)}`);
  };
  const counter = (name: string, help: string, value: number): void => {
    out.push(`# HELP sglang:${name}_total ${help}`, `# TYPE sglang:${name}_total counter`, `sglang:${name}_total{${label}} ${num(value)}`);
  };
  const histogram = (name: string, help: string, h: Histogram): void => {
    out.push(`# HELP sglang:${name} ${help}`, `# TYPE sglang:${name} histogram`);
    let cumulative = 0;
    for (let i = 0; i < h.bounds.length; i++) {
      cumulative += h.counts[i] as number;
      out.push(`sglang:${name}_bucket{${label},le="${num(h.bounds[i] as number)}"} ${cumulative}`);
    }
    out.push(`sglang:${name}_bucket{${label},le="+Inf"} ${h.count}`);
    out.push(`sglang:${name}_sum{${label}} ${num(h.sum)}`, `sglang:${name}_count{${label}} ${h.count}`);
  };
  gauge('num_running_reqs', 'The number of running requests.', s.numRunningReqs);
  gauge('num_queue_reqs', 'The number of requests in the waiting queue.', s.numQueueReqs);
  gauge('num_used_tokens', 'The number of used KV cache tokens (excluding evictable cache).', s.numUsedTokens);
  gauge('token_usage', 'The token usage (used / max_total_num_tokens).', s.tokenUsage);
  gauge('cache_hit_rate', 'The prefix cache hit rate over recent admissions.', s.cacheHitRate);
  gauge('gen_throughput', 'The generation throughput (token/s).', s.genThroughput);
  counter('prompt_tokens', 'Number of prefill tokens processed.', s.promptTokensTotal);
  counter('generation_tokens', 'Number of generation tokens processed.', s.generationTokensTotal);
  counter('cached_tokens', 'Number of cached prompt tokens.', s.cachedTokensTotal);
  counter('num_requests', 'Number of requests processed.', s.numRequestsTotal);
  counter('num_aborted_requests', 'Number of requests aborted.', s.numAbortedRequestsTotal);
  histogram('time_to_first_token_seconds', 'Histogram of time to first token in seconds.', s.ttft);
  histogram('inter_token_latency_seconds', 'Histogram of inter-token latency in seconds.', s.itl);
  histogram('e2e_request_latency_seconds', 'Histogram of End-to-end request latency in seconds.', s.e2e);
  histogram('queue_time_seconds', 'Histogram of time spent in the waiting queue in seconds.', s.queueTime);
  return out.join('\n') + '\n';
}
