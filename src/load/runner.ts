/**
 * runLoad: one load run against one target, start to finish: probe the target, warm up, send the seeded
 * workload on schedule, record every request, settle GPU ids, write requests.csv and summary.json.
 * The sending itself is the Scheduler's (scheduler.ts).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { devNull } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { LoadClient, sendAndParse } from './client.js';
import { createDataset, subSeed, type Dataset, type RequestSpec } from './datasets.js';
import { GpuMapper, SRC_ESTIMATED, SRC_TRACES, SRC_UNKNOWN, estimateGpu } from './gpu-map.js';
import type { LoadOptions } from './options.js';
import { buildPayload, requestPath, type PayloadSettings } from './protocol.js';
import { Recorder } from './recorder.js';
import { lowerHelperThreads, useParallelScavenge } from './helper-threads.js';
import { LagDiagnostics } from './lag-diagnostics.js';
import { Scheduler } from './scheduler.js';
import { ProgressBar, formatSummary } from './report.js';
import { buildSummary, collectSorted, type LoadSummary, type RunMeta } from './summary.js';
import { TargetError, firstModel, flushCache, lookupTraces, normalizeUrl, probeTarget, type TargetInfo } from './target.js';

export interface LoadRunResult {
  summary: LoadSummary;
  dir: string;
  csvPath: string;
  summaryPath: string;
  /** Ascending TTFT of the successful requests (ms), for plots. */
  ttftSortedMs: Float64Array;
  /** Peak bytes of the recorder's arrays. */
  recorderBytes: number;
}

export interface LoadHooks {
  /** Human-readable notes (stderr by default). */
  log?: (line: string) => void;
  /** Where the result table goes (stdout by default). */
  out?: (text: string) => void;
  /** Label of the progress bar. */
  label?: string;
  /** Aborting stops sending new requests; those in flight finish and the results are written. */
  signal?: AbortSignal;
}

export class LoadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LoadError';
  }
}

export async function runLoad(opts: LoadOptions, hooks: LoadHooks = {}): Promise<LoadRunResult> {
  const log = hooks.log ?? ((line: string) => process.stderr.write(line + '\n'));
  const out = hooks.out ?? ((text: string) => process.stdout.write(text + '\n'));
  const baseUrl = opts.url.replace(/\/+$/, '');
  try {
    new URL(baseUrl);
  } catch {
    throw new LoadError(`--url '${opts.url}' is not a valid URL (e.g. http://127.0.0.1:30000)`);
  }
  const dir = resolve(opts.output);

  let target: TargetInfo;
  try {
    target = await probeTarget(baseUrl, opts.target, opts.apiKey);
  } catch (err) {
    if (err instanceof TargetError) throw new LoadError(err.message);
    throw err;
  }
  const model = opts.model ?? (opts.api === 'openai' ? ((await firstModel(baseUrl, opts.apiKey)) ?? 'default') : 'default');
  if (opts.flushCache) {
    const f = await flushCache(baseUrl, opts.apiKey);
    if (!f.ok) log(`warning: POST /flush_cache answered ${f.status === 0 ? 'nothing' : f.status}; continuing`);
  }
  const dataset = createDataset(opts);
  const n = dataset.size;
  // Only now (target reachable, dataset valid) does the run leave a folder behind.
  mkdirSync(dir, { recursive: true });
  const runId = opts.runId ?? randomBytes(4).toString('hex');
  const inFlightLimit = Math.max(1, Math.min(opts.maxConcurrency ?? opts.maxConnections, opts.maxConnections));
  const parallelScavenge = useParallelScavenge(opts.parallelScavenge);
  const helperNice = opts.helperNice ?? 0;
  const diag = opts.lagDiagnostics === true ? new LagDiagnostics() : undefined;
  const client = new LoadClient({
    ...(diag === undefined ? {} : { responseClock: diag.responseClock }),
    origin: new URL(baseUrl).origin,
    connections: inFlightLimit,
    timeoutMs: Math.round(opts.requestTimeoutSecs * 1000),
    headers: opts.apiKey === undefined ? {} : { authorization: `Bearer ${opts.apiKey}` },
  });
  const path = (new URL(baseUrl).pathname.replace(/\/+$/, '') || '') + requestPath(opts.api, opts.openaiRoute);
  const settings: PayloadSettings = {
    api: opts.api,
    openaiRoute: opts.openaiRoute,
    model,
    stream: !opts.disableStream,
    ignoreEos: !opts.disableIgnoreEos,
    extra: opts.extraRequestBody,
  };
  const cumulative = opts.api === 'sglang';
  const csvPath = join(dir, 'requests.csv');
  const summaryPath = join(dir, 'summary.json');
  const startedAt = new Date().toISOString();

  try {
    if (opts.warmupRequests > 0) await warmup(client, dataset, settings, path, cumulative, opts.warmupRequests, runId, log);
    const paced = pacedWarmupCount(opts);
    if (paced > 0) await pacedWarmup(client, dataset, settings, path, cumulative, opts, inFlightLimit, `${runId}-warm`, paced, target, log, hooks.signal);
    const mapper = new GpuMapper(target);
    const recorder = new Recorder(csvPath, n, mapper);
    const progressOn = opts.progress === 'on' || (opts.progress === 'auto' && process.stderr.isTTY === true);
    const scheduler = new Scheduler(client, dataset, settings, path, cumulative, { requestRate: opts.requestRate, burstiness: opts.burstiness, seed: opts.seed }, inFlightLimit, runId, recorder, diag);
    const onAbort = (): void => {
      log(`stopping: no new requests; waiting for ${scheduler.inFlight} in flight`);
      scheduler.stop();
    };
    hooks.signal?.addEventListener('abort', onAbort, { once: true });
    if (hooks.signal?.aborted === true) onAbort(); // during the warm-up
    const bar = progressOn ? new ProgressBar(process.stderr, n, () => ({ done: recorder.finished, failed: recorder.failed, inFlight: scheduler.inFlight }), hooks.label ?? 'load') : undefined;
    bar?.start();
    // Just before the clock, when the warm-ups have started every helper (libuv's pool, compilers).
    const niced = helperNice > 0 ? lowerHelperThreads(helperNice) : 0;
    try {
      await scheduler.run();
    } finally {
      bar?.stop();
      hooks.signal?.removeEventListener('abort', onAbort);
    }
    await recorder.close();
    await settleGpus(recorder, mapper, target, baseUrl, opts, runId, opts.warmupRequests + paced);
    await recorder.rewriteDeferred();

    const gpuUrl = new Map<number, string>();
    for (let i = 0; i < n; i++) {
      const g = recorder.gpu[i] as number;
      const w = recorder.worker[i] as number;
      if (g >= 0 && w >= 0 && !gpuUrl.has(g)) gpuUrl.set(g, mapper.workerUrl(w));
    }
    if (target.kind === 'server' && !gpuUrl.has(0)) gpuUrl.set(0, normalizeUrl(baseUrl));
    const meta: RunMeta = {
      backend: opts.api === 'sglang' ? 'sglang' : `openai-${opts.openaiRoute}`,
      api: opts.api,
      endpoint: path,
      base_url: baseUrl,
      target: target.kind,
      dataset_name: dataset.name,
      dataset_note: dataset.note,
      num_prompts: n,
      request_rate: Number.isFinite(opts.requestRate) ? opts.requestRate : 'inf',
      burstiness: opts.burstiness,
      max_concurrency: opts.maxConcurrency ?? null,
      seed: opts.seed,
      stream: !opts.disableStream,
      ignore_eos: !opts.disableIgnoreEos,
      warmup_requests: opts.warmupRequests,
      warmup_seconds: opts.warmupSeconds,
      warmup_paced_requests: paced,
      parallel_scavenge: parallelScavenge,
      helper_nice: helperNice,
      helper_threads_niced: niced,
      model,
      run_id: runId,
      started_at: startedAt,
    };
    const summary = buildSummary(recorder, meta, opts.slo, (g) => gpuUrl.get(g) ?? '');
    summary['interrupted'] = scheduler.stopped;
    summary['files'] = { requests_csv: csvPath, summary_json: summaryPath };
    summary['memory'] = { recorder_bytes: recorder.bytes };
    if (diag !== undefined) summary['send_lag_causes'] = diag.finish();
    writeFileSync(summaryPath, JSON.stringify(summary, null, 2) + '\n');
    if (!opts.quiet) out(formatSummary(summary));
    return {
      summary,
      dir,
      csvPath,
      summaryPath,
      ttftSortedMs: collectSorted(recorder, recorder.ttft),
      recorderBytes: recorder.bytes,
    };
  } finally {
    await client.close().catch(() => client.destroy());
  }
}

function requestIdOf(runId: string, index: number): string {
  return `${runId}-${index}`;
}

/** Warm-up requests (the first prompt, concurrently), not recorded. All failing to connect aborts the run. */
async function warmup(client: LoadClient, dataset: Dataset, settings: PayloadSettings, path: string, cumulative: boolean, count: number, runId: string, log: (s: string) => void): Promise<void> {
  const spec = dataset.iterate().next();
  const body = Buffer.from(JSON.stringify(buildPayload(spec, settings)));
  const outcomes = await Promise.all(Array.from({ length: count }, (_, k) => sendAndParse(client, path, body, `${runId}-warmup-${k}`, cumulative)));
  const failed = outcomes.filter((o) => o.error !== '');
  if (failed.length === outcomes.length && failed.every((o) => o.status === 0)) {
    throw new LoadError(`warm-up failed: ${failed[0]!.error} (is the target up at ${path}?)`);
  }
  if (failed.length > 0) log(`warning: ${failed.length}/${outcomes.length} warm-up requests failed (${failed[0]!.error}); continuing`);
}

/** Requests of the paced warm-up: --warmup-seconds of the run's rate, at least 1, at most MAX_PACED_WARMUP. */
export function pacedWarmupCount(opts: Pick<LoadOptions, 'requestRate' | 'warmupSeconds'>): number {
  if (!(opts.warmupSeconds > 0) || !Number.isFinite(opts.requestRate)) return 0;
  return Math.max(1, Math.min(MAX_PACED_WARMUP, Math.floor(opts.requestRate * opts.warmupSeconds)));
}

/** Enough for V8 to have compiled the send path (measured: 200 at 2,000 req/s already halve the p99 lag). */
const MAX_PACED_WARMUP = 2000;

/**
 * The generator's own warm-up: `count` requests for one token (the warm-up prompt) at the run's rate and
 * concurrency cap, through the same Scheduler and Recorder code as the run, rows to the null device. A
 * fresh process otherwise runs its first few hundred sends interpreted or compiling: measured at 2,000
 * req/s, the first 700 requests held most of the late sends (p99 1.3-4.4 ms; 0.6-1.1 ms after a paced
 * warm-up of 200). One token each, so the target is left as idle as the concurrent warm-up leaves it; a
 * different arrival seed, so the run's own schedule is unchanged.
 */
async function pacedWarmup(client: LoadClient, dataset: Dataset, settings: PayloadSettings, path: string, cumulative: boolean, opts: LoadOptions, limit: number, runId: string, count: number, target: TargetInfo, log: (s: string) => void, signal: AbortSignal | undefined): Promise<void> {
  const spec: RequestSpec = { ...dataset.iterate().next(), outputLen: 1 };
  const requests: Dataset = { name: dataset.name, size: count, note: undefined, iterate: () => ({ next: () => spec }) };
  const recorder = new Recorder(devNull, count, new GpuMapper(target));
  const arrivals = { requestRate: opts.requestRate, burstiness: opts.burstiness, seed: subSeed(opts.seed, 11) };
  const scheduler = new Scheduler(client, requests, settings, path, cumulative, arrivals, limit, runId, recorder, undefined);
  const stop = (): void => scheduler.stop();
  signal?.addEventListener('abort', stop, { once: true });
  try {
    await scheduler.run();
  } finally {
    signal?.removeEventListener('abort', stop);
    await recorder.close();
  }
  if (recorder.failed > 0) log(`warning: ${recorder.failed}/${recorder.finished} paced warm-up requests failed (${[...recorder.errors.keys()][0] ?? 'error'}); continuing`);
}

/** GPU ids the headers did not settle: port order, then the router's traces, then the policy estimate. */
async function settleGpus(rec: Recorder, mapper: GpuMapper, target: TargetInfo, baseUrl: string, opts: LoadOptions, runId: string, sentBefore: number): Promise<void> {
  const pending = rec.unsettled();
  if (pending.length === 0) return;
  const noWorker: number[] = [];
  for (const i of pending) {
    const w = rec.worker[i] as number;
    if (w >= 0) {
      const { gpu, source } = mapper.gpuOf(w);
      rec.setGpu(i, gpu, source);
    } else noWorker.push(i);
  }
  if (noWorker.length === 0) return;
  let remaining = noWorker;
  if (target.kind === 'router') {
    const traces = await lookupTraces(baseUrl, opts.apiKey, noWorker.map((i) => requestIdOf(runId, i)));
    if (traces !== undefined) {
      const left: number[] = [];
      for (const i of noWorker) {
        const t = traces.get(requestIdOf(runId, i));
        if (t?.workerUrl !== undefined) {
          const w = mapper.workerIndex(t.workerUrl);
          rec.worker[i] = w;
          rec.setGpu(i, t.nodeId ?? mapper.gpuOf(w).gpu, SRC_TRACES);
        } else if (t?.nodeId !== undefined) rec.setGpu(i, t.nodeId, SRC_TRACES);
        else left.push(i);
      }
      remaining = left;
    }
  }
  const gpus = mapper.gpuCount(opts.numGpus);
  for (const i of remaining) {
    const est = opts.gpuFallbackPolicy === 'none' ? undefined : estimateGpu(opts.gpuFallbackPolicy, sentBefore + i, requestIdOf(runId, i), gpus);
    if (est !== undefined) rec.setGpu(i, est, SRC_ESTIMATED);
    else rec.setGpu(i, -1, SRC_UNKNOWN);
  }
}
