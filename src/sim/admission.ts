/**
 * Which requests a simulated server runs: the waiting queue, the running batch and the request whose
 * prompt is prefilled in chunks; admission into a prefill batch under the token budgets and the KV
 * reservation (SGLang's PrefillAdder), and retraction when a decode step runs out of KV (retract_decode),
 * with the new_token_ratio that sizes the reservation.
 *
 * Kept apart from the step loop (engine.ts), which decides when a step runs and applies its effects
 * (tokens, finishes): this file owns the queue and memory accounting those steps are formed from.
 */
import type { EngineMetrics, EngineStats } from './engine-metrics.js';
import type { KvPool } from './kv.js';
import type { RadixCache } from './radix-cache.js';
import type { SimRequest } from './request.js';
import type { SimOptions } from './options.js';
import { Deque } from '../util/deque.js';

/** SGLang's CLIP_MAX_NEW_TOKENS_ESTIMATION: output reservation per request is capped at this. */
const CLIP_MAX_NEW_TOKENS = 4096;
/** SGLang's defaults: new_token_ratio starts at 0.7 and decays to 0.7 * 0.14 over 600 decode steps. */
const INIT_NEW_TOKEN_RATIO = 0.7;
const MIN_NEW_TOKEN_RATIO_FACTOR = 0.14;
const NEW_TOKEN_RATIO_DECAY_STEPS = 600;

export class Admission {
  /** Decoding requests (req.runIndex is the position); changed only here, read by the step loop. */
  readonly running: SimRequest[] = [];
  /** SGLang's new_token_ratio: the share of their remaining output the running requests reserve. */
  newTokenRatio: number;
  private readonly cache: RadixCache;
  private readonly totals: EngineStats['totals'];
  private readonly waiting = new Deque<SimRequest>();
  /** Live requests in the waiting deque (aborted ones are removed lazily). */
  private waitingLive = 0;
  /** The request whose prompt is being prefilled in chunks (counts as running). */
  private chunked: SimRequest | null = null;
  /** Requests admitted but not yet decoding: in the prefill batch in flight, or the chunked one (count as running). */
  private prefilling = 0;
  private readonly initNewTokenRatio: number;
  private readonly minNewTokenRatio: number;
  private readonly ratioDecay: number;

  constructor(
    private readonly opts: SimOptions,
    private readonly kv: KvPool,
    private readonly metrics: EngineMetrics,
  ) {
    this.cache = kv.cache;
    this.totals = metrics.totals;
    this.initNewTokenRatio = Math.min(INIT_NEW_TOKEN_RATIO * opts.scheduleConservativeness, 1);
    this.minNewTokenRatio = Math.min(this.initNewTokenRatio * MIN_NEW_TOKEN_RATIO_FACTOR, 1);
    this.ratioDecay = (this.initNewTokenRatio - this.minNewTokenRatio) / NEW_TOKEN_RATIO_DECAY_STEPS;
    this.newTokenRatio = this.initNewTokenRatio;
  }

  get numWaiting(): number {
    return this.waitingLive;
  }
  get numRunning(): number {
    return this.running.length + this.prefilling;
  }

  isIdle(): boolean {
    return this.waitingLive === 0 && this.running.length === 0 && this.prefilling === 0;
  }

  enqueue(req: SimRequest): void {
    this.waiting.pushBack(req);
    this.waitingLive++;
  }

  /**
   * Takes a request out wherever it is (a running one that finished, or any one on abort) and frees its
   * KV, caching what it computed; it ends 'done'.
   */
  remove(req: SimRequest): void {
    const state = req.state;
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
    this.resetRatioIfIdle();
  }

  /** Passes every request held to `abort` (which removes it): waiting, then chunked, then running. */
  abortAll(abort: (req: SimRequest) => void): void {
    for (const req of this.waiting) if (req.state !== 'done') abort(req);
    if (this.chunked !== null) abort(this.chunked);
    while (this.running.length > 0) abort(this.running[this.running.length - 1] as SimRequest);
  }

  /** Its prompt is fully prefilled: the request joins the running batch. */
  startRunning(req: SimRequest): void {
    if (this.chunked === req) this.chunked = null;
    req.state = 'running';
    this.prefilling--;
    req.runIndex = this.running.length;
    this.running.push(req);
  }

  decayNewTokenRatio(): void {
    if (this.newTokenRatio > this.minNewTokenRatio) this.newTokenRatio = Math.max(this.minNewTokenRatio, this.newTokenRatio - this.ratioDecay);
  }

  // ---------------------------------------------------------------- prefill admission

  formPrefillBatch(start: number): { batch: SimRequest[]; extend: number; start: number } | null {
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
    let remTotal = this.kv.free + this.cache.evictableSize - reserved;
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

  // ---------------------------------------------------------------- decode memory and retraction

  /** Allocates one KV slot per running request, retracting requests when KV runs out; returns the batch context. */
  prepareDecode(): number {
    const need = this.running.length;
    if (this.kv.free + this.cache.evictableSize < need) this.retractFor();
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
    while (this.running.length > 0 && this.kv.free + this.cache.evictableSize < this.running.length) {
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

  private resetRatioIfIdle(): void {
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
