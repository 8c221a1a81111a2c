/**
 * Front-end admission limits (sgl-router's flags): a concurrency limit and a token-bucket request rate
 * limit sharing one bounded FIFO wait queue (--max-concurrent-requests, --rate-limit-tokens-per-second,
 * --queue-size, --queue-timeout-secs). A request over either limit waits in the queue: 429 queue_full when
 * the queue is full, 408 queue_timeout after waiting too long; with no queue (--queue-size 0) it is
 * refused at once (429 queue_full, or 429 rate_limited when the rate was the limit).
 *
 * The rate limit, as sgl-router's TokenBucket: tokens are requests (one per admitted request), refilled
 * continuously at R per second up to a capacity of --max-concurrent-requests (sgl-router's bucket
 * capacity), or of one second's worth when there is no concurrency limit. Unlike sgl-router a finished
 * request does not return its token (there that turns the rate into slack on the concurrency limit);
 * concurrency is the strict semaphore here, and the rate is a rate. See docs/reliability.md.
 *
 * Main thread only. A queued waiter costs one small object and one timer; a cancelled waiter (the client
 * went away) is skipped lazily when its turn comes, so cancel is O(1). Waiters held back only by the rate
 * are woken by one timer set for the next token.
 */
import { SwitchyardError } from '../errors.js';

export interface AdmissionLimitOptions {
  /** Requests admitted at once; -1 (or 0) = no limit. */
  maxConcurrent: number;
  /** Requests that may wait for a slot; beyond: 429 queue_full. */
  queueSize: number;
  /** Longest wait in the queue (ms); after: 408 queue_timeout. */
  queueTimeoutMs: number;
  /** Requests per second refilled into the bucket; undefined or <= 0 = no rate limit. */
  ratePerSecond?: number | undefined;
  /** Bucket capacity (burst); default: maxConcurrent when set (sgl-router), else one second's worth (at least 1). */
  rateBurst?: number | undefined;
  /** Clock in ms (tests). */
  now?: () => number;
}

export interface AdmissionLimitStats {
  admitted: number;
  queued: number;
  queueFull: number;
  queueTimeouts: number;
  rateLimited: number;
  cancelled: number;
}

/** A request waiting in the queue; pass to `cancel` when its client goes away. */
export interface Waiter {
  readonly enqueuedAt: number;
}

interface QueueEntry extends Waiter {
  cb: (err: SwitchyardError | null) => void;
  timer: NodeJS.Timeout | undefined;
  settled: boolean;
}

/**
 * What the data path uses of an admission limiter. AdmissionLimits is the one-thread implementation;
 * src/frontend/threads/shared-limits.ts holds the limit across front-end threads in shared memory.
 */
export interface AdmissionLimiter {
  /** True when neither a concurrency limit nor a rate limit is configured. */
  readonly unlimited: boolean;
  /** Admitted and not yet released. */
  readonly active: number;
  /** Waiting in the queue. */
  readonly queued: number;
  readonly stats: AdmissionLimitStats;
  /**
   * Ask to be admitted. Returns null when admitted at once (call `release` when the request ends), a
   * SwitchyardError when refused at once, or a Waiter: `cb` is called later with null (admitted: release
   * later) or queue_timeout. A waiter whose client leaves must be cancelled.
   */
  acquire(cb: (err: SwitchyardError | null) => void): null | SwitchyardError | Waiter;
  /** The client of a queued request went away: it leaves the queue; its callback is never called. */
  cancel(waiter: Waiter): void;
  /** An admitted request ended: its slot goes to the oldest live waiter. */
  release(): void;
  /** Refuse every waiter (shutdown). */
  drain(err: SwitchyardError): void;
  /**
   * Replace the concurrency limit (a replica's share of a global limit, src/cluster/admission.ts). A
   * raised limit admits waiters at once; a lowered one admits nobody until enough requests end (those
   * already admitted keep running). Only for a limiter built with a concurrency limit.
   */
  setConcurrencyLimit(limit: number): void;
  /**
   * Replace the token rate and bucket capacity (a replica's share of a global rate). The bucket is
   * refilled at the old rate up to now first; tokens above the new capacity are dropped. Only for a
   * limiter built with a rate limit; `perSecond` must be > 0.
   */
  setRate(perSecond: number, burst: number): void;
}

export class AdmissionLimits implements AdmissionLimiter {
  readonly stats: AdmissionLimitStats = { admitted: 0, queued: 0, queueFull: 0, queueTimeouts: 0, rateLimited: 0, cancelled: 0 };
  /** Admitted and not yet released. */
  private inUse = 0;
  private readonly queue: QueueEntry[] = [];
  private head = 0;
  /** Live (not cancelled, not timed out) waiters. */
  private waiting = 0;
  private limit: number;
  private rate: number;
  private burst: number;
  private tokens: number;
  private refilledAt: number;
  /** Wakes the queue when the next token is due (only while the head waiter waits for a token). */
  private refillTimer: NodeJS.Timeout | undefined;
  private readonly now: () => number;

  constructor(private readonly options: AdmissionLimitOptions) {
    this.limit = options.maxConcurrent > 0 ? options.maxConcurrent : Infinity;
    this.rate = options.ratePerSecond !== undefined && options.ratePerSecond > 0 ? options.ratePerSecond : 0;
    const defaultBurst = options.maxConcurrent > 0 ? options.maxConcurrent : this.rate;
    this.burst = this.rate > 0 ? Math.max(1, options.rateBurst ?? defaultBurst) : 0;
    this.tokens = this.burst;
    this.now = options.now ?? Date.now;
    this.refilledAt = this.now();
  }

  /** True when neither a concurrency limit nor a rate limit is configured. */
  get unlimited(): boolean {
    return this.limit === Infinity && this.rate === 0;
  }

  get active(): number {
    return this.inUse;
  }

  get queued(): number {
    return this.waiting;
  }

  /**
   * Ask to be admitted. Returns null when admitted at once (call `release` when the request ends), a
   * SwitchyardError when refused at once, or a Waiter: `cb` is called later with null (admitted: release
   * later) or queue_timeout. A waiter whose client leaves must be cancelled.
   */
  acquire(cb: (err: SwitchyardError | null) => void): null | SwitchyardError | Waiter {
    // First come, first served: nobody passes a waiter. A token is taken only when admitting.
    const slotFree = this.inUse < this.limit;
    if (this.waiting === 0 && slotFree && (this.rate === 0 || this.takeToken())) {
      this.inUse++;
      this.stats.admitted++;
      return null;
    }
    if (this.waiting >= this.options.queueSize || this.options.queueTimeoutMs <= 0) {
      if (this.waiting === 0 && slotFree) {
        this.stats.rateLimited++;
        return new SwitchyardError('rate_limited', `rate limit of ${this.rate} requests per second exceeded`, { details: { retry_after_ms: this.msToNextToken() } });
      }
      this.stats.queueFull++;
      return new SwitchyardError('queue_full', `${this.inUse} requests in flight (limit ${this.limit}) and ${this.waiting} waiting (queue size ${this.options.queueSize})`);
    }
    const entry: QueueEntry = { enqueuedAt: this.now(), cb, timer: undefined, settled: false };
    entry.timer = setTimeout(() => this.expire(entry), this.options.queueTimeoutMs);
    this.queue.push(entry);
    this.waiting++;
    this.stats.queued++;
    if (this.waiting === 1 && slotFree) this.scheduleRefill(); // held back by the rate only
    return entry;
  }

  /** The client of a queued request went away: it leaves the queue; its callback is never called. */
  cancel(waiter: Waiter): void {
    const entry = waiter as QueueEntry;
    if (entry.settled) return;
    entry.settled = true;
    if (entry.timer !== undefined) clearTimeout(entry.timer);
    this.waiting--;
    this.stats.cancelled++;
    this.compact();
  }

  /** An admitted request ended: its slot goes to the oldest live waiter (once it has a token). */
  release(): void {
    if (this.inUse > 0) this.inUse--;
    this.pump();
  }

  /** Admit waiters in order while a slot and a token are free; else wait for a release or the next token. */
  private pump(): void {
    while (this.inUse < this.limit && this.head < this.queue.length) {
      const entry = this.queue[this.head]!;
      if (entry.settled) {
        this.queue[this.head] = undefined as unknown as QueueEntry;
        this.head++;
        continue;
      }
      if (this.rate > 0 && !this.takeToken()) {
        this.scheduleRefill();
        break;
      }
      this.queue[this.head] = undefined as unknown as QueueEntry;
      this.head++;
      entry.settled = true;
      if (entry.timer !== undefined) clearTimeout(entry.timer);
      this.waiting--;
      this.inUse++;
      this.stats.admitted++;
      entry.cb(null);
    }
    this.compact();
  }

  private scheduleRefill(): void {
    if (this.refillTimer !== undefined) return;
    this.refillTimer = setTimeout(() => {
      this.refillTimer = undefined;
      this.pump();
    }, this.msToNextToken());
    // The waiters' own timeouts keep the process alive; this timer alone must not.
    this.refillTimer.unref();
  }

  /** Time until the bucket holds a whole token again (at least 1 ms). */
  private msToNextToken(): number {
    return Math.max(1, Math.ceil(((1 - this.tokens) * 1000) / this.rate));
  }

  setConcurrencyLimit(limit: number): void {
    if (this.options.maxConcurrent <= 0) return;
    this.limit = Math.max(0, Math.floor(limit));
    this.pump();
  }

  setRate(perSecond: number, burst: number): void {
    if (this.rate === 0 || !(perSecond > 0)) return;
    this.refill();
    this.rate = perSecond;
    this.burst = Math.max(1, burst);
    if (this.tokens > this.burst) this.tokens = this.burst;
    // A waiter held back by the rate waits for a token due at the new rate.
    if (this.refillTimer !== undefined) {
      clearTimeout(this.refillTimer);
      this.refillTimer = undefined;
    }
    this.pump();
  }

  /** Refuse every waiter (shutdown). */
  drain(err: SwitchyardError): void {
    if (this.refillTimer !== undefined) {
      clearTimeout(this.refillTimer);
      this.refillTimer = undefined;
    }
    while (this.head < this.queue.length) {
      const entry = this.queue[this.head]!;
      this.head++;
      if (entry.settled) continue;
      entry.settled = true;
      if (entry.timer !== undefined) clearTimeout(entry.timer);
      this.waiting--;
      entry.cb(err);
    }
    this.compact();
  }

  private expire(entry: QueueEntry): void {
    if (entry.settled) return;
    entry.settled = true;
    entry.timer = undefined;
    this.waiting--;
    this.stats.queueTimeouts++;
    entry.cb(new SwitchyardError('queue_timeout', `waited ${this.options.queueTimeoutMs} ms in the admission queue without a free slot`));
    this.compact();
  }

  /** Drop the consumed prefix once it dominates (amortised O(1)); skip leading settled entries. */
  private compact(): void {
    while (this.head < this.queue.length && this.queue[this.head]!.settled) this.head++;
    if (this.head === this.queue.length) {
      this.queue.length = 0;
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
  }

  private refill(): void {
    const t = this.now();
    const elapsed = t - this.refilledAt;
    if (elapsed > 0) {
      this.tokens = Math.min(this.burst, this.tokens + (elapsed * this.rate) / 1000);
      this.refilledAt = t;
    }
  }

  private takeToken(): boolean {
    this.refill();
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return true;
    }
    return false;
  }
}
