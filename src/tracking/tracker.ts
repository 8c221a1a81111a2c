/**
 * The request tracker, front-end side: a CompletionSink (one record per finished request) and the
 * RequestProgressHook (decided -> pending, first byte of a stream -> streaming) in one object, feeding the
 * tracker actor (tracker-actor.ts, one piscina thread that owns the trace store and the trace log).
 *
 * Cost on the hot path: each event appends its numbers to a Float64Array and its few per-request strings to
 * a list (events.ts); the first event after a hand-over starts a short timer (handoverMs, 50 ms) at whose
 * end the whole batch goes to the actor as ONE message: at most one crossing per few milliseconds (never
 * more than one per event-loop turn), whatever the number of requests or tokens. No object per event, no
 * closure per request.
 *
 * Read-your-writes: a query first hands over whatever events are still buffered, then goes through the
 * same mailbox. The completion of a request is buffered in the same synchronous call that ends its
 * response, so a client that got its response and then asks for its trace always finds it final.
 */
import { mkdirSync, accessSync, constants as fsConstants } from 'node:fs';
import { Actor, type ActorTuning } from '../actors/actor.js';
import type { CompletionRecord, CompletionSink } from '../proxy/completion.js';
import type { RequestProgressHook, RequestProgressView } from '../frontend/context.js';
import type { Logger } from '../util/log.js';
import { EventWriter } from './events.js';
import type { TrackerInit, TrackerMessage, TrackerReplies } from './protocol.js';
import type { FinishedTraces, TraceLogStats, TraceQuery, TraceStats, TrackerConfig } from './types.js';
import { transferable } from '../util/typed-copy.js';
import { StartupError } from '../errors.js';

/**
 * Where the traces API looks for what this replica does not hold: the shared traces in Redis
 * (src/cluster/traces-redis.ts, --redis-url). Each method gets the local answer and returns the answer to
 * send; it never throws and never waits long (Redis down: the local answer as is).
 */
export interface SharedTraceSource {
  /** A trace not held here: its JSON, or null. */
  get(requestId: string): Promise<string | null>;
  /** `localJson`: the JSON array of the ids found here; the result: every known one, in request order. */
  batch(requestIds: readonly string[], localJson: string): Promise<string>;
  list(q: TraceQuery, localJson: string): Promise<string>;
  stats(local: TraceStats): Promise<TraceStats>;
  /** The tracker is closing: take (and write) the last finished traces first. Bounded in time. */
  beforeClose?(): Promise<void>;
}

export interface RequestTrackerOptions extends TrackerConfig {
  /**
   * Events of this many milliseconds travel together (default 50, at most half of flushMs). Each
   * crossing costs a postMessage, an answer, and a wake-up of the actor's thread whose caches went cold
   * meanwhile, whatever it carries: ~150-200 us of the tracker thread's CPU per crossing here, measured
   * at 500 req/s; at 14k req/s the thread spent 1.4-2.0 us per request with 50 ms batches against
   * 2.1-2.9 us with 20 ms ones (docs/tracing.md). Queries are not delayed by it (they hand over first),
   * and the trace log's flush interval is shortened by it, so kill -9 still loses at most flushMs.
   * 0: one crossing per event-loop turn.
   */
  readonly handoverMs?: number | undefined;
  readonly logger?: Logger | undefined;
  readonly actor?: ActorTuning | undefined;
}

const DEFAULT_HANDOVER_MS = 50;
/** Numbers buffered (~30 per request) beyond which events cross at once, before the timer: ~1,000 requests. */
const MAX_BATCH_NUMBERS = 32_768;
/** Decisions held back (see `held`) beyond which events cross at once: they are written then. */
const MAX_HELD = 1024;

type HoldableView = RequestProgressView & { traceHold: number };

/**
 * The hand-over interval for a log flushed every `flushMs`: the default, within half of flushMs (the log
 * then flushes every flushMs minus it: with the default 100 ms, both every 50 ms).
 */
export function handoverFor(flushMs: number, requested?: number): number {
  if (requested !== undefined) return requested;
  return Math.max(0, Math.min(DEFAULT_HANDOVER_MS, Math.floor(flushMs / 2)));
}

export class RequestTracker implements CompletionSink, RequestProgressHook {
  readonly actor: Actor<TrackerMessage, TrackerReplies, TrackerInit>;
  readonly config: TrackerConfig;
  private readonly policy: string;
  private readonly events = new EventWriter();
  /**
   * Decided requests whose DECIDED event is not written yet. Most requests end within the hand-over that
   * saw them decided (small JSON answers take milliseconds), and then one FINISHED event carries the
   * decision with the outcome: one event, one id and one store update instead of two each, on both
   * threads. Those still in flight at the hand-over (or whose first byte arrives) are written as DECIDED
   * then, so what the tracker sees is the same, only sooner or later within the hand-over.
   *
   * A held request is found by the mark on its state object (`traceHold`, copied into its completion
   * record): holdBase + its index here; marks below holdBase are from earlier hand-overs. A Map by request
   * id cost the front end ~1 us per request (profile: hashing fresh id strings, table growth, garbage).
   */
  private held: (HoldableView | null)[] = [];
  private holdBase = 1;
  private scheduled = false;
  private readonly handoverMs: number;
  private timer: NodeJS.Timeout | undefined;
  private readonly flushBound = (): void => this.handOver();
  private closing: Promise<void> | undefined;
  private shared: SharedTraceSource | undefined;
  /** Completion records seen (the shared-traces part drains the actor only when this moved). */
  finishedSeen = 0;

  constructor(options: RequestTrackerOptions) {
    this.config = {
      policy: options.policy,
      maxEntries: options.maxEntries,
      ttlSeconds: options.ttlSeconds,
      logDir: options.logDir,
      logMaxBytes: options.logMaxBytes,
      logMaxFiles: options.logMaxFiles,
      flushMs: options.flushMs,
      shareQueueMax: options.shareQueueMax,
    };
    this.policy = options.policy;
    this.handoverMs = handoverFor(options.flushMs, options.handoverMs);
    // An event waits up to handoverMs here, then up to the log's flush interval there: together flushMs.
    const config: TrackerConfig = { ...this.config, flushMs: Math.max(1, options.flushMs - this.handoverMs) };
    this.actor = new Actor<TrackerMessage, TrackerReplies, TrackerInit>({
      // A thread that owns timers (flush, expiry) needs its event loop running: the runtime's default
      // atomics 'disabled' with the port transport gives that.
      ...options.actor,
      name: 'tracker',
      filename: new URL('./tracker-actor.js', import.meta.url),
      // Called at every (re)start: a new thread gets the whole string dictionary the events refer to.
      init: () => ({ config, dictionary: this.events.dictionary.slice() }),
      logger: options.logger,
    });
  }

  // ---------------------------------------------------------------------------------------------
  // hot path

  decided(v: RequestProgressView): void {
    if (v.traceHold === undefined) this.events.decided(v, this.policy); // a view made for this event only
    // Not held yet (a retry of a held request is written with its latest state, once).
    else if (v.traceHold < this.holdBase) {
      (v as HoldableView).traceHold = this.holdBase + this.held.length;
      this.held.push(v as HoldableView);
    }
    this.schedule();
  }

  firstByte(v: RequestProgressView, at: number): void {
    const mark = v.traceHold;
    if (mark !== undefined && mark >= this.holdBase) {
      this.held[mark - this.holdBase] = null;
      (v as HoldableView).traceHold = 0;
      this.events.decided(v, this.policy); // the trace must exist before it can be streaming
    }
    this.events.firstByte(v, at);
    this.schedule();
  }

  record(rec: CompletionRecord): void {
    this.finishedSeen++;
    const mark = rec.traceHold;
    if (mark !== undefined && mark >= this.holdBase) {
      this.held[mark - this.holdBase] = null;
      this.events.finished(rec, true);
    } else this.events.finished(rec, false);
    this.schedule();
  }

  private schedule(): void {
    // A burst does not grow one crossing without bound (memory, and the actor's work per wake-up).
    if (this.events.numbers >= MAX_BATCH_NUMBERS || this.held.length >= MAX_HELD) {
      this.handOver();
      return;
    }
    if (this.scheduled) return;
    this.scheduled = true;
    if (this.handoverMs > 0) this.timer = setTimeout(this.flushBound, this.handoverMs);
    else setImmediate(this.flushBound);
  }

  /** Hand the buffered events to the actor now (one message). */
  private handOver(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.scheduled = false;
    if (this.held.length > 0) {
      for (const v of this.held) if (v !== null) this.events.decided(v, this.policy);
      this.holdBase += this.held.length;
      this.held.length = 0;
    }
    const batch = this.events.take();
    // The numbers and id bytes of a large batch move to the thread (fresh exact-size buffers per batch):
    // cloning a typed array costs ~1 us per KB here; a small one is cloned (moving has a fixed cost).
    if (batch !== null) this.actor.tell({ t: 'events', e: batch }, transferable(batch.nums, batch.ids));
  }

  // ---------------------------------------------------------------------------------------------
  // queries (each sees every event buffered before it)

  async get(requestId: string): Promise<string | null> {
    this.handOver();
    const local = await this.actor.ask({ t: 'get', id: requestId });
    return local !== null || this.shared === undefined ? local : this.shared.get(requestId);
  }

  async batch(requestIds: readonly string[]): Promise<string> {
    this.handOver();
    const local = await this.actor.ask({ t: 'batch', ids: requestIds });
    return this.shared === undefined ? local : this.shared.batch(requestIds, local);
  }

  async list(q: TraceQuery): Promise<string> {
    this.handOver();
    const local = await this.actor.ask({ t: 'list', q });
    return this.shared === undefined ? local : this.shared.list(q, local);
  }

  async stats(): Promise<TraceStats> {
    this.handOver();
    const local = await this.actor.ask({ t: 'stats' });
    return this.shared === undefined ? local : this.shared.stats(local);
  }

  /** Answer what this replica does not hold from `source` too (the shared traces; --redis-url). */
  setShared(source: SharedTraceSource): void {
    this.shared = source;
  }

  /** Finished traces since the last drain (needs `shareQueueMax`); null when none. */
  drainFinished(): Promise<FinishedTraces | null> {
    this.handOver();
    return this.actor.ask({ t: 'drain' });
  }

  /** Every finished trace held, oldest first (re-shared when Redis comes back empty). */
  exportFinished(): Promise<FinishedTraces> {
    this.handOver();
    return this.actor.ask({ t: 'export' });
  }

  /** Apply everything buffered and write the log now (tests, shutdown). */
  flush(): Promise<TraceLogStats | null> {
    this.handOver();
    return this.actor.ask({ t: 'flush' });
  }

  /** Resolves when the actor thread is up (its store reloaded from the log, when there is one). */
  ready(): Promise<void> {
    return this.actor.whenAvailable();
  }

  /** Hand over the last events, let the actor apply them and flush the log, stop the thread. */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    this.handOver();
    // The shared traces take the last finished ones while the actor still answers.
    if (this.shared?.beforeClose !== undefined) await this.shared.beforeClose().catch(() => undefined);
    this.handOver();
    await this.actor.close();
  }
}

/**
 * Check a trace log folder from the main thread before the actor starts, so a misconfigured folder fails
 * the start-up with a clear message instead of surfacing later in the actor thread.
 */
export function checkTraceLogDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
    accessSync(dir, fsConstants.W_OK | fsConstants.R_OK);
  } catch (err) {
    throw new StartupError(`--trace-log-dir ${dir} is not a writable folder: ${(err as Error).message}`);
  }
}
