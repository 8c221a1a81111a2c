/**
 * runLoad: one load run against one target, start to finish: probe the target, warm up, send the seeded
 * workload on schedule, record every request, settle GPU ids, write requests.csv and summary.json.
 *
 * Scheduling keeps the generator from distorting what it measures: the next request's body is built
 * ahead of its time; a timer sleeps until ~2 ms before it is due, then the loop polls with setImmediate
 * (so network I/O still runs) and sends at the due time, or, with nothing in flight (no response to
 * read), blocks until just before it; requests over --max-concurrency wait client-side and go out from
 * the completion that frees a slot. Its own lateness is measured per request (send lag), and with
 * --lag-diagnostics attributed to causes (lag-diagnostics.ts).
 *
 * Between sends the thread does as little as it can: the client only copies and stamps response chunks,
 * and finished exchanges wait in a queue. Parsing them, recording them and writing their CSV rows (tens of
 * microseconds each) happens only in slack: while the next send is more than RECORD_MARGIN_MS away, or
 * once everything is sent. A generator that cannot keep up records regardless past MAX_DEFERRED waiting.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { ArrivalProcess } from './arrivals.js';
import { LoadClient, sendAndParse, type Exchange } from './client.js';
import { createDataset, type Dataset, type DatasetIterator, type RequestSpec } from './datasets.js';
import { GpuMapper, SRC_ESTIMATED, SRC_TRACES, SRC_UNKNOWN, estimateGpu } from './gpu-map.js';
import type { LoadOptions } from './options.js';
import { buildPayload, requestPath, type PayloadSettings } from './protocol.js';
import { Recorder } from './recorder.js';
import { LagDiagnostics } from './lag-diagnostics.js';
import { ProgressBar, formatSummary } from './report.js';
import { buildSummary, collectSorted, type LoadSummary, type RunMeta } from './summary.js';
import { TargetError, firstModel, flushCache, lookupTraces, normalizeUrl, probeTarget, type TargetInfo } from './target.js';

/** Poll (setImmediate) instead of sleeping when the next request is due within this many ms. */
const SPIN_WINDOW_MS = 2;
/**
 * With nothing in flight the thread blocks (Atomics.wait, microsecond timeout) instead of polling, and
 * wakes this much early: measured here, a futex wait overslept by 0.11 ms (median) / 0.2 ms (p99).
 */
const WAKE_SLACK_MS = 0.2;

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

/**
 * A request ready to go: its body bytes (outside the JS heap) and the two numbers its record needs. Not
 * its spec: ~256 prompts held here until their send survived young-generation collections and made each
 * ~2x longer (--trace-gc-nvp, random 1024-token prompts: new_space_survived ~0.55 MB).
 */
interface Prepared {
  index: number;
  promptTokens: number;
  group: number;
  body: Buffer;
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
    const mapper = new GpuMapper(target);
    const recorder = new Recorder(csvPath, n, mapper);
    const progressOn = opts.progress === 'on' || (opts.progress === 'auto' && process.stderr.isTTY === true);
    const scheduler = new Scheduler(client, dataset, settings, path, cumulative, opts, inFlightLimit, runId, recorder, diag);
    const onAbort = (): void => {
      log(`stopping: no new requests; waiting for ${scheduler.inFlight} in flight`);
      scheduler.stop();
    };
    hooks.signal?.addEventListener('abort', onAbort, { once: true });
    const bar = progressOn ? new ProgressBar(process.stderr, n, () => ({ done: recorder.finished, failed: recorder.failed, inFlight: scheduler.inFlight }), hooks.label ?? 'load') : undefined;
    bar?.start();
    try {
      await scheduler.run();
    } finally {
      bar?.stop();
      hooks.signal?.removeEventListener('abort', onAbort);
    }
    await recorder.close();
    await settleGpus(recorder, mapper, target, baseUrl, opts, runId);
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

/** GPU ids the headers did not settle: port order, then the router's traces, then the policy estimate. */
async function settleGpus(rec: Recorder, mapper: GpuMapper, target: TargetInfo, baseUrl: string, opts: LoadOptions, runId: string): Promise<void> {
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
    const est = opts.gpuFallbackPolicy === 'none' ? undefined : estimateGpu(opts.gpuFallbackPolicy, opts.warmupRequests + i, requestIdOf(runId, i), gpus);
    if (est !== undefined) rec.setGpu(i, est, SRC_ESTIMATED);
    else rec.setGpu(i, -1, SRC_UNKNOWN);
  }
}

/** Request bodies built ahead of their send time (bounded: this many at most). */
const LOOKAHEAD = 256;
/** Building a body takes tens of microseconds; only build ahead when the next send is further away than this. */
const BUILD_MARGIN_MS = 0.3;
/** Parsing and recording a finished exchange takes tens of microseconds: only when the next send is further away. */
const RECORD_MARGIN_MS = 0.25;
/** Finished exchanges waiting to be recorded beyond which they are recorded regardless (bounded memory). */
const MAX_DEFERRED = 2048;

/** One request from its send to its record (pooled: no closure or object per request). */
class Pending {
  index = 0;
  scheduled = 0;
  ready = 0;
  sent = 0;
  promptTokens = 0;
  group = -1;
  ex: Exchange | undefined;
}

class Scheduler {
  inFlight = 0;
  private nextIndex = 0;
  private nextScheduled: number;
  private readonly arrivals: ArrivalProcess;
  private readonly iter: DatasetIterator;
  /** Bodies of requests nextIndex, nextIndex + 1, ... (a FIFO ring). */
  private readonly ready: (Prepared | undefined)[] = new Array<Prepared | undefined>(LOOKAHEAD);
  private readyHead = 0;
  private readyCount = 0;
  private preparedUpTo = 0;
  private t0 = 0;
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;
  private pumpQueued = false;
  private resolveDone: (() => void) | undefined;
  /** Exchanges finished (recorded or waiting in `deferred`). */
  private completed = 0;
  private readonly deferred: Pending[] = [];
  private deferredHead = 0;
  private readonly pool: Pending[] = [];
  private firstFreedAt = -1;
  /** Never notified: Atomics.wait on it is a sleep with a sub-millisecond timeout. */
  private readonly sleeper = new Int32Array(new SharedArrayBuffer(4));
  private readonly onDoneBound = (ex: Exchange, p: Pending): void => this.onDone(ex, p);
  /** Requests in the run; lowered to the number already sent when the run is stopped early. */
  private n: number;
  stopped = false;

  constructor(
    private readonly client: LoadClient,
    dataset: Dataset,
    private readonly settings: PayloadSettings,
    private readonly path: string,
    private readonly cumulative: boolean,
    opts: LoadOptions,
    private readonly limit: number,
    private readonly runId: string,
    private readonly recorder: Recorder,
    private readonly diag: LagDiagnostics | undefined,
  ) {
    this.n = dataset.size;
    this.arrivals = new ArrivalProcess({ requestRate: opts.requestRate, burstiness: opts.burstiness, seed: opts.seed });
    this.iter = dataset.iterate();
    this.nextScheduled = this.arrivals.next();
  }

  run(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.resolveDone = resolve;
      // Everything that can be built before the clock starts is built now.
      while (this.readyCount < LOOKAHEAD && this.preparedUpTo < this.n) this.prepareOne();
      this.diag?.start();
      this.t0 = performance.now();
      this.tick();
    });
  }

  private now(): number {
    return performance.now() - this.t0;
  }

  private prepareOne(): void {
    const spec = this.iter.next();
    const p: Prepared = { index: this.preparedUpTo++, promptTokens: spec.promptTokens, group: spec.group, body: Buffer.from(JSON.stringify(buildPayload(spec, this.settings))) };
    this.ready[(this.readyHead + this.readyCount) % LOOKAHEAD] = p;
    this.readyCount++;
  }

  /** Builds bodies ahead while the next send is not about to be due. */
  private fillAhead(): void {
    while (this.readyCount < LOOKAHEAD && this.preparedUpTo < this.n && this.nextScheduled - this.now() > BUILD_MARGIN_MS) this.prepareOne();
  }

  private takePrepared(): Prepared {
    if (this.readyCount === 0) this.prepareOne();
    const p = this.ready[this.readyHead]!;
    this.ready[this.readyHead] = undefined;
    this.readyHead = (this.readyHead + 1) % LOOKAHEAD;
    this.readyCount--;
    return p;
  }

  /** Stop sending: the run ends when the requests already sent have finished. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.n = this.nextIndex;
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.immediate !== undefined) clearImmediate(this.immediate);
    this.timer = undefined;
    this.immediate = undefined;
    if (this.completed >= this.n) this.finishRun();
  }

  private readonly tick = (): void => {
    this.timer = undefined;
    this.immediate = undefined;
    this.pump(-1);
  };

  /** Sends everything due while slots are free; `slotFreedAt` >= 0 when called from a completion. */
  private pump(slotFreedAt: number): void {
    const diag = this.diag;
    do {
      if (diag !== undefined) diag.turn(performance.now());
      while (this.nextIndex < this.n && this.inFlight < this.limit) {
        const now = this.now();
        if (this.nextScheduled > now) break;
        const ready = slotFreedAt > this.nextScheduled ? slotFreedAt : this.nextScheduled;
        this.sendNext(ready);
      }
      if (diag === undefined) {
        this.recordInSlack();
        this.fillAhead();
      } else {
        const a = performance.now();
        this.recordInSlack();
        const b = performance.now();
        this.fillAhead();
        diag.recordMs += b - a;
        diag.buildMs += performance.now() - b;
      }
      // Not from a completion: that runs inside undici's callbacks.
    } while (slotFreedAt < 0 && this.sleepUntilDue());
    this.armTimer();
  }

  /**
   * Polling allocates (a setImmediate and a clock reading per turn, ~100k turns a second) and that was
   * most of the generator's young-generation garbage, whose collections were its own largest cause of
   * late sends (--lag-diagnostics). But polling is only needed to read responses the moment they arrive:
   * with nothing in flight none can, so the thread blocks until just before the next send instead. True
   * when it slept (the caller then sends what is due, in the same turn).
   */
  private sleepUntilDue(): boolean {
    if (this.inFlight !== 0 || this.nextIndex >= this.n || this.stopped) return false;
    const wait = this.nextScheduled - this.now();
    if (wait <= WAKE_SLACK_MS || wait > SPIN_WINDOW_MS + 1) return false; // poll the rest / a timer
    Atomics.wait(this.sleeper, 0, 0, wait - WAKE_SLACK_MS);
    return true;
  }

  /** Record finished exchanges while the next send is far enough away (or nothing is left to send). */
  private recordInSlack(): void {
    while (this.deferredHead < this.deferred.length) {
      const waiting = this.deferred.length - this.deferredHead;
      if (waiting <= MAX_DEFERRED && this.nextIndex < this.n && this.nextScheduled - this.now() <= RECORD_MARGIN_MS) break;
      this.recordOne();
    }
    if (this.deferredHead === this.deferred.length) {
      this.deferred.length = 0;
      this.deferredHead = 0;
    }
  }

  private recordOne(): void {
    const p = this.deferred[this.deferredHead] as Pending;
    this.deferred[this.deferredHead++] = undefined as unknown as Pending;
    this.recorder.add({
      index: p.index,
      requestId: `${this.runId}-${p.index}`,
      scheduledMs: p.scheduled,
      readyMs: p.ready,
      sentMs: p.sent,
      clockOffset: this.t0,
      outcome: (p.ex as Exchange).outcome(),
      specPromptTokens: p.promptTokens,
      group: p.group,
    });
    p.ex = undefined;
    this.pool.push(p);
  }

  private finishRun(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.immediate !== undefined) clearImmediate(this.immediate);
    this.timer = undefined;
    this.immediate = undefined;
    while (this.deferredHead < this.deferred.length) this.recordOne();
    this.deferred.length = 0;
    this.deferredHead = 0;
    this.resolveDone?.();
  }

  private armTimer(): void {
    if (this.timer !== undefined || this.immediate !== undefined) return;
    if (this.nextIndex >= this.n || this.inFlight >= this.limit) return; // a completion will pump
    const wait = this.nextScheduled - this.now();
    if (wait > SPIN_WINDOW_MS + 1) this.timer = setTimeout(this.tick, Math.floor(wait - SPIN_WINDOW_MS));
    else this.immediate = setImmediate(this.tick);
  }

  private sendNext(readyAt: number): void {
    const prepared = this.takePrepared();
    const p = this.pool.pop() ?? new Pending();
    p.index = this.nextIndex++;
    p.scheduled = this.nextScheduled;
    p.ready = readyAt;
    p.promptTokens = prepared.promptTokens;
    p.group = prepared.group;
    this.nextScheduled = this.nextIndex < this.n ? this.arrivals.next() : Number.POSITIVE_INFINITY;
    this.inFlight++;
    p.sent = this.now();
    this.client.send(this.path, prepared.body, `${this.runId}-${p.index}`, this.cumulative, this.onDoneBound, p);
    if (this.diag !== undefined) this.diag.sent(p.index, readyAt + this.t0, p.sent + this.t0);
  }

  private onDone(ex: Exchange, p: Pending): void {
    this.inFlight--;
    this.completed++;
    p.ex = ex;
    this.deferred.push(p);
    const freedAt = ex.completedAt - this.t0;
    if (this.completed >= this.n) return this.finishRun();
    // Send from a microtask, not from inside undici's callback (no re-entrancy into its parser); the
    // first slot freed in this turn is when a request waiting for one became ready.
    if (!this.pumpQueued) {
      this.pumpQueued = true;
      this.firstFreedAt = freedAt;
      queueMicrotask(this.pumpFromCompletion);
    }
  }

  private readonly pumpFromCompletion = (): void => {
    this.pumpQueued = false;
    this.pump(this.firstFreedAt);
  };
}
