/**
 * The simulated SGLang scheduler: one loop per server, continuous batching over a token KV budget
 * with a radix prefix cache.
 *
 * Each step is either a prefill batch (waiting requests admitted FCFS under the prefill token budget,
 * chunked prefill, max_running_requests and a KV reservation, as SGLang's PrefillAdder) or one decode
 * step for every running request. A step is scheduled with ONE timer; its effects (tokens, finishes)
 * are applied when it ends. The loop keeps a virtual clock: a step starts where the previous one
 * ended, so timer lateness (1 ms granularity, busy event loop) is caught up instead of accumulating,
 * and reported latencies are the modelled ones. When the loop falls behind real time by more than
 * MAX_CATCH_UP_MS (the process itself is overloaded) it restarts from real time.
 *
 * Parts: the queues, admission and retraction in admission.ts, KV memory (radix cache + private slots)
 * in kv.ts, the server's metrics and totals in engine-metrics.ts, a request's own state in request.ts.
 * This file is the step loop: when a step runs, how long it takes, and what it does to the requests.
 */
import { performance } from 'node:perf_hooks';
import { Rng } from '../util/rng.js';
import type { MetricsSnapshot } from './metrics.js';
import { EngineMetrics, type EngineStats } from './engine-metrics.js';
import type { RadixCache } from './radix-cache.js';
import { KvPool } from './kv.js';
import { Admission } from './admission.js';
import { SimRequest, type FinishReason, type RequestSink, type SubmitSpec } from './request.js';

export type { EngineStats } from './engine-metrics.js';
export { EOS_TOKEN_ID, SimRequest, type FinishReason, type RequestSink, type RequestState, type SubmitSpec } from './request.js';
import { slowFactorOf, type SimOptions } from './options.js';

/**
 * Up to this lag behind real time the loop catches up (runs steps back to back until the virtual
 * clock reaches real time), so timer granularity and short process hiccups (GC, a busy machine) do
 * not change the modelled figures. Beyond it the process itself is too slow and the clock restarts
 * from real time.
 */
const MAX_CATCH_UP_MS = 1000;

type Step = { kind: 'prefill'; batch: SimRequest[]; start: number; end: number } | { kind: 'decode'; start: number; end: number; size: number };

export class SimEngine {
  readonly kv: KvPool;
  /** The prefix cache (kv.cache). */
  readonly cache: RadixCache;
  private readonly rng: Rng;
  private readonly slowFactor: number;
  /** The waiting queue and the running batch. */
  private readonly admission: Admission;
  /** A sequence ends ('length') at min(context length, KV capacity), as SGLang's max_req_len. */
  readonly maxSequenceLength: number;
  private step: Step | null = null;
  private timer: NodeJS.Timeout | null = null;
  private immediate: NodeJS.Immediate | null = null;
  private stopped = false;
  private stepListeners: (() => void)[] = [];
  readonly metrics = new EngineMetrics();
  private readonly totals: EngineStats['totals'] = this.metrics.totals;

  constructor(
    readonly opts: SimOptions,
    readonly index = 0,
  ) {
    this.rng = new Rng((opts.seed + index * 7919 + 1) >>> 0);
    this.slowFactor = slowFactorOf(opts, index);
    this.maxSequenceLength = Math.min(opts.contextLength, opts.maxTotalTokens);
    this.kv = new KvPool(opts.maxTotalTokens, !opts.disableRadixCache);
    this.cache = this.kv.cache;
    this.admission = new Admission(opts, this.kv, this.metrics);
  }

  // ---------------------------------------------------------------- public API

  submit(spec: SubmitSpec, sink: RequestSink): SimRequest {
    const req = new SimRequest(spec, sink, this.rng, this.opts);
    if (this.stopped) {
      req.state = 'done';
      req.finishReason = { type: 'abort', message: 'server is shutting down' };
      return req;
    }
    if (!spec.internal) this.totals.submitted++;
    this.admission.enqueue(req);
    this.kick();
    return req;
  }

  /** Removes a request wherever it is (client disconnect); frees its KV. No sink call. */
  abort(req: SimRequest, message = 'client disconnected'): void {
    if (req.state === 'done') return;
    req.finishReason = { type: 'abort', message };
    this.admission.remove(req);
    req.finishedAt = performance.now();
    if (!req.spec.internal) this.totals.aborted++;
  }

  /** SGLang's flush_cache: only when nothing is queued or running. */
  flushCache(): boolean {
    if (!this.admission.isIdle()) return false;
    this.cache.reset();
    return true;
  }

  /** Calls `cb` once, when the next step completes (health_generate's "the scheduler answered"). */
  onNextStep(cb: () => void): void {
    this.stepListeners.push(cb);
  }

  get numWaiting(): number {
    return this.admission.numWaiting;
  }
  get numRunning(): number {
    return this.admission.numRunning;
  }
  /** KV tokens held by live requests (SGLang's num_used_tokens: excludes evictable cache). */
  get usedTokens(): number {
    return this.kv.used;
  }
  get freeTokens(): number {
    return this.kv.free;
  }

  stats(): EngineStats {
    return {
      waiting: this.admission.numWaiting,
      running: this.numRunning,
      kvCapacity: this.opts.maxTotalTokens,
      kvUsedTokens: this.usedTokens,
      kvFreeTokens: this.freeTokens,
      cacheTokens: this.cache.totalSize,
      cacheLockedTokens: this.cache.lockedSize,
      cacheEvictableTokens: this.cache.evictableSize,
      privateTokens: this.kv.privateTokens,
      evictedTokens: this.cache.evictedTotal,
      newTokenRatio: this.admission.newTokenRatio,
      totals: { ...this.totals },
    };
  }

  metricsSnapshot(): MetricsSnapshot {
    return this.metrics.snapshot({ numRunning: this.numRunning, numWaiting: this.admission.numWaiting, usedTokens: this.usedTokens, kvCapacity: this.opts.maxTotalTokens });
  }

  /** Stops the loop and drops every request without calling sinks (the server closes the sockets). */
  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    if (this.immediate !== null) clearImmediate(this.immediate);
    this.timer = null;
    this.immediate = null;
    const step = this.step;
    this.step = null;
    if (step !== null && step.kind === 'prefill') for (const req of step.batch) this.abort(req, 'server stopped');
    this.admission.abortAll((req) => this.abort(req, 'server stopped'));
    const listeners = this.stepListeners;
    this.stepListeners = [];
    for (const cb of listeners) cb();
  }

  // ---------------------------------------------------------------- the loop

  private kick(): void {
    if (this.step !== null || this.stopped) return;
    this.startStep(performance.now());
  }

  private startStep(start: number): void {
    const cpu0 = performance.now();
    let step: Step | null = null;
    const running = this.admission.running;
    const prefill = this.admission.formPrefillBatch(start);
    if (prefill !== null) {
      const extend = prefill.extend;
      const ms = this.opts.prefillBaseMs + this.opts.prefillPerTokenMs * extend;
      const begin = prefill.start;
      step = { kind: 'prefill', batch: prefill.batch, start: begin, end: begin + this.scale(ms) };
      this.totals.prefillSteps++;
      this.totals.prefillTokens += extend;
    } else if (running.length > 0) {
      const context = this.admission.prepareDecode();
      const size = running.length;
      if (size > 0) {
        const ms = this.opts.decodeBaseMs + this.opts.decodePerSeqMs * size + (this.opts.decodePerKvTokenUs * context) / 1000;
        step = { kind: 'decode', start, end: start + this.scale(ms), size };
        this.totals.decodeSteps++;
        this.totals.decodeSeqSteps += size;
      } else if (this.admission.numWaiting > 0) {
        // Everything was retracted: the next step is a prefill of the retracted requests.
        this.totals.stepCpuMs += performance.now() - cpu0;
        this.startStep(start);
        return;
      }
    }
    this.totals.stepCpuMs += performance.now() - cpu0;
    if (step === null) {
      this.step = null;
      return;
    }
    this.totals.steps++;
    this.totals.busyMs += step.end - step.start;
    this.step = step;
    const delay = step.end - performance.now();
    if (delay > 0) this.timer = setTimeout(this.onStepTimer, delay);
    else this.immediate = setImmediate(this.onStepTimer);
  }

  private readonly onStepTimer = (): void => {
    this.timer = null;
    this.immediate = null;
    const step = this.step;
    if (step === null || this.stopped) return;
    const cpu0 = performance.now();
    if (step.kind === 'prefill') this.finishPrefill(step.batch, step.end);
    else this.finishDecode(step.end);
    this.step = null;
    const now = performance.now();
    this.totals.stepCpuMs += now - cpu0;
    if (this.stepListeners.length > 0) {
      const listeners = this.stepListeners;
      this.stepListeners = [];
      for (const cb of listeners) cb();
    }
    if (this.stopped) return;
    // Catch up timer lateness unless the process itself is far behind.
    this.startStep(now - step.end > MAX_CATCH_UP_MS ? now : step.end);
  };

  private scale(ms: number): number {
    let factor = this.opts.timeScale * this.slowFactor;
    if (this.opts.jitter > 0) factor *= Math.max(0.05, 1 + this.opts.jitter * this.rng.normal());
    return ms * factor;
  }

  // ---------------------------------------------------------------- step effects

  private finishPrefill(batch: SimRequest[], stamp: number): void {
    const radix = !this.opts.disableRadixCache;
    const finished: SimRequest[] = [];
    const progressed: SimRequest[] = [];
    for (const req of batch) {
      if (req.state !== 'prefilling') continue; // aborted during the step
      const take = req.inflight;
      req.inflight = 0;
      req.computed += take;
      if (radix) {
        this.kv.privateTokens -= take;
        const seq = req.outputIds.length === 0 ? req.spec.promptIds : req.sequence(req.outputIds.length);
        const inserted = this.cache.insert(seq, req.computed);
        this.cache.lock(inserted.node);
        if (req.node !== null) this.cache.unlock(req.node);
        req.node = inserted.node;
      } else {
        req.privateTokens += take;
      }
      if (req.computed < req.sequenceLength) continue; // more chunks to go
      this.admission.startRunning(req);
      if (req.spec.maxNewTokens === 0) {
        req.finishReason = { type: 'length', length: 0 };
        finished.push(req);
        continue;
      }
      const reason = this.emitToken(req, stamp);
      if (reason !== null) {
        req.finishReason = reason;
        finished.push(req);
      } else progressed.push(req);
    }
    for (const req of finished) this.complete(req, stamp);
    for (const req of progressed) if (req.state === 'running') req.sink.onTokens(req);
    for (const req of finished) if (req.state === 'done' && req.finishReason?.type !== 'abort') req.sink.onFinish(req);
  }

  private finishDecode(stamp: number): void {
    // A snapshot: a sink may abort requests (a failed write) while we notify.
    const batch = this.admission.running.slice();
    const finished: SimRequest[] = [];
    for (let i = 0; i < batch.length; i++) {
      const req = batch[i] as SimRequest;
      const reason = this.emitToken(req, stamp);
      if (reason !== null) {
        req.finishReason = reason;
        finished.push(req);
      }
    }
    this.admission.decayNewTokenRatio();
    for (const req of finished) this.complete(req, stamp);
    // Sinks run after the bookkeeping, so none of them observes a half-updated batch.
    for (let i = 0; i < batch.length; i++) {
      const req = batch[i] as SimRequest;
      if (req.state === 'running') req.sink.onTokens(req);
    }
    for (const req of finished) if (req.finishReason?.type !== 'abort') req.sink.onFinish(req);
  }

  private emitToken(req: SimRequest, stamp: number): FinishReason | null {
    const reason = req.appendToken(this.maxSequenceLength);
    if (!req.spec.internal) {
      if (req.firstTokenAt < 0) this.metrics.ttft.observe(Math.max(0, stamp - req.spec.createdAt) / 1000);
      else this.metrics.itl.observe(Math.max(0, stamp - req.lastTokenAt) / 1000);
      this.metrics.genRate.add(1, stamp);
      this.totals.generatedTokens++;
    }
    if (req.firstTokenAt < 0) req.firstTokenAt = stamp;
    req.lastTokenAt = stamp;
    return reason;
  }

  private complete(req: SimRequest, stamp: number): void {
    this.admission.remove(req);
    req.finishedAt = stamp;
    if (!req.spec.internal) {
      this.totals.finished++;
      this.totals.promptTokens += req.promptTokens;
      this.totals.cachedTokens += req.cachedTokens;
      this.metrics.e2e.observe(req.e2eLatencySec);
    }
  }
}
