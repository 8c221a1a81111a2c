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
 */
import { MessageChannel, type MessagePort, type Worker, type ResourceLimits } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { Packr } from 'msgpackr';
import { SwitchyardError, type ErrorCode } from '../errors.js';
import type { Logger } from '../util/log.js';
import type {
  ActorCodec,
  ActorMessage,
  AnswerBatch,
  AttachResult,
  AttachTask,
  BatchTask,
  CloseAck,
  CloseTask,
  ReplyMap,
} from './protocol.js';

export type ActorCallback<V, C = undefined> = (err: Error | null, value: V | undefined, ctx: C) => void;

export type ActorTransport = 'port' | 'task';

export interface ActorTuning {
  /** `port` (default): batches over a MessagePort handed to the thread. `task`: one piscina task per batch. */
  readonly transport?: ActorTransport;
  /**
   * piscina's atomics mode. Default 'disabled': 'sync' parks the thread's event loop between tasks, so its
   * timers never fire and a port mailbox is never read. Only the task transport accepts 'sync'/'async'.
   */
  readonly atomics?: 'sync' | 'async' | 'disabled';
  /** Task transport only: piscina's concurrentTasksPerWorker (default 1). */
  readonly concurrentTasksPerWorker?: number;
  /** Messages per crossing (default 512). */
  readonly maxBatch?: number;
  /** Crossings awaiting their answers (default 8). */
  readonly maxBatchesInFlight?: number;
  /** Calls waiting on the host for a crossing (default 65536); beyond it calls fail with ActorOverloadedError. */
  readonly maxQueuedCalls?: number;
  /** Host -> thread payload encoding (default 'clone'); 'msgpack' packs each batch with msgpackr records. */
  readonly codec?: ActorCodec;
  /** First back-off after repeated deaths (default 50 ms), doubling up to maxRestartDelayMs (default 5 s). */
  readonly restartDelayMs?: number;
  readonly maxRestartDelayMs?: number;
  /**
   * Watchdog: when the oldest batch in flight has waited this long, the thread is presumed hung (an
   * endless loop, a handler that never settles) and is terminated and replaced like a crashed one.
   * 0 (default) disables it; actors whose handlers are synchronous (policies) should set it.
   */
  readonly watchdogMs?: number;
  /** Bound on close(): drain plus the thread's close hook (default 5 s). */
  readonly closeTimeoutMs?: number;
  readonly resourceLimits?: ResourceLimits;
  /**
   * Node flags of the thread (default: inherited from the process, as worker_threads do). Test runners
   * that preload loaders with --import make every thread start several times slower; tests pass [].
   */
  readonly execArgv?: readonly string[];
}

export interface ActorOptions<I> extends ActorTuning {
  readonly name: string;
  /** The worker module (its default export is `defineActor(...)`), as a path or file: URL. */
  readonly filename: string | URL;
  /** State to initialise a thread from; called at the first start and again at every restart. */
  readonly init: () => I;
  readonly logger?: Logger | undefined;
}

export interface ActorStats {
  readonly name: string;
  readonly available: boolean;
  readonly threadId: number;
  readonly restarts: number;
  readonly batchesSent: number;
  readonly callsSent: number;
  readonly inFlightBatches: number;
  readonly queuedCalls: number;
  readonly droppedTells: number;
  readonly callbackErrors: number;
}

/** Base of the runtime's errors; SwitchyardErrors so they map to a status if they ever reach a client. */
export class ActorError extends SwitchyardError {
  readonly actor: string;
  constructor(code: ErrorCode, actor: string, message: string, cause?: unknown) {
    super(code, message, cause === undefined ? undefined : { cause });
    this.name = 'ActorError';
    this.actor = actor;
  }
}

/** The thread died (or failed to start) while the call was in flight. */
export class ActorCrashedError extends ActorError {
  constructor(actor: string, message: string, cause?: unknown) {
    super('service_unavailable', actor, message, cause);
    this.name = 'ActorCrashedError';
  }
}

export class ActorClosedError extends ActorError {
  constructor(actor: string) {
    super('shutting_down', actor, `actor ${actor} is closed`);
    this.name = 'ActorClosedError';
  }
}

export class ActorOverloadedError extends ActorError {
  constructor(actor: string, limit: number) {
    super('service_unavailable', actor, `actor ${actor} has ${limit} calls queued; refusing more`);
    this.name = 'ActorOverloadedError';
  }
}

/** One crossing's worth of calls; recycled after its answers are dispatched. */
class Batch {
  id = 0;
  sentAt = 0;
  msgs: ActorMessage[] = [];
  readonly cbs: (ActorCallback<unknown, unknown> | null)[] = [];
  readonly ctxs: unknown[] = [];
}

/** One thread (one pool) and the batches it owes answers for. */
class Incarnation {
  threadId = -1;
  worker: Worker | null = null;
  attached = false;
  dead = false;
  lastError: Error | null = null;
  watchdog: NodeJS.Timeout | null = null;
  /** In send order: the first entry is the oldest batch in flight. */
  readonly inflight = new Map<number, Batch>();
  closeAck: (() => void) | null = null;
  constructor(
    readonly pool: Piscina,
    readonly port: MessagePort | null,
    readonly packr: Packr | null,
  ) {}
}

const noop = (): void => {};

export class Actor<M extends ActorMessage, R extends ReplyMap<M>, I = unknown> {
  readonly name: string;
  private readonly options: ActorOptions<I>;
  private readonly filename: string;
  private readonly transport: ActorTransport;
  private readonly atomics: 'sync' | 'async' | 'disabled';
  private readonly maxBatch: number;
  private readonly maxInFlight: number;
  private readonly maxQueued: number;
  private readonly codec: ActorCodec;
  private readonly watchdogMs: number;
  private readonly logger: Logger | undefined;

  private inc: Incarnation | null = null;
  private open = new Batch();
  private readonly sealed: Batch[] = [];
  private readonly free: Batch[] = [];
  private queued = 0;
  private flushScheduled = false;
  private readonly flushBound = (): void => this.flush();
  private nextBatchId = 1;
  private consecutiveFailures = 0;
  private started = false;
  private restartTimer: NodeJS.Timeout | null = null;
  private closing = false;
  private closePromise: Promise<void> | null = null;
  private drainWaiter: (() => void) | null = null;
  private availabilityWaiters: { resolve: () => void; reject: (err: Error) => void }[] = [];

  private _available = false;
  private _restarts = 0;
  private batchesSent = 0;
  private callsSent = 0;
  private droppedTells = 0;
  private callbackErrors = 0;

  constructor(options: ActorOptions<I>) {
    this.options = options;
    this.name = options.name;
    this.filename = typeof options.filename === 'string' ? options.filename : fileURLToPath(options.filename);
    this.transport = options.transport ?? 'port';
    this.atomics = options.atomics ?? 'disabled';
    if (this.transport === 'port' && this.atomics === 'sync') {
      throw new Error(`actor ${this.name}: the port transport needs atomics 'disabled' or 'async' ('sync' parks the thread's event loop)`);
    }
    this.maxBatch = positiveInt(options.maxBatch ?? 512, 'maxBatch');
    this.maxInFlight = positiveInt(options.maxBatchesInFlight ?? 8, 'maxBatchesInFlight');
    this.maxQueued = positiveInt(options.maxQueuedCalls ?? 65536, 'maxQueuedCalls');
    this.codec = options.codec ?? 'clone';
    this.watchdogMs = options.watchdogMs ?? 0;
    if (!(this.watchdogMs >= 0)) throw new Error(`watchdogMs must be >= 0, got ${this.watchdogMs}`);
    this.logger = options.logger;
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
    const inc = this.inc;
    return inc !== null && inc.attached ? inc.threadId : -1;
  }

  stats(): ActorStats {
    let inFlight = 0;
    if (this.inc !== null) inFlight = this.inc.inflight.size;
    return {
      name: this.name,
      available: this._available,
      threadId: this.threadId,
      restarts: this._restarts,
      batchesSent: this.batchesSent,
      callsSent: this.callsSent,
      inFlightBatches: inFlight,
      queuedCalls: this.queued,
      droppedTells: this.droppedTells,
      callbackErrors: this.callbackErrors,
    };
  }

  /** Resolves when a thread is attached (immediately if one is); rejects once the actor is closed. */
  whenAvailable(): Promise<void> {
    if (this._available) return Promise.resolve();
    if (this.closing) return Promise.reject(new ActorClosedError(this.name));
    return new Promise((resolve, reject) => this.availabilityWaiters.push({ resolve, reject }));
  }

  /**
   * Send a message; `cb(err, reply, ctx)` runs when its batch is answered. `ctx` is handed back untouched so
   * hot callers can pass a static callback and avoid a closure per call. Never throws; every failure
   * (crash, close, overload, handler error) arrives through cb, asynchronously.
   */
  call<T extends M, C = undefined>(msg: T, cb: ActorCallback<R[T['t']], C>, ctx?: C): void {
    this.enqueue(msg, cb as ActorCallback<unknown, unknown>, ctx);
  }

  ask<T extends M>(msg: T): Promise<R[T['t']]> {
    return new Promise((resolve, reject) => {
      this.enqueue(msg, settle as ActorCallback<unknown, unknown>, { resolve, reject });
    });
  }

  /** Fire and forget: batched like calls; a failure (crash, overload, close) drops the message. */
  tell(msg: M): void {
    if (this.closing || this.queued >= this.maxQueued) {
      this.droppedTells++;
      return;
    }
    this.enqueue(msg, null, undefined);
  }

  /** Stop accepting calls, drain the accepted ones, run the thread's close hook, destroy the thread. */
  close(): Promise<void> {
    if (this.closePromise === null) this.closePromise = this.doClose();
    return this.closePromise;
  }

  // -------------------------------------------------------------------------------------------------
  // batching

  private enqueue(msg: ActorMessage, cb: ActorCallback<unknown, unknown> | null, ctx: unknown): void {
    if (this.closing) {
      if (cb !== null) process.nextTick(cb, new ActorClosedError(this.name), undefined, ctx);
      return;
    }
    if (this.queued >= this.maxQueued) {
      if (cb !== null) process.nextTick(cb, new ActorOverloadedError(this.name, this.maxQueued), undefined, ctx);
      return;
    }
    const b = this.open;
    b.msgs.push(msg);
    b.cbs.push(cb);
    b.ctxs.push(ctx);
    this.queued++;
    if (b.cbs.length >= this.maxBatch) {
      this.seal();
      this.pump();
    } else if (!this.flushScheduled) {
      this.flushScheduled = true;
      // setImmediate, not a microtask: calls from every callback of this loop iteration share the crossing.
      setImmediate(this.flushBound);
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.open.cbs.length > 0) this.seal();
    this.pump();
  }

  private seal(): void {
    this.sealed.push(this.open);
    this.open = this.free.pop() ?? new Batch();
  }

  private pump(): void {
    const inc = this.inc;
    if (inc === null || !inc.attached || inc.dead) return;
    while (this.sealed.length > 0 && inc.inflight.size < this.maxInFlight) {
      this.send(inc, this.sealed.shift() as Batch);
    }
    this.checkDrained();
  }

  private send(inc: Incarnation, batch: Batch): void {
    const id = this.nextBatchId++;
    const n = batch.cbs.length;
    batch.id = id;
    if (this.watchdogMs > 0) batch.sentAt = performance.now();
    inc.inflight.set(id, batch);
    this.queued -= n;
    this.batchesSent++;
    this.callsSent += n;
    if (inc.port !== null) {
      try {
        if (inc.packr !== null) {
          const packed = copyBytes(inc.packr.pack(batch.msgs));
          const task: BatchTask = { k: 'batch', b: id, p: packed.buffer as ArrayBuffer };
          inc.port.postMessage(task, [packed.buffer as ArrayBuffer]);
        } else {
          const task: BatchTask = { k: 'batch', b: id, m: batch.msgs };
          inc.port.postMessage(task);
        }
      } catch (err) {
        // An uncloneable message: the whole crossing fails, the thread is unaffected.
        inc.inflight.delete(id);
        this.failBatch(batch, asError(err));
        return;
      }
      batch.msgs.length = 0; // cloned or packed already; drop the references now
      if (inc.inflight.size === 1) inc.port.ref(); // keep the process alive while answers are owed
    } else {
      let task: BatchTask;
      try {
        task = inc.packr !== null ? packedTask(inc.packr, id, batch.msgs) : { k: 'batch', b: id, m: batch.msgs };
      } catch (err) {
        inc.inflight.delete(id);
        this.failBatch(batch, asError(err));
        return;
      }
      batch.msgs = []; // piscina may clone the task later (queued): hand the array over
      const transferList = task.p !== undefined ? [task.p] : undefined;
      inc.pool.run(task, transferList === undefined ? undefined : { transferList }).then(
        (answer: AnswerBatch) => this.onAnswer(inc, answer),
        (err: unknown) => this.onTaskFailed(inc, id, asError(err)),
      );
    }
  }

  private onAnswer(inc: Incarnation, answer: AnswerBatch): void {
    const batch = inc.inflight.get(answer.b);
    if (batch === undefined) return; // already failed by a crash
    if (answer.tid !== inc.threadId) {
      this.onDeath(inc, new Error(`batch answered by thread ${answer.tid}, expected ${inc.threadId}`));
      return;
    }
    inc.inflight.delete(answer.b);
    if (inc.port !== null && inc.inflight.size === 0) inc.port.unref();
    this.consecutiveFailures = 0;
    const { r, e } = answer;
    const { cbs, ctxs } = batch;
    if (r.length !== cbs.length) {
      // The thread could not read the batch at all (e.g. undecodable payload): every call fails.
      this.failBatch(batch, (e !== null ? e[0] : null) ?? new Error(`actor ${this.name}: malformed answer batch`));
      this.pump();
      return;
    }
    for (let i = 0; i < cbs.length; i++) {
      const cb = cbs[i];
      if (cb === null || cb === undefined) continue;
      const err = e === null ? null : (e[i] ?? null);
      try {
        cb(err, err === null ? r[i] : undefined, ctxs[i]);
      } catch (cbErr) {
        this.onCallbackError(cbErr);
      }
    }
    this.recycle(batch);
    this.pump();
  }

  private onTaskFailed(inc: Incarnation, id: number, err: Error): void {
    const batch = inc.inflight.get(id);
    if (batch === undefined) return;
    inc.inflight.delete(id);
    this.failBatch(batch, err);
    this.pump();
  }

  private failBatch(batch: Batch, err: Error): void {
    const { cbs, ctxs } = batch;
    for (let i = 0; i < cbs.length; i++) {
      const cb = cbs[i];
      if (cb === null || cb === undefined) {
        this.droppedTells++;
        continue;
      }
      try {
        cb(err, undefined, ctxs[i]);
      } catch (cbErr) {
        this.onCallbackError(cbErr);
      }
    }
    this.recycle(batch);
  }

  private recycle(batch: Batch): void {
    batch.msgs.length = 0;
    batch.cbs.length = 0;
    batch.ctxs.length = 0;
    if (this.free.length < this.maxInFlight + 2) this.free.push(batch);
  }

  private onCallbackError(err: unknown): void {
    this.callbackErrors++;
    this.logger?.error({ actor: this.name, err }, 'actor call callback threw');
  }

  // -------------------------------------------------------------------------------------------------
  // lifecycle and supervision

  private start(): void {
    this.restartTimer = null;
    if (this.closing) return;
    if (this.started) this._restarts++;
    this.started = true;
    let init: I;
    try {
      init = this.options.init();
    } catch (err) {
      this.afterDeath(asError(err), 'init state unavailable', false, []);
      return;
    }
    const pool = new Piscina({
      filename: this.filename,
      minThreads: 1,
      maxThreads: 1,
      idleTimeout: Infinity,
      atomics: this.atomics,
      concurrentTasksPerWorker: this.transport === 'task' ? (this.options.concurrentTasksPerWorker ?? 1) : 1,
      ...(this.options.resourceLimits === undefined ? {} : { resourceLimits: this.options.resourceLimits }),
      ...(this.options.execArgv === undefined ? {} : { execArgv: [...this.options.execArgv] }),
    });
    let port1: MessagePort | null = null;
    let port2: MessagePort | null = null;
    if (this.transport === 'port') {
      const channel = new MessageChannel();
      port1 = channel.port1;
      port2 = channel.port2;
    }
    const inc = new Incarnation(pool, port1, this.codec === 'msgpack' ? new Packr() : null);
    this.inc = inc;
    // piscina emits 'error' for a thread that dies with no task pending (the port transport's usual case);
    // without a listener that would be thrown in the host. The death itself is handled via the Worker.
    pool.on('error', (err: unknown) => {
      inc.lastError = asError(err);
    });
    if (port1 !== null) {
      port1.on('message', (m: AnswerBatch | CloseAck) => this.onPortMessage(inc, m));
      // The mailbox closes when the thread dies; the Worker's 'exit' (with the exit code) usually follows
      // within a millisecond, so give it a moment to supply the better reason.
      port1.on('close', () => {
        if (inc.dead) return;
        // Not unref'd: the Worker is (piscina unrefs idle threads), and the death must still be seen.
        setTimeout(() => this.onDeath(inc, inc.lastError ?? new Error('mailbox port closed')), 20);
      });
      port1.unref();
    }
    const task: AttachTask<I> = { k: 'attach', name: this.name, init, port: port2, codec: this.codec };
    pool.run(task, port2 === null ? undefined : { transferList: [port2] }).then(
      (res: AttachResult) => this.onAttached(inc, res),
      (err: unknown) => this.onDeath(inc, asError(err)),
    );
  }

  private onAttached(inc: Incarnation, res: AttachResult): void {
    if (inc.dead || inc !== this.inc) return;
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
    this.pump();
  }

  private onPortMessage(inc: Incarnation, m: AnswerBatch | CloseAck): void {
    if ((m as AnswerBatch).b !== undefined) this.onAnswer(inc, m as AnswerBatch);
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
    if (inc !== this.inc) return;
    this.inc = null;
    const owed = [...inc.inflight.values()];
    inc.inflight.clear();
    this.afterDeath(cause, inc.attached ? `thread ${inc.threadId} died` : 'thread failed to start', inc.attached, owed);
  }

  /** Fail what the dead incarnation owed, then schedule the next start (unless closing). */
  private afterDeath(cause: Error, what: string, wasAttached: boolean, owed: Batch[]): void {
    this._available = false;
    this.consecutiveFailures++;
    const err = new ActorCrashedError(this.name, `actor ${this.name}: ${what}: ${cause.message}`, cause);
    for (const batch of owed) this.failBatch(batch, err);
    // Calls queued for a start that failed: they waited for one start; it failed.
    if (!wasAttached || this.closing) this.failQueued(err);
    if (this.closing) {
      this.checkDrained();
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

  private failQueued(err: Error): void {
    if (this.open.cbs.length > 0) this.seal();
    const batches = this.sealed.splice(0, this.sealed.length);
    for (const batch of batches) {
      this.queued -= batch.cbs.length;
      this.failBatch(batch, err);
    }
  }

  private checkDrained(): void {
    if (this.drainWaiter === null) return;
    const inc = this.inc;
    const owed = inc === null ? 0 : inc.inflight.size;
    if (owed === 0 && this.sealed.length === 0 && this.open.cbs.length === 0) {
      const w = this.drainWaiter;
      this.drainWaiter = null;
      w();
    }
  }

  private async doClose(): Promise<void> {
    this.closing = true;
    const timeoutMs = this.options.closeTimeoutMs ?? 5000;
    if (this.restartTimer !== null) {
      clearTimeout(this.restartTimer);
      this.restartTimer = null;
    }
    const closedErr = new ActorClosedError(this.name);
    for (const w of this.availabilityWaiters) w.reject(closedErr);
    this.availabilityWaiters = [];
    if (this.open.cbs.length > 0) this.seal();
    const inc = this.inc;
    if (inc !== null && inc.attached && !inc.dead) {
      const drained = new Promise<void>((resolve) => {
        this.drainWaiter = resolve;
      });
      this.pump();
      this.checkDrained();
      await withTimeout(drained, timeoutMs);
      this.drainWaiter = null;
    }
    this.failQueued(closedErr);
    this._available = false;
    const last = this.inc;
    if (last === null) return;
    this.inc = null;
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
    for (const batch of owed) this.failBatch(batch, closedErr);
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

function settle(err: Error | null, value: unknown, ctx: { resolve: (v: unknown) => void; reject: (e: Error) => void }): void {
  if (err !== null) ctx.reject(err);
  else ctx.resolve(value);
}

function packedTask(packr: Packr, id: number, msgs: readonly ActorMessage[]): BatchTask {
  const packed = copyBytes(packr.pack(msgs));
  return { k: 'batch', b: id, p: packed.buffer as ArrayBuffer };
}

/** msgpackr returns a view into its shared arena: copy into an exactly-sized buffer we can transfer. */
function copyBytes(view: Uint8Array): Uint8Array {
  const out = new Uint8Array(view.length);
  out.set(view);
  return out;
}

function asError(err: unknown): Error {
  if (err instanceof Error) return err;
  // e.g. a DOMException thrown in the thread arrives as a plain object
  const message = typeof err === 'object' && err !== null && typeof (err as { message?: unknown }).message === 'string' ? (err as { message: string }).message : String(err);
  return new Error(message);
}

function positiveInt(value: number, what: string): number {
  if (!Number.isInteger(value) || value < 1) throw new Error(`${what} must be a positive integer, got ${value}`);
  return value;
}

/** Resolves with the promise or after ms, whichever first (close must not hang on a stuck thread). */
function withTimeout(promise: Promise<void>, ms: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    promise.then(
      () => {
        clearTimeout(timer);
        resolve();
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(asError(err));
      },
    );
  });
}
