/**
 * summary.json: SGLang bench_serving's field names (completed, total_input_tokens, request_throughput,
 * mean/median/std/p99 of ttft_ms, tpot_ms, itl_ms, e2e_latency_ms, concurrency, duration, ...) plus
 * seed 004's server/total latency and client-side queueing, per-GPU metrics, cache hit rate, goodput,
 * the generator's own send lag, and the definitions used.
 */
import { describeSorted, meanStd, percentileSorted, type Distribution } from './stats.js';
import { GPU_SOURCES, SRC_NONE } from './gpu-map.js';
import { OK_SUCCESS, type Recorder } from './recorder.js';
import type { Slo } from './options.js';

export const METRIC_DEFINITIONS = {
  source: 'shared/reference/peers-and-metrics.md (metric definitions), SGLang bench_serving field names',
  ttft: 'TTFT: request sent -> first non-empty content chunk (non-streaming: the whole body, so TTFT = E2E)',
  itl: 'ITL: every gap between consecutive content chunks, pooled across requests (SGLang/vLLM meaning)',
  tpot: 'TPOT: (E2E - TTFT) / (output_tokens - 1), per request; streamed requests with >= 2 output tokens only',
  e2e_latency: 'E2E latency: request sent -> last byte',
  server_latency: 'Server latency (seed 004): request sent -> completion; measured here as E2E latency',
  total_latency: 'Total latency (seed 004): scheduled arrival -> completion, including client-side queueing',
  queue: 'Client-side queueing: sent - scheduled arrival (waiting for --max-concurrency or a late generator)',
  send_lag: "Generator send lag: actual send - the moment the request could go (max(scheduled, concurrency slot freed)); the generator's own distortion",
  throughput: 'Throughput: completed requests/s, input tok/s, output tok/s over the run duration (start of the run -> last completion)',
  concurrency: 'Concurrency: sum(E2E) / duration',
  goodput: 'Goodput: completed requests meeting every SLO given (ttft, tpot, e2e) per second; TPOT SLO not applied where TPOT is undefined',
  cache_hit_rate: 'Cache hit rate: cached prompt tokens / prompt tokens (meta_info.cached_tokens or usage.prompt_tokens_details.cached_tokens)',
  percentiles: 'Percentiles: linear interpolation between closest ranks (numpy default); std: population (ddof 0); all ms rounded to the microsecond, as in requests.csv',
  itl_percentiles: 'Pooled ITL percentiles are exact up to 8,388,608 gaps, then from a uniform reservoir sample of that size (count, mean, std, max stay exact)',
  arrivals: 'Arrivals: Poisson (exponential gaps) or gamma with shape = burstiness, scale = 1/(rate * burstiness); inf = all at once',
  gpu_id: 'gpu_id: X-SGLang-Worker header via /list_workers node_id, else port order (lowest port = GPU 0); fallbacks: router traces, policy estimate (marked estimated); single server = 0',
} as const;

export interface GpuMetrics {
  gpu_id: number;
  worker_url: string;
  requests: number;
  completed: number;
  failed: number;
  /** Share of all finished requests that went to this GPU. */
  share: number;
  request_throughput: number;
  output_throughput: number;
  input_throughput: number;
  cache_hit_rate: number;
  mean_ttft_ms: number;
  median_ttft_ms: number;
  p99_ttft_ms: number;
  mean_e2e_latency_ms: number;
  median_e2e_latency_ms: number;
  p99_e2e_latency_ms: number;
  gpu_id_sources: Record<string, number>;
}

export interface RunMeta {
  backend: string;
  api: string;
  endpoint: string;
  base_url: string;
  target: string;
  dataset_name: string;
  dataset_note: string | undefined;
  num_prompts: number;
  request_rate: number | 'inf';
  burstiness: number;
  max_concurrency: number | null;
  seed: number;
  stream: boolean;
  ignore_eos: boolean;
  warmup_requests: number;
  /** --warmup-seconds and the one-token requests it sent (paced, not recorded). */
  warmup_seconds: number;
  warmup_paced_requests: number;
  /** --parallel-scavenge as in force for this process (the first run of a process sets it). */
  parallel_scavenge: boolean;
  /** --helper-nice (0: off) and how many of this process's other threads took it when the clock started. */
  helper_nice: number;
  helper_threads_niced: number;
  model: string;
  run_id: string;
  started_at: string;
}

/** bench_serving's four (mean, median, std, p99) plus p90/p95/max, under `<prefix>_ms` names. */
function latencyFields(prefix: string, d: Distribution, out: Record<string, number>): void {
  out[`mean_${prefix}_ms`] = d.mean;
  out[`median_${prefix}_ms`] = d.median;
  out[`std_${prefix}_ms`] = d.std;
  out[`p90_${prefix}_ms`] = d.p90;
  out[`p95_${prefix}_ms`] = d.p95;
  out[`p99_${prefix}_ms`] = d.p99;
  out[`max_${prefix}_ms`] = d.max;
}

/** Values of `arr` at successful requests (optionally only those on `gpu`), NaN skipped, ascending. */
export function collectSorted(rec: Recorder, arr: Float64Array, gpu?: number): Float64Array {
  let n = 0;
  for (let i = 0; i < rec.n; i++) if (rec.ok[i] === OK_SUCCESS && !Number.isNaN(arr[i] as number) && (gpu === undefined || rec.gpu[i] === gpu)) n++;
  const out = new Float64Array(n);
  let k = 0;
  for (let i = 0; i < rec.n; i++) if (rec.ok[i] === OK_SUCCESS && !Number.isNaN(arr[i] as number) && (gpu === undefined || rec.gpu[i] === gpu)) out[k++] = arr[i] as number;
  out.sort();
  return out;
}

export interface LoadSummary extends Record<string, unknown> {
  completed: number;
  failed: number;
  duration: number;
  request_throughput: number;
  output_throughput: number;
  cache_hit_rate: number;
  gpu_metrics: GpuMetrics[];
}

export function buildSummary(rec: Recorder, meta: RunMeta, slo: Slo | undefined, workerUrlOf: (gpu: number) => string): LoadSummary {
  const durationMs = rec.lastCompletedMs;
  const durationS = durationMs / 1000;
  let completed = 0;
  let totalIn = 0;
  let totalOut = 0;
  let cachedKnownIn = 0;
  let cached = 0;
  let sumE2e = 0;
  let good = 0;
  for (let i = 0; i < rec.n; i++) {
    if (rec.ok[i] !== OK_SUCCESS) continue;
    completed++;
    totalIn += rec.inputTokens[i] as number;
    totalOut += rec.outputTokens[i] as number;
    const c = rec.cachedTokens[i] as number;
    if (c >= 0) {
      cached += c;
      cachedKnownIn += rec.inputTokens[i] as number;
    }
    sumE2e += rec.e2e[i] as number;
    if (slo !== undefined) {
      const ttft = rec.ttft[i] as number;
      const tpot = rec.tpot[i] as number;
      const e2e = rec.e2e[i] as number;
      const meets =
        (slo.ttftMs === undefined || ttft <= slo.ttftMs) && (slo.tpotMs === undefined || Number.isNaN(tpot) || tpot <= slo.tpotMs) && (slo.e2eMs === undefined || e2e <= slo.e2eMs);
      if (meets) good++;
    }
  }
  const perS = (x: number): number => (durationS > 0 ? x / durationS : Number.NaN);

  const ttft = collectSorted(rec, rec.ttft);
  const tpot = collectSorted(rec, rec.tpot);
  const e2e = collectSorted(rec, rec.e2e);
  const total = collectSorted(rec, rec.total);
  const queue = collectSorted(rec, rec.queue);

  // Send lag covers every request sent, successful or not.
  let lagN = 0;
  for (let i = 0; i < rec.n; i++) if (!Number.isNaN(rec.lag[i] as number)) lagN++;
  const lag = new Float64Array(lagN);
  let k = 0;
  for (let i = 0; i < rec.n; i++) if (!Number.isNaN(rec.lag[i] as number)) lag[k++] = rec.lag[i] as number;
  lag.sort();

  const itlSorted = rec.itl.sorted();
  const itlStats = rec.itl.stats;

  const out: Record<string, unknown> = {
    ...meta,
    request_rate: meta.request_rate,
    completed,
    failed: rec.failed,
    errors: Object.fromEntries(rec.errors),
    total_input_tokens: totalIn,
    total_output_tokens: totalOut,
    total_cached_tokens: cached,
    duration: durationS,
    request_throughput: perS(completed),
    input_throughput: perS(totalIn),
    output_throughput: perS(totalOut),
    total_throughput: perS(totalIn + totalOut),
  };
  const lat: Record<string, number> = {};
  latencyFields('ttft', describeSorted(ttft), lat);
  latencyFields('tpot', describeSorted(tpot), lat);
  // ITL: mean/std/max exact from the running stats; percentiles from the (exact or sampled) reservoir.
  lat['mean_itl_ms'] = itlStats.count > 0 ? itlStats.mean : Number.NaN;
  lat['median_itl_ms'] = percentileSorted(itlSorted, 50);
  lat['std_itl_ms'] = itlStats.std;
  lat['p90_itl_ms'] = percentileSorted(itlSorted, 90);
  lat['p95_itl_ms'] = percentileSorted(itlSorted, 95);
  lat['p99_itl_ms'] = percentileSorted(itlSorted, 99);
  lat['max_itl_ms'] = itlStats.count > 0 ? itlStats.max : Number.NaN;
  lat['itl_count'] = itlStats.count;
  latencyFields('e2e_latency', describeSorted(e2e), lat);
  latencyFields('server_latency', describeSorted(e2e), lat);
  latencyFields('total_latency', describeSorted(total), lat);
  latencyFields('queue', describeSorted(queue), lat);
  Object.assign(out, lat);
  out['itl_percentiles_exact'] = rec.itl.exact;
  out['concurrency'] = durationMs > 0 ? sumE2e / durationMs : Number.NaN;
  out['cache_hit_rate'] = cachedKnownIn > 0 ? cached / cachedKnownIn : Number.NaN;
  if (slo !== undefined) {
    out['slo'] = { ttft_ms: slo.ttftMs ?? null, tpot_ms: slo.tpotMs ?? null, e2e_ms: slo.e2eMs ?? null };
    out['goodput'] = perS(good);
    out['goodput_requests'] = good;
  }
  const lagD = describeSorted(lag);
  out['send_lag'] = { count: lagD.count, mean_ms: lagD.mean, p50_ms: lagD.p50, p99_ms: lagD.p99, max_ms: lagD.max };
  out['gpu_metrics'] = gpuMetrics(rec, durationS, workerUrlOf);
  out['gpu_id_sources'] = sourceCounts(rec, undefined);
  out['definitions'] = METRIC_DEFINITIONS;
  return out as LoadSummary;
}

function sourceCounts(rec: Recorder, gpu: number | undefined): Record<string, number> {
  const counts: Record<string, number> = {};
  for (let i = 0; i < rec.n; i++) {
    if (rec.ok[i] === 0) continue;
    if (gpu !== undefined && rec.gpu[i] !== gpu) continue;
    const s = GPU_SOURCES[rec.gpuSource[i] as number] ?? '';
    const key = rec.gpuSource[i] === SRC_NONE ? 'unknown' : s;
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}

function gpuMetrics(rec: Recorder, durationS: number, workerUrlOf: (gpu: number) => string): GpuMetrics[] {
  const gpus = new Set<number>();
  let finished = 0;
  for (let i = 0; i < rec.n; i++) {
    if (rec.ok[i] === 0) continue;
    finished++;
    const g = rec.gpu[i] as number;
    if (g >= 0) gpus.add(g);
  }
  const out: GpuMetrics[] = [];
  for (const g of [...gpus].sort((a, b) => a - b)) {
    let requests = 0;
    let completed = 0;
    let input = 0;
    let output = 0;
    let cached = 0;
    let cachedIn = 0;
    for (let i = 0; i < rec.n; i++) {
      if (rec.ok[i] === 0 || rec.gpu[i] !== g) continue;
      requests++;
      if (rec.ok[i] !== OK_SUCCESS) continue;
      completed++;
      input += rec.inputTokens[i] as number;
      output += rec.outputTokens[i] as number;
      const c = rec.cachedTokens[i] as number;
      if (c >= 0) {
        cached += c;
        cachedIn += rec.inputTokens[i] as number;
      }
    }
    const ttft = collectSorted(rec, rec.ttft, g);
    const e2e = collectSorted(rec, rec.e2e, g);
    const perS = (x: number): number => (durationS > 0 ? x / durationS : Number.NaN);
    out.push({
      gpu_id: g,
      worker_url: workerUrlOf(g),
      requests,
      completed,
      failed: requests - completed,
      share: finished > 0 ? requests / finished : Number.NaN,
      request_throughput: perS(completed),
      output_throughput: perS(output),
      input_throughput: perS(input),
      cache_hit_rate: cachedIn > 0 ? cached / cachedIn : Number.NaN,
      mean_ttft_ms: meanStd(ttft).mean,
      median_ttft_ms: percentileSorted(ttft, 50),
      p99_ttft_ms: percentileSorted(ttft, 99),
      mean_e2e_latency_ms: meanStd(e2e).mean,
      median_e2e_latency_ms: percentileSorted(e2e, 50),
      p99_e2e_latency_ms: percentileSorted(e2e, 99),
      gpu_id_sources: sourceCounts(rec, g),
    });
  }
  return out;
}
