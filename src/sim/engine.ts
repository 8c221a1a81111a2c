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
 * Parts: KV memory (radix cache + private slots) in kv.ts, the server's metrics and totals in
 * engine-metrics.ts, a request's own state in request.ts.
 */
import { performance } from 'node:perf_hooks';
import { Rng } from '../util/rng.js';
import type { MetricsSnapshot } from './metrics.js';
import { EngineMetrics, type EngineStats } from './engine-metrics.js';
import type { RadixCache } from './radix-cache.js';
import { KvPool } from './kv.js';
import { Deque } from '../util/deque.js';
import { SimRequest, type FinishReason, type RequestSink, type SubmitSpec } from './request.js';

export type { EngineStats } from './engine-metrics.js';
export { EOS_TOKEN_ID, SimRequest, type FinishReason, type RequestSink, type RequestState, type SubmitSpec } from './request.js';
import { slowFactorOf, type SimOptions } from './options.js';

/** SGLang's CLIP_MAX_NEW_TOKENS_ESTIMATION: output reservation per request is capped at this. */
export const CLIP_MAX_NEW_TOKENS = 4096;
/** SGLang's defaults: new_token_ratio starts at 0.7 and decays to 0.7 * 0.14 over 600 decode steps. */
const INIT_NEW_TOKEN_RATIO = 0.7;
const MIN_NEW_TOKEN_RATIO_FACTOR = 0.14;
const NEW_TOKEN_RATIO_DECAY_STEPS = 600;
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
  private readonly waiting = new Deque<SimRequest>();
  /** Live requests in the waiting deque (aborted ones are removed lazily). */
  private waitingLive = 0;
  private readonly running: SimRequest[] = [];
  /** The request whose prompt is being prefilled in chunks (counts as running). */
  private chunked: SimRequest | null = null;
  /** Requests admitted but not yet decoding: in the prefill batch in flight, or the chunked one (count as running). */
  private prefilling = 0;
  private newTokenRatio: number;
  private readonly initNewTokenRatio: number;
  private readonly minNewTokenRatio: number;
  private readonly ratioDecay: number;
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
    this.initNewTokenRatio = Math.min(INIT_NEW_TOKEN_RATIO * opts.scheduleConservativeness, 1);
    this.minNewTokenRatio = Math.min(this.initNewTokenRatio * MIN_NEW_TOKEN_RATIO_FACTOR, 1);
    this.ratioDecay = (this.initNewTokenRatio - this.minNewTokenRatio) / NEW_TOKEN_RATIO_DECAY_STEPS;
    this.newTokenRatio = this.initNewTokenRatio;
    this.maxSequenceLength = Math.min(opts.contextLength, opts.maxTotalTokens);
    this.kv = new KvPool(opts.maxTotalTokens, !opts.disableRadixCache);
    this.cache = this.kv.cache;
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
    this.waiting.pushBack(req);
    this.waitingLive++;
    this.kick();
    return req;
  }

  /** Removes a request wherever it is (client disconnect); frees its KV. No sink call. */
  abort(req: SimRequest, message = 'client disconnected'): void {
    if (req.state === 'done') return;
    const state = req.state;
    req.finishReason = { type: 'abort', message };
    if (state === 'waiting') {
      req.state = 'done';
      this.waitingLive--;
    } else if (state === 'prefilling') {
      this.prefilling--;
      this.kv.privateTokens -= req.inflight;
      req.inflight = 0;
      if (this.chunked === req) this.chunked = null;
      this.kv.release(req, req.computed);
      req.state = 'done';
    } else {
      this.removeRunning(req);
      this.kv.release(req, req.sequenceLength - 1);
      req.state = 'done';
    }
    req.finishedAt = performance.now();
    if (!req.spec.internal) this.totals.aborted++;
    if (this.isIdle()) this.newTokenRatio = this.initNewTokenRatio;
  }

  /** SGLang's flush_cache: only when nothing is queued or running. */
  flushCache(): boolean {
    if (!this.isIdle()) return false;
    this.cache.reset();
    return true;
  }

  /** Calls `cb` once, when the next step completes (health_generate's "the scheduler answered"). */
  onNextStep(cb: () => void): void {
    this.stepListeners.push(cb);
  }

  get numWaiting(): number {
    return this.waitingLive;
  }
  get numRunning(): number {
    return this.running.length + this.prefilling;
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
      waiting: this.waitingLive,
      running: this.numRunning,
      kvCapacity: this.opts.maxTotalTokens,
      kvUsedTokens: this.usedTokens,
      kvFreeTokens: this.freeTokens,
      cacheTokens: this.cache.totalSize,
      cacheLockedTokens: this.cache.lockedSize,
      cacheEvictableTokens: this.cache.evictableSize,
      privateTokens: this.kv.privateTokens,
      evictedTokens: this.cache.evictedTotal,
      newTokenRatio: this.newTokenRatio,
      totals: { ...this.totals },
    };
  }


  metricsSnapshot(): MetricsSnapshot {
    return this.metrics.snapshot({ numRunning: this.numRunning, numWaiting: this.waitingLive, usedTokens: this.usedTokens, kvCapacity: this.opts.maxTotalTokens });
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
    for (const req of this.waiting) if (req.state !== 'done') this.abort(req, 'server stopped');
    if (this.chunked !== null) this.abort(this.chunked, 'server stopped');
    while (this.running.length > 0) this.abort(this.running[this.running.length - 1] as SimRequest, 'server stopped');
    const listeners = this.stepListeners;
    this.stepListeners = [];
    for (const cb of listeners) cb();
  }

  // ---------------------------------------------------------------- the loop

  private isIdle(): boolean {
    return this.waitingLive === 0 && this.running.length === 0 && this.prefilling === 0;
  }

  private kick(): void {
    if (this.step !== null || this.stopped) return;
    this.startStep(performance.now());
  }

  private startStep(start: number): void {
    const cpu0 = performance.now();
    let step: Step | null = null;
    const prefill = this.formPrefillBatch(start);
    if (prefill !== null) {
      const extend = prefill.extend;
      const ms = this.opts.prefillBaseMs + this.opts.prefillPerTokenMs * extend;
      const begin = prefill.start;
      step = { kind: 'prefill', batch: prefill.batch, start: begin, end: begin + this.scale(ms) };
      this.totals.prefillSteps++;
      this.totals.prefillTokens += extend;
    } else if (this.running.length > 0) {
      const context = this.prepareDecode();
      const size = this.running.length;
      if (size > 0) {
        const ms = this.opts.decodeBaseMs + this.opts.decodePerSeqMs * size + (this.opts.decodePerKvTokenUs * context) / 1000;
        step = { kind: 'decode', start, end: start + this.scale(ms), size };
        this.totals.decodeSteps++;
        this.totals.decodeSeqSteps += size;
      } else if (this.waitingLive > 0) {
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

  // ---------------------------------------------------------------- prefill

  private formPrefillBatch(start: number): { batch: SimRequest[]; extend: number; start: number } | null {
    if (this.waitingLive === 0 && this.chunked === null) return null;
    const o = this.opts;
    const maxRunning = o.maxRunningRequests;
    if (this.chunked === null && this.running.length >= maxRunning) return null;
    // An idle GPU starts when the first request arrives (its arrival may be later than `start`).
    if (this.running.length === 0 && this.chunked === null) {
      const head = this.peekLive();
      if (head !== undefined && head.arrival > start) start = head.arrival;
    }
    const radix = !o.disableRadixCache;
    let remInput = o.maxPrefillTokens;
    let remChunk = o.chunkedPrefillSize === -1 ? Number.POSITIVE_INFINITY : o.chunkedPrefillSize;
    // SGLang's rem_total_tokens: free + evictable minus the expected output of the running batch.
    let reserved = 0;
    for (const r of this.running) reserved += this.outputReserve(r) * this.newTokenRatio;
    let remTotal = this.freeTokens + this.cache.evictableSize - reserved;
    const batch: SimRequest[] = [];
    let extendSum = 0;

    const chunked = this.chunked;
    if (chunked !== null) {
      const remaining = chunked.sequenceLength - chunked.computed;
      const take = Math.min(remaining, remChunk);
      if (!this.kv.allocate(take)) return null;
      chunked.inflight = take;
      this.kv.privateTokens += take;
      batch.push(chunked);
      extendSum += take;
      remInput -= take;
      remChunk -= take;
      remTotal -= remaining + this.outputReserve(chunked);
    }

    let admittedRunning = this.running.length + batch.length;
    while (this.waitingLive > 0) {
      const req = this.peekLive();
      if (req === undefined || req.arrival > start) break;
      if (admittedRunning >= maxRunning) break;
      if (remInput <= 0 || remChunk <= 0) break;
      const seqLen = req.sequenceLength;
      const seq = req.outputIds.length === 0 ? req.spec.promptIds : req.sequence(req.outputIds.length);
      // SGLang leaves at least one token to compute (its logits give the first output token).
      const match = radix ? this.cache.match(seq, seqLen - 1) : null;
      const cached = match === null ? 0 : match.length;
      const extend = seqLen - cached;
      const total = extend + this.outputReserve(req);
      if (total > remTotal) break;
      if (extend > remInput && batch.length > 0) break;
      const take = Math.min(extend, remChunk);
      if (take < extend && this.chunked !== null) break;
      if (match !== null) this.cache.lock(match.node);
      if (!this.kv.allocate(take)) {
        if (match !== null) this.cache.unlock(match.node);
        break;
      }
      this.waiting.shift();
      this.waitingLive--;
      req.state = 'prefilling';
      this.prefilling++;
      req.node = match === null ? null : match.node;
      req.computed = cached;
      req.inflight = take;
      this.kv.privateTokens += take;
      if (req.admittedAt < 0) {
        req.admittedAt = start;
        req.cachedTokens = cached;
        if (!req.spec.internal) {
          this.metrics.hitRate.add(cached, seqLen);
          this.metrics.queueTime.observe(req.queueTimeSec);
        }
      }
      if (take < extend) this.chunked = req;
      batch.push(req);
      admittedRunning++;
      extendSum += take;
      remInput -= take;
      remChunk -= take;
      remTotal -= total;
    }
    if (batch.length === 0) return null;
    return { batch, extend: extendSum, start };
  }

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
      if (this.chunked === req) this.chunked = null;
      req.state = 'running';
      this.prefilling--;
      req.runIndex = this.running.length;
      this.running.push(req);
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

  // ---------------------------------------------------------------- decode

  /** Allocates one KV slot per running request, retracting requests when KV runs out; returns the batch context. */
  private prepareDecode(): number {
    const need = this.running.length;
    if (this.freeTokens + this.cache.evictableSize < need) this.retractFor();
    const n = this.running.length;
    this.kv.allocate(n);
    let context = 0;
    for (let i = 0; i < n; i++) {
      const req = this.running[i] as SimRequest;
      req.privateTokens++;
      context += req.sequenceLength;
    }
    this.kv.privateTokens += n;
    return context;
  }

  /**
   * SGLang's retract_decode: retract the requests with the fewest output tokens (then the longest
   * prompt) first; their sequences go to the cache and they rejoin the front of the queue.
   */
  private retractFor(): void {
    const order = [...this.running].sort((a, b) => b.completionTokens - a.completionTokens || a.promptTokens - b.promptTokens);
    while (this.running.length > 0 && this.freeTokens + this.cache.evictableSize < this.running.length) {
      const victim = order.pop();
      if (victim === undefined) break;
      this.removeRunning(victim);
      this.kv.release(victim, victim.sequenceLength - 1);
      victim.state = 'waiting';
      victim.computed = 0;
      victim.retractions++;
      this.waiting.pushFront(victim);
      this.waitingLive++;
      this.totals.retractions++;
    }
    this.newTokenRatio = this.initNewTokenRatio;
  }

  /** Output tokens a request may still need: SGLang clips the estimate at CLIP_MAX_NEW_TOKENS; we also clip at capacity. */
  private outputReserve(req: SimRequest): number {
    const remaining = Math.min(req.spec.maxNewTokens - req.completionTokens, CLIP_MAX_NEW_TOKENS);
    return Math.max(0, Math.min(remaining, this.opts.maxTotalTokens - req.sequenceLength));
  }

  private finishDecode(stamp: number): void {
    // A snapshot: a sink may abort requests (a failed write) while we notify.
    const batch = this.running.slice();
    const finished: SimRequest[] = [];
    for (let i = 0; i < batch.length; i++) {
      const req = batch[i] as SimRequest;
      const reason = this.emitToken(req, stamp);
      if (reason !== null) {
        req.finishReason = reason;
        finished.push(req);
      }
    }
    if (this.newTokenRatio > this.minNewTokenRatio) this.newTokenRatio = Math.max(this.minNewTokenRatio, this.newTokenRatio - this.ratioDecay);
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
    this.removeRunning(req);
    this.kv.release(req, req.sequenceLength - 1);
    req.state = 'done';
    req.finishedAt = stamp;
    if (!req.spec.internal) {
      this.totals.finished++;
      this.totals.promptTokens += req.promptTokens;
      this.totals.cachedTokens += req.cachedTokens;
      this.metrics.e2e.observe(req.e2eLatencySec);
    }
    if (this.isIdle()) this.newTokenRatio = this.initNewTokenRatio;
  }

  private removeRunning(req: SimRequest): void {
    const i = req.runIndex;
    if (i < 0) return;
    const last = this.running.pop() as SimRequest;
    if (last !== req) {
      this.running[i] = last;
      last.runIndex = i;
    }
    req.runIndex = -1;
  }

  private peekLive(): SimRequest | undefined {
    for (;;) {
      const head = this.waiting.peek();
      if (head === undefined) return undefined;
      if (head.state !== 'done') return head;
      this.waiting.shift();
    }
  }
}
