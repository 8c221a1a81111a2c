/**
 * The actor runtime, host side: an actor is a piscina pool of exactly one thread whose state lives in the
 * worker module's scope (see actor-thread.ts for the thread side).
 *
 * - Messages are typed (`Actor<M, R>`, protocols in protocol.ts) and BATCHED: every call made in one
 *   event-loop turn travels in one crossing; the answers come back as one array and are dispatched to the
 *   per-call callbacks. Batches are bounded (maxBatch) and so is the number in flight (maxBatchesInFlight);
 *   further batches wait on the host, and calls beyond maxQueuedCalls fail fast (ActorOverloadedError).
 * - Transport: by default the thread receives a MessagePort with its first (attach) task and batches travel
 *   over that port; piscina still creates, supervises and terminates the thread. The `task` transport sends
 *   each batch as a piscina task instead (the pool's queue is then the mailbox). docs/actors.md has the
 *   measured round trips behind the default.
 * - Supervision: when the thread dies (uncaught exception, process.exit, failed init, or, with a
 *   watchdog, no answer for watchdogMs) every call in flight
 *   fails at once with ActorCrashedError, `available` turns false, and a fresh thread is started and
 *   re-initialised from `options.init()` (the host's current state, e.g. the membership list). Repeated
 *   deaths without a single answered batch back off exponentially. Calls made while restarting wait for
 *   the next incarnation; if that one fails to start too, they fail.
 * - close(): stop accepting calls, drain what was accepted, run the thread's close hook, destroy the pool.
 *
 * This file is the public API and the thread's lifecycle (start, attach, death, back-off, close); the
 * batching and answer dispatch live in actor-mailbox.ts, the incarnation and batch records in
 * actor-incarnation.ts.
 */
import { fileURLToPath } from 'node:url';
import type { Logger } from '../util/log.js';
import { ActorClosedError, ActorCrashedError } from './actor-errors.js';
import { asError, type Batch, type Incarnation, noop, positiveInt, settle, spawnIncarnation, withTimeout } from './actor-incarnation.js';
import { Mailbox } from './actor-mailbox.js';
import type { ActorCallback, ActorOptions, ActorStats, ActorTransport } from './actor-types.js';
import type { ActorCodec, ActorMessage, AnswerBatch, AttachResult, AttachTask, CloseAck, CloseTask, ReplyMap } from './protocol.js';

/** After the thread's port closes, how long to wait for the thread's 'exit' (its code is the better reason). */
const PORT_CLOSE_EXIT_WAIT_MS = 1000;

export { ActorClosedError, ActorCrashedError, ActorError, ActorOverloadedError } from './actor-errors.js';
export type { ActorCallback, ActorOptions, ActorStats, ActorTransport, ActorTuning } from './actor-types.js';

export class Actor<M extends ActorMessage, R extends ReplyMap<M>, I = unknown> {
  readonly name: string;
  private readonly options: ActorOptions<I>;
  private readonly filename: string;
  private readonly transport: ActorTransport;
  private readonly atomics: 'sync' | 'async' | 'disabled';
  private readonly codec: ActorCodec;
  private readonly replyCodec: ActorCodec;
  private readonly watchdogMs: number;
  private readonly logger: Logger | undefined;

  /** The calls, and (mailbox.inc) the current incarnation they go to. */
  private readonly mailbox: Mailbox;
  private consecutiveFailures = 0;
  private started = false;
  private restartTimer: NodeJS.Timeout | null = null;
  private closePromise: Promise<void> | null = null;
  private availabilityWaiters: { resolve: () => void; reject: (err: Error) => void }[] = [];

  private _available = false;
  private _restarts = 0;

  constructor(options: ActorOptions<I>) {
    this.options = options;
    this.name = options.name;
    this.filename = typeof options.filename === 'string' ? options.filename : fileURLToPath(options.filename);
    this.transport = options.transport ?? 'port';
    this.atomics = options.atomics ?? 'disabled';
    if (this.transport === 'port' && this.atomics === 'sync') {
      throw new Error(`actor ${this.name}: the port transport needs atomics 'disabled' or 'async' ('sync' parks the thread's event loop)`);
    }
    const maxBatch = positiveInt(options.maxBatch ?? 512, 'maxBatch');
    const maxInFlight = positiveInt(options.maxBatchesInFlight ?? 8, 'maxBatchesInFlight');
    const maxQueued = positiveInt(options.maxQueuedCalls ?? 65536, 'maxQueuedCalls');
    this.codec = options.codec ?? 'clone';
    this.replyCodec = this.transport === 'port' ? (options.replyCodec ?? 'clone') : 'clone';
    this.watchdogMs = options.watchdogMs ?? 0;
    if (!(this.watchdogMs >= 0)) throw new Error(`watchdogMs must be >= 0, got ${this.watchdogMs}`);
    this.logger = options.logger;
    this.mailbox = new Mailbox(this.name, { maxBatch, maxInFlight, maxQueued, stampSends: this.watchdogMs > 0 }, this.logger, {
      answered: () => {
        this.consecutiveFailures = 0;
      },
      wrongThread: (inc, cause) => this.onDeath(inc, cause),
    });
    this.start();
  }

  /** True while a thread is attached and initialised; false while (re)starting and after close. */
  get available(): boolean {
    return this._available;
  }

  /** Start attempts after the first (each replaces a dead thread or a failed start). */
  get restarts(): number {
    return this._restarts;
  }

  /** threadId of the current incarnation (-1 while none is attached). */
  get threadId(): number {
    const inc = this.mailbox.inc;
    return inc !== null && inc.attached ? inc.threadId : -1;
  }

  stats(): ActorStats {
    const m = this.mailbox;
    let inFlight = 0;
    if (m.inc !== null) inFlight = m.inc.inflight.size;
    return {
      name: this.name,
      available: this._available,
      threadId: this.threadId,
      restarts: this._restarts,
      batchesSent: m.batchesSent,
      callsSent: m.callsSent,
      inFlightBatches: inFlight,
      queuedCalls: m.queued,
      droppedTells: m.droppedTells,
      callbackErrors: m.callbackErrors,
    };
  }

  /** Resolves when a thread is attached (immediately if one is); rejects once the actor is closed. */
  whenAvailable(): Promise<void> {
    if (this._available) return Promise.resolve();
    if (this.mailbox.closed) return Promise.reject(new ActorClosedError(this.name));
    return new Promise((resolve, reject) => this.availabilityWaiters.push({ resolve, reject }));
  }

  /**
   * Send a message; `cb(err, reply, ctx)` runs when its batch is answered. `ctx` is handed back untouched so
   * hot callers can pass a static callback and avoid a closure per call. Never throws; every failure
   * (crash, close, overload, handler error) arrives through cb, asynchronously.
   */
  call<T extends M, C = undefined>(msg: T, cb: ActorCallback<R[T['t']], C>, ctx?: C): void {
    this.mailbox.enqueue(msg, cb as ActorCallback<unknown, unknown>, ctx);
  }

  ask<T extends M>(msg: T): Promise<R[T['t']]> {
    return new Promise((resolve, reject) => {
      this.mailbox.enqueue(msg, settle as ActorCallback<unknown, unknown>, { resolve, reject });
    });
  }

  /**
   * Fire and forget: batched like calls; a failure (crash, overload, close) drops the message.
   * `transfer`: ArrayBuffers inside `msg` to move to the thread instead of copying (cloning a typed array
   * costs ~1-3 us per KB on this stack, moving one a fixed few us: worth it from a few KB, see
   * util/typed-copy.ts); the caller must not use them afterwards. With the msgpack codec they are packed
   * like the rest of the message (and left intact).
   */
  tell(msg: M, transfer?: readonly ArrayBuffer[]): void {
    this.mailbox.tell(msg, transfer);
  }

  /**
   * Terminate the current thread as a crash would: what it owed fails (tells are dropped) and the actor
   * starts a new one after its back-off. For supervision drills and tests. False when no thread runs.
   */
  async killThread(): Promise<boolean> {
    const worker = this.mailbox.inc?.worker ?? null;
    if (worker === null) return false;
    await worker.terminate();
    return true;
  }

  /** Stop accepting calls, drain the accepted ones, run the thread's close hook, destroy the thread. */
  close(): Promise<void> {
    if (this.closePromise === null) this.closePromise = this.doClose();
    return this.closePromise;
  }

  // -------------------------------------------------------------------------------------------------
  // lifecycle and supervision

  private start(): void {
    this.restartTimer = null;
    if (this.mailbox.closed) return;
    if (this.started) this._restarts++;
    this.started = true;
    let init: I;
    try {
      init = this.options.init();
    } catch (err) {
      this.afterDeath(asError(err), 'init state unavailable', false, []);
      return;
    }
    const { inc, threadPort: port2 } = spawnIncarnation(this.filename, this.transport, this.atomics, this.codec, this.replyCodec, this.options);
    const pool = inc.pool;
    const port1 = inc.port;
    this.mailbox.inc = inc;
    // piscina emits 'error' for a thread that dies with no task pending (the port transport's usual case);
    // without a listener that would be thrown in the host. The death itself is handled via the Worker.
    pool.on('error', (err: unknown) => {
      inc.lastError = asError(err);
    });
    if (port1 !== null) {
      port1.on('message', (m: AnswerBatch | CloseAck) => this.onPortMessage(inc, m));
      // The port closes when the thread dies; the Worker's 'exit' (with the exit code) follows, usually
      // within a millisecond but tens of ms later on a loaded machine, and gives the better reason. Once
      // attached we know the Worker, whose 'exit' always comes: wait for it, bounded in case it does not.
      port1.on('close', () => {
        if (inc.dead) return;
        const wait = inc.worker === null ? 20 : PORT_CLOSE_EXIT_WAIT_MS;
        // Not unref'd: the Worker is (piscina unrefs idle threads), and the death must still be seen.
        setTimeout(() => this.onDeath(inc, inc.lastError ?? new Error('mailbox port closed')), wait);
      });
      port1.unref();
    }
    const task: AttachTask<I> = { k: 'attach', name: this.name, init, port: port2, codec: this.codec, replyCodec: this.replyCodec };
    pool.run(task, port2 === null ? undefined : { transferList: [port2] }).then(
      (res: AttachResult) => this.onAttached(inc, res),
      (err: unknown) => this.onDeath(inc, asError(err)),
    );
  }

  private onAttached(inc: Incarnation, res: AttachResult): void {
    if (inc.dead || inc !== this.mailbox.inc) return;
    const worker = inc.pool.threads[0];
    if (worker === undefined || worker.threadId !== res.tid) {
      this.onDeath(inc, new Error('actor thread vanished during attach'));
      return;
    }
    inc.threadId = res.tid;
    inc.worker = worker;
    worker.once('error', (err: unknown) => this.onDeath(inc, asError(err)));
    worker.once('exit', (code: number) => this.onDeath(inc, inc.lastError ?? new Error(`thread exited with code ${code}`)));
    inc.attached = true;
    this._available = true;
    if (this.watchdogMs > 0) {
      inc.watchdog = setInterval(() => this.checkHung(inc), Math.max(10, this.watchdogMs / 4));
      inc.watchdog.unref();
    }
    if (this._restarts > 0) this.logger?.info({ actor: this.name, threadId: res.tid, restarts: this._restarts }, 'actor thread restarted');
    const waiters = this.availabilityWaiters;
    this.availabilityWaiters = [];
    for (const w of waiters) w.resolve();
    this.mailbox.pump();
  }

  private onPortMessage(inc: Incarnation, m: AnswerBatch | CloseAck): void {
    if ((m as AnswerBatch).b !== undefined) this.mailbox.onAnswer(inc, m as AnswerBatch);
    else if ((m as CloseAck).c === 'closed' && inc.closeAck !== null) inc.closeAck();
  }

  private checkHung(inc: Incarnation): void {
    const oldest = inc.inflight.values().next();
    if (oldest.done === true) return;
    const waited = performance.now() - oldest.value.sentAt;
    if (waited < this.watchdogMs) return;
    this.logger?.error({ actor: this.name, threadId: inc.threadId, waitedMs: Math.round(waited) }, 'actor thread unresponsive; terminating it');
    this.onDeath(inc, new Error(`no answer for ${Math.round(waited)} ms (watchdog ${this.watchdogMs} ms); thread terminated`));
  }

  private onDeath(inc: Incarnation, cause: Error): void {
    if (inc.dead) return;
    inc.dead = true;
    if (inc.watchdog !== null) clearInterval(inc.watchdog);
    if (inc.lastError === null) inc.lastError = cause;
    inc.port?.close();
    inc.pool.destroy().catch(noop);
    if (inc !== this.mailbox.inc) return;
    this.mailbox.inc = null;
    const owed = [...inc.inflight.values()];
    inc.inflight.clear();
    this.afterDeath(cause, inc.attached ? `thread ${inc.threadId} died` : 'thread failed to start', inc.attached, owed);
  }

  /** Fail what the dead incarnation owed, then schedule the next start (unless closing). */
  private afterDeath(cause: Error, what: string, wasAttached: boolean, owed: Batch[]): void {
    this._available = false;
    this.consecutiveFailures++;
    const err = new ActorCrashedError(this.name, `actor ${this.name}: ${what}: ${cause.message}`, cause);
    for (const batch of owed) this.mailbox.failBatch(batch, err);
    // Calls queued for a start that failed: they waited for one start; it failed.
    if (!wasAttached || this.mailbox.closed) this.mailbox.failQueued(err);
    if (this.mailbox.closed) {
      this.mailbox.checkDrained();
      return;
    }
    const delay = this.restartDelay();
    this.logger?.warn(
      { actor: this.name, restarts: this._restarts, failed: owed.length, delayMs: delay, err: cause },
      `actor ${what}; restarting`,
    );
    if (delay === 0) this.start();
    else this.restartTimer = setTimeout(() => this.start(), delay);
  }

  private restartDelay(): number {
    if (this.consecutiveFailures <= 1) return 0;
    const base = this.options.restartDelayMs ?? 50;
    const max = this.options.maxRestartDelayMs ?? 5000;
    return Math.min(max, base * 2 ** (this.consecutiveFailures - 2));
  }

  private async doClose(): Promise<void> {
    const mailbox = this.mailbox;
    mailbox.closed = true;
    const timeoutMs = this.options.closeTimeoutMs ?? 5000;
    if (this.restartTimer !== null) {
      clearTimeout(this.restartTimer);
      this.restartTimer = null;
    }
    const closedErr = new ActorClosedError(this.name);
    for (const w of this.availabilityWaiters) w.reject(closedErr);
    this.availabilityWaiters = [];
    const inc = mailbox.inc;
    if (inc !== null && inc.attached && !inc.dead) await mailbox.drain(timeoutMs);
    mailbox.failQueued(closedErr);
    this._available = false;
    const last = mailbox.inc;
    if (last === null) return;
    mailbox.inc = null;
    if (last.attached && !last.dead) {
      try {
        await withTimeout(this.requestThreadClose(last), timeoutMs);
      } catch (err) {
        this.logger?.warn({ actor: this.name, err }, 'actor close hook failed');
      }
    }
    last.dead = true;
    if (last.watchdog !== null) clearInterval(last.watchdog);
    const owed = [...last.inflight.values()];
    last.inflight.clear();
    for (const batch of owed) mailbox.failBatch(batch, closedErr);
    last.port?.close();
    await last.pool.destroy();
  }

  private requestThreadClose(inc: Incarnation): Promise<void> {
    const task: CloseTask = { k: 'close' };
    if (inc.port === null) return inc.pool.run(task).then(noop);
    const port = inc.port;
    return new Promise<void>((resolve) => {
      inc.closeAck = resolve;
      port.ref();
      port.postMessage(task);
    });
  }
}
