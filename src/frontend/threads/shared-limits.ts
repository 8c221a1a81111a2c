/**
 * --max-concurrent-requests, --queue-size, --queue-timeout-secs and --rate-limit-tokens-per-second held
 * across front-end threads: the same AdmissionLimiter contract as AdmissionLimits (../admission.ts), with
 * the counts in a SharedArrayBuffer.
 *
 * - Concurrency: one Int32 of admitted requests, taken with compare-and-swap, so the limit holds globally.
 * - Queue: each thread keeps its own FIFO of waiters (callbacks and timers cannot cross threads); the
 *   number of waiters is global (the --queue-size bound holds across threads). A release first hands the
 *   slot to its own thread's oldest waiter; when other threads have waiters it bumps a wake-up word and
 *   Atomics.notify()s it; threads with waiters sleep on that word with Atomics.waitAsync and, woken,
 *   take free slots for their oldest waiters. Fairness: FIFO within a thread; across threads, a freed slot
 *   goes first to the releasing thread's waiters, then to whichever waiting thread wakes first; a newcomer
 *   never overtakes a waiter (it queues while any thread has waiters).
 * - Rate: one token bucket (tokens, last refill) behind a spin lock (a few instructions are held), with
 *   AdmissionLimits' rules: a request needs a free slot AND a token; over either it waits in the queue;
 *   the bucket holds --max-concurrent-requests tokens (one second's worth without a concurrency limit).
 *   Waiters held back by the rate look again when the next token is due.
 * - The concurrency limit and the rate (with its bucket capacity) are shared words too, so the main thread
 *   can change them for every thread at once (`setConcurrencyLimit` / `setRate`: a replica's share of a
 *   global limit, src/cluster/admission.ts). A slot taken while the limit was being lowered is given back
 *   at once (the limit is read again after the compare-and-swap).
 * - A dead thread: the main thread gives back what its ledger says it held (`reconcile`).
 * - Stats (admitted, queued, ...) are global counters in the buffer.
 */
import { SwitchyardError } from '../../errors.js';
import type { AdmissionLimitOptions, AdmissionLimitStats, AdmissionLimiter, Waiter } from '../admission.js';

const IN_USE = 0;
const WAITING = 1;
const WAKE = 2;
const LOCK = 3;
const STATS = 4; // admitted, queued, queueFull, queueTimeouts, rateLimited, cancelled
/** The concurrency limit (NO_LIMIT: none). */
const LIMIT = 10;
const NO_LIMIT = 0x7fffffff;
const STAT_NAMES = ['admitted', 'queued', 'queueFull', 'queueTimeouts', 'rateLimited', 'cancelled'] as const;
const PER_THREAD = 16; // [held, waiting] per front end from here
const S_ADMITTED = 0;
const S_QUEUED = 1;
const S_QUEUE_FULL = 2;
const S_QUEUE_TIMEOUTS = 3;
const S_RATE_LIMITED = 4;
const S_CANCELLED = 5;

/** A missed wake-up costs at most this long: waiters re-check the shared count this often. */
const RECHECK_MS = 50;

const enum Blocked {
  No = 0,
  Slot = 1,
  Token = 2,
}

type WaitAsync = (a: Int32Array, index: number, value: number, timeoutMs?: number) => { async: false; value: string } | { async: true; value: Promise<string> };
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;

export interface SharedLimitsState {
  readonly buffer: SharedArrayBuffer;
  readonly frontends: number;
}

interface QueueEntry extends Waiter {
  cb: (err: SwitchyardError | null) => void;
  timer: NodeJS.Timeout | undefined;
  settled: boolean;
}

/** AdmissionLimits' bucket capacity: --max-concurrent-requests when set (sgl-router), else one second's worth. */
function burstOf(options: Pick<AdmissionLimitOptions, 'maxConcurrent' | 'rateBurst'>, rate: number): number {
  const defaultBurst = options.maxConcurrent > 0 ? options.maxConcurrent : rate;
  return Math.max(1, options.rateBurst ?? defaultBurst);
}

function floatsOffset(frontends: number): number {
  // Int32 words before the Float64 pair, rounded up to 8-byte alignment.
  const words = PER_THREAD + frontends * 2;
  return Math.ceil((words * 4) / 8) * 8;
}

/** Float64 words: tokens, last refill (ms), rate per second, bucket capacity. */
const FLOATS = 4;

/** The shared words for `frontends` front ends; the bucket starts full (created once, by the main thread). */
export function createSharedLimitsState(frontends: number, options: Pick<AdmissionLimitOptions, 'maxConcurrent' | 'ratePerSecond' | 'rateBurst' | 'now'>): SharedLimitsState {
  const buffer = new SharedArrayBuffer(floatsOffset(frontends) + FLOATS * 8);
  const a = new Int32Array(buffer, 0, PER_THREAD + frontends * 2);
  a[LIMIT] = options.maxConcurrent > 0 ? options.maxConcurrent : NO_LIMIT;
  const f = new Float64Array(buffer, floatsOffset(frontends), FLOATS);
  const rate = options.ratePerSecond !== undefined && options.ratePerSecond > 0 ? options.ratePerSecond : 0;
  f[0] = rate > 0 ? burstOf(options as AdmissionLimitOptions, rate) : 0;
  f[1] = (options.now ?? Date.now)();
  f[2] = rate;
  f[3] = rate > 0 ? burstOf(options as AdmissionLimitOptions, rate) : 0;
  return { buffer, frontends };
}

export class SharedAdmissionLimits implements AdmissionLimiter {
  private readonly a: Int32Array;
  private readonly f: Float64Array;
  private readonly held: number;
  private readonly waitingHere: number;
  private readonly queue: QueueEntry[] = [];
  private head = 0;
  /** Live waiters of this thread. */
  private localWaiting = 0;
  private sleeping = false;
  /** Whether a concurrency / rate limit is configured at all (their values are the shared words). */
  private readonly limited: boolean;
  private readonly rated: boolean;
  private readonly now: () => number;

  constructor(
    state: SharedLimitsState,
    index: number,
    private readonly options: AdmissionLimitOptions,
  ) {
    this.a = new Int32Array(state.buffer, 0, PER_THREAD + state.frontends * 2);
    this.f = new Float64Array(state.buffer, floatsOffset(state.frontends), FLOATS);
    this.held = PER_THREAD + index * 2;
    this.waitingHere = this.held + 1;
    this.limited = options.maxConcurrent > 0;
    this.rated = options.ratePerSecond !== undefined && options.ratePerSecond > 0;
    this.now = options.now ?? Date.now;
  }

  get unlimited(): boolean {
    return !this.limited && !this.rated;
  }

  /** The concurrency limit now (Infinity: none). */
  private get limit(): number {
    const l = Atomics.load(this.a, LIMIT);
    return l === NO_LIMIT ? Infinity : l;
  }

  /** The rate now (0: none). */
  private get rate(): number {
    return this.rated ? (this.f[2] as number) : 0;
  }

  setConcurrencyLimit(limit: number): void {
    if (!this.limited) return;
    Atomics.store(this.a, LIMIT, Math.min(NO_LIMIT - 1, Math.max(0, Math.floor(limit))));
    this.wakeAll();
  }

  setRate(perSecond: number, burst: number): void {
    if (!this.rated || !(perSecond > 0)) return;
    this.withBucket(() => {
      const f = this.f;
      this.refillLocked();
      f[2] = perSecond;
      f[3] = Math.max(1, burst);
      if ((f[0] as number) > (f[3] as number)) f[0] = f[3] as number;
    });
    this.wakeAll();
  }

  /** Limits changed: this thread's waiters look now, the other threads' when woken. */
  private wakeAll(): void {
    this.admitWaiters();
    Atomics.add(this.a, WAKE, 1);
    Atomics.notify(this.a, WAKE);
  }

  get active(): number {
    return Atomics.load(this.a, IN_USE);
  }

  get queued(): number {
    return Atomics.load(this.a, WAITING);
  }

  get stats(): AdmissionLimitStats {
    const s = {} as Record<(typeof STAT_NAMES)[number], number>;
    STAT_NAMES.forEach((name, i) => (s[name] = Atomics.load(this.a, STATS + i)));
    return s;
  }

  acquire(cb: (err: SwitchyardError | null) => void): null | SwitchyardError | Waiter {
    // A newcomer never overtakes a waiter, whichever thread it waits in.
    if (Atomics.load(this.a, WAITING) === 0 && this.admitOne() === Blocked.No) {
      this.count(S_ADMITTED);
      return null;
    }
    const before = Atomics.add(this.a, WAITING, 1);
    if (before >= this.options.queueSize || this.options.queueTimeoutMs <= 0) {
      Atomics.sub(this.a, WAITING, 1);
      if (before === 0 && this.active < this.limit) {
        this.count(S_RATE_LIMITED);
        return new SwitchyardError('rate_limited', `rate limit of ${this.rate} requests per second exceeded`, { details: { retry_after_ms: this.msToNextToken() } });
      }
      this.count(S_QUEUE_FULL);
      return new SwitchyardError('queue_full', `${this.active} requests in flight (limit ${this.limit}) and ${before} waiting (queue size ${this.options.queueSize})`);
    }
    Atomics.add(this.a, this.waitingHere, 1);
    const entry: QueueEntry = { enqueuedAt: this.now(), cb, timer: undefined, settled: false };
    entry.timer = setTimeout(() => this.expire(entry), this.options.queueTimeoutMs);
    this.queue.push(entry);
    this.localWaiting++;
    this.count(S_QUEUED);
    this.wakeSoon();
    return entry;
  }

  cancel(waiter: Waiter): void {
    const entry = waiter as QueueEntry;
    if (entry.settled) return;
    this.settle(entry);
    this.count(S_CANCELLED);
    this.compact();
  }

  release(): void {
    if (decrementIfPositive(this.a, IN_USE)) decrementIfPositive(this.a, this.held);
    this.admitWaiters();
    // Other threads' waiters: wake them to take what is left.
    if (Atomics.load(this.a, WAITING) > this.localWaiting) {
      Atomics.add(this.a, WAKE, 1);
      Atomics.notify(this.a, WAKE);
    }
  }

  drain(err: SwitchyardError): void {
    while (this.head < this.queue.length) {
      const entry = this.queue[this.head]!;
      this.head++;
      if (entry.settled) continue;
      this.settle(entry);
      entry.cb(err);
    }
    this.compact();
  }

  /** Admit this thread's oldest live waiters while slots (and tokens) are free; says what stopped it. */
  private admitWaiters(): Blocked {
    let blocked = Blocked.No;
    while (this.head < this.queue.length) {
      const entry = this.queue[this.head]!;
      if (entry.settled) {
        this.queue[this.head] = undefined as unknown as QueueEntry;
        this.head++;
        continue;
      }
      blocked = this.admitOne();
      if (blocked !== Blocked.No) break;
      this.queue[this.head] = undefined as unknown as QueueEntry;
      this.head++;
      this.settle(entry);
      this.count(S_ADMITTED);
      entry.cb(null);
    }
    this.compact();
    return blocked;
  }

  /**
   * Look for free slots for this thread's waiters now, then sleep on the wake-up word (at most RECHECK_MS)
   * and look again, while this thread has waiters. The word is read BEFORE looking, so a release between
   * the look and the sleep makes the sleep return at once.
   */
  private readonly lookThenSleep = (): void => {
    this.sleeping = false;
    if (this.localWaiting === 0) return;
    const seen = Atomics.load(this.a, WAKE);
    const blocked = this.admitWaiters();
    if (this.localWaiting === 0) return;
    this.sleeping = true;
    // Held back by the rate: the next token is due at a known time (no release will announce it).
    const r = waitAsync(this.a, WAKE, seen, blocked === Blocked.Token ? Math.min(RECHECK_MS, this.msToNextToken()) : RECHECK_MS);
    if (r.async) void r.value.then(this.lookThenSleep);
    else setImmediate(this.lookThenSleep); // the word moved since we read it: look again on the next turn
  };

  /** A waiter was queued: start looking on the next turn (never admit inside acquire). */
  private wakeSoon(): void {
    if (this.sleeping) return;
    this.sleeping = true;
    setImmediate(this.lookThenSleep);
  }

  private expire(entry: QueueEntry): void {
    if (entry.settled) return;
    entry.timer = undefined;
    this.settle(entry);
    this.count(S_QUEUE_TIMEOUTS);
    entry.cb(new SwitchyardError('queue_timeout', `waited ${this.options.queueTimeoutMs} ms in the admission queue without a free slot`));
    this.compact();
  }

  private settle(entry: QueueEntry): void {
    entry.settled = true;
    if (entry.timer !== undefined) clearTimeout(entry.timer);
    entry.timer = undefined;
    this.localWaiting--;
    Atomics.sub(this.a, WAITING, 1);
    Atomics.sub(this.a, this.waitingHere, 1);
  }

  /** Take a slot (if the global count is under the limit) and a token (if rate-limited), or neither. */
  private admitOne(): Blocked {
    const a = this.a;
    const limit = this.limit;
    for (;;) {
      const cur = Atomics.load(a, IN_USE);
      if (cur >= limit) return Blocked.Slot;
      if (Atomics.compareExchange(a, IN_USE, cur, cur + 1) === cur) {
        // The limit was lowered meanwhile (the main thread then reads IN_USE): give the slot back.
        if (cur + 1 > this.limit) {
          decrementIfPositive(a, IN_USE);
          return Blocked.Slot;
        }
        break;
      }
    }
    if (this.rate > 0 && !this.takeToken()) {
      decrementIfPositive(a, IN_USE);
      return Blocked.Token;
    }
    Atomics.add(a, this.held, 1);
    return Blocked.No;
  }

  /** Time until the bucket holds a whole token again (at least 1 ms). */
  private msToNextToken(): number {
    return Math.max(1, Math.ceil(((1 - (this.f[0] as number)) * 1000) / this.rate));
  }

  private count(stat: number): void {
    Atomics.add(this.a, STATS + stat, 1);
  }

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

  private takeToken(): boolean {
    return this.withBucket(() => {
      const f = this.f;
      this.refillLocked();
      if ((f[0] as number) >= 1) {
        f[0] = (f[0] as number) - 1;
        return true;
      }
      return false;
    });
  }

  /** Refill at the current rate up to now; the caller holds the bucket lock. */
  private refillLocked(): void {
    const f = this.f;
    const t = this.now();
    const elapsed = t - (f[1] as number);
    if (elapsed > 0) {
      f[0] = Math.min(f[3] as number, (f[0] as number) + (elapsed * (f[2] as number)) / 1000);
      f[1] = t;
    }
  }

  private withBucket<T>(fn: () => T): T {
    const a = this.a;
    while (Atomics.compareExchange(a, LOCK, 0, 1) !== 0) {
      // another thread holds the bucket for a few instructions
    }
    try {
      return fn();
    } finally {
      Atomics.store(a, LOCK, 0);
    }
  }
}

/**
 * Front end `index` died: give back the slots it held and forget its waiters (their clients' connections
 * closed with it), then wake the other threads' waiters. Returns the slots given back.
 */
export function reconcileLimits(state: SharedLimitsState, index: number): number {
  const a = new Int32Array(state.buffer, 0, PER_THREAD + state.frontends * 2);
  const held = Atomics.exchange(a, PER_THREAD + index * 2, 0);
  const waiting = Atomics.exchange(a, PER_THREAD + index * 2 + 1, 0);
  if (held > 0) Atomics.sub(a, IN_USE, held);
  if (waiting > 0) Atomics.sub(a, WAITING, waiting);
  Atomics.add(a, WAKE, 1);
  Atomics.notify(a, WAKE);
  return held;
}

function decrementIfPositive(a: Int32Array, index: number): boolean {
  for (;;) {
    const cur = Atomics.load(a, index);
    if (cur <= 0) return false;
    if (Atomics.compareExchange(a, index, cur, cur - 1) === cur) return true;
  }
}
