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
import type { Worker } from 'node:worker_threads';
import type { Unpackr } from 'msgpackr';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../util/log.js';
import { ActorClosedError, ActorCrashedError, ActorOverloadedError } from './actor-errors.js';
import { asError, Batch, Incarnation, noop, packedTask, positiveInt, settle, spawnIncarnation, withTimeout } from './actor-incarnation.js';
import type { ActorCallback, ActorOptions, ActorStats, ActorTransport } from './actor-types.js';
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

/** After the mailbox closes, how long to wait for the thread's 'exit' (its code is the better reason). */
const PORT_CLOSE_EXIT_WAIT_MS = 1000;

export { ActorClosedError, ActorCrashedError, ActorError, ActorOverloadedError } from './actor-errors.js';
export type { ActorCallback, ActorOptions, ActorStats, ActorTransport, ActorTuning } from './actor-types.js';

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
  private readonly replyCodec: ActorCodec;
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
    this.replyCodec = this.transport === 'port' ? (options.replyCodec ?? 'clone') : 'clone';
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

  /**
   * Fire and forget: batched like calls; a failure (crash, overload, close) drops the message.
   * `transfer`: ArrayBuffers inside `msg` to move to the thread instead of copying (cloning a typed array
   * costs ~1-3 us per KB on this stack, moving one a fixed few us: worth it from a few KB, see
   * util/typed-copy.ts); the caller must not use them afterwards. With the msgpack codec they are packed
   * like the rest of the message (and left intact).
   */
  tell(msg: M, transfer?: readonly ArrayBuffer[]): void {
    if (this.closing || this.queued >= this.maxQueued) {
      this.droppedTells++;
      return;
    }
    this.enqueue(msg, null, undefined, transfer);
  }

  /** Stop accepting calls, drain the accepted ones, run the thread's close hook, destroy the thread. */
  close(): Promise<void> {
    if (this.closePromise === null) this.closePromise = this.doClose();
    return this.closePromise;
  }

  // -------------------------------------------------------------------------------------------------
  // batching

  private enqueue(msg: ActorMessage, cb: ActorCallback<unknown, unknown> | null, ctx: unknown, transfer?: readonly ArrayBuffer[]): void {
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
    if (transfer !== undefined) for (let i = 0; i < transfer.length; i++) b.transfer.push(transfer[i] as ArrayBuffer);
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
          const task = packedTask(inc.packr, id, batch.msgs);
          inc.port.postMessage(task, [task.p as ArrayBuffer]);
        } else {
          const task: BatchTask = { k: 'batch', b: id, m: batch.msgs };
          inc.port.postMessage(task, batch.transfer);
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
      const transferList = task.p !== undefined ? [task.p] : batch.transfer.length > 0 ? batch.transfer.slice() : undefined;
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
    const { e } = answer;
    let r = answer.r;
    const { cbs, ctxs } = batch;
    if (answer.p !== undefined) {
      try {
        r = (inc.unpackr as Unpackr).unpack(new Uint8Array(answer.p)) as unknown[];
      } catch (err) {
        r = [];
        this.logger?.error({ actor: this.name, err }, 'actor answer could not be unpacked');
      }
    }
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
    batch.transfer.length = 0;
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
    const { inc, threadPort: port2 } = spawnIncarnation(this.filename, this.transport, this.atomics, this.codec, this.replyCodec, this.options);
    const pool = inc.pool;
    const port1 = inc.port;
    this.inc = inc;
    // piscina emits 'error' for a thread that dies with no task pending (the port transport's usual case);
    // without a listener that would be thrown in the host. The death itself is handled via the Worker.
    pool.on('error', (err: unknown) => {
      inc.lastError = asError(err);
    });
    if (port1 !== null) {
      port1.on('message', (m: AnswerBatch | CloseAck) => this.onPortMessage(inc, m));
      // The mailbox closes when the thread dies; the Worker's 'exit' (with the exit code) follows, usually
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
