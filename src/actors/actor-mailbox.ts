/**
 * An actor's host-side mailbox: calls made in one event-loop turn accumulate into one batch (at most
 * maxBatch calls), sealed batches are sent to the current incarnation while fewer than maxBatchesInFlight
 * are owed, and each answer batch is dispatched to the per-call callbacks.
 *
 * It knows nothing of restarts: the Actor (actor.ts) supervises the thread, points `inc` at each new
 * incarnation, fails what a dead one owed, and closes the mailbox. Kept apart from supervision because this
 * is the per-call path (enqueue, send, answer) and the two share only the incarnation and the hooks below.
 */
import type { Unpackr } from 'msgpackr';
import type { Logger } from '../util/log.js';
import { ActorClosedError, ActorOverloadedError } from './actor-errors.js';
import { asError, Batch, type Incarnation, packedTask, withTimeout } from './actor-incarnation.js';
import type { ActorCallback } from './actor-types.js';
import type { ActorMessage, AnswerBatch, BatchTask } from './protocol.js';

export interface MailboxLimits {
  /** Calls per crossing. */
  readonly maxBatch: number;
  /** Crossings awaiting their answers. */
  readonly maxInFlight: number;
  /** Calls waiting on the host for a crossing; beyond it calls fail with ActorOverloadedError. */
  readonly maxQueued: number;
  /** Stamp each batch's send time (the watchdog reads it; skipped when there is none). */
  readonly stampSends: boolean;
}

/** What the mailbox reports to the supervisor. */
export interface MailboxHooks {
  /** A batch was answered by the incarnation's thread: it works (resets the restart back-off). */
  readonly answered: () => void;
  /** An answer came from another thread than the incarnation's: treat the incarnation as dead. */
  readonly wrongThread: (inc: Incarnation, cause: Error) => void;
}

export class Mailbox {
  /** The incarnation batches go to once it is attached; null while none is (re)starting. Set by the Actor. */
  inc: Incarnation | null = null;
  /** Set when the actor starts closing: calls fail with ActorClosedError, tells are dropped. */
  closed = false;
  /** Calls accepted but not yet sent (open and sealed batches). */
  queued = 0;
  batchesSent = 0;
  callsSent = 0;
  droppedTells = 0;
  callbackErrors = 0;

  private open = new Batch();
  private readonly sealed: Batch[] = [];
  private readonly free: Batch[] = [];
  private flushScheduled = false;
  private readonly flushBound = (): void => this.flush();
  private nextBatchId = 1;
  private drainWaiter: (() => void) | null = null;

  private readonly maxBatch: number;
  private readonly maxInFlight: number;
  private readonly maxQueued: number;
  private readonly stampSends: boolean;

  constructor(
    private readonly name: string,
    limits: MailboxLimits,
    private readonly logger: Logger | undefined,
    private readonly hooks: MailboxHooks,
  ) {
    this.maxBatch = limits.maxBatch;
    this.maxInFlight = limits.maxInFlight;
    this.maxQueued = limits.maxQueued;
    this.stampSends = limits.stampSends;
  }

  enqueue(msg: ActorMessage, cb: ActorCallback<unknown, unknown> | null, ctx: unknown, transfer?: readonly ArrayBuffer[]): void {
    if (this.closed) {
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

  /** A message without a reply: counted and dropped (not failed) when the mailbox is closed or full. */
  tell(msg: ActorMessage, transfer?: readonly ArrayBuffer[]): void {
    if (this.closed || this.queued >= this.maxQueued) {
      this.droppedTells++;
      return;
    }
    this.enqueue(msg, null, undefined, transfer);
  }

  /** Sends sealed batches to the incarnation while it is attached, alive and owes fewer than maxInFlight. */
  pump(): void {
    const inc = this.inc;
    if (inc === null || !inc.attached || inc.dead) return;
    while (this.sealed.length > 0 && inc.inflight.size < this.maxInFlight) {
      this.send(inc, this.sealed.shift() as Batch);
    }
    this.checkDrained();
  }

  onAnswer(inc: Incarnation, answer: AnswerBatch): void {
    const batch = inc.inflight.get(answer.b);
    if (batch === undefined) return; // already failed by a crash
    if (answer.tid !== inc.threadId) {
      this.hooks.wrongThread(inc, new Error(`batch answered by thread ${answer.tid}, expected ${inc.threadId}`));
      return;
    }
    inc.inflight.delete(answer.b);
    if (inc.port !== null && inc.inflight.size === 0) inc.port.unref();
    this.hooks.answered();
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

  /** Fails every call of the batch with err (a tell is counted as dropped) and recycles it. */
  failBatch(batch: Batch, err: Error): void {
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

  /** Fails every call not yet sent. */
  failQueued(err: Error): void {
    if (this.open.cbs.length > 0) this.seal();
    const batches = this.sealed.splice(0, this.sealed.length);
    for (const batch of batches) {
      this.queued -= batch.cbs.length;
      this.failBatch(batch, err);
    }
  }

  /**
   * Sends everything accepted to the (attached) incarnation and resolves once nothing is queued or owed,
   * or after timeoutMs (close must not hang on a stuck thread).
   */
  async drain(timeoutMs: number): Promise<void> {
    if (this.open.cbs.length > 0) this.seal();
    const drained = new Promise<void>((resolve) => {
      this.drainWaiter = resolve;
    });
    this.pump();
    this.checkDrained();
    await withTimeout(drained, timeoutMs);
    this.drainWaiter = null;
  }

  /** Resolves a pending drain() once nothing is queued or owed (a dead incarnation owes nothing). */
  checkDrained(): void {
    if (this.drainWaiter === null) return;
    const inc = this.inc;
    const owed = inc === null ? 0 : inc.inflight.size;
    if (owed === 0 && this.sealed.length === 0 && this.open.cbs.length === 0) {
      const w = this.drainWaiter;
      this.drainWaiter = null;
      w();
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

  private send(inc: Incarnation, batch: Batch): void {
    const id = this.nextBatchId++;
    const n = batch.cbs.length;
    batch.id = id;
    if (this.stampSends) batch.sentAt = performance.now();
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

  private onTaskFailed(inc: Incarnation, id: number, err: Error): void {
    const batch = inc.inflight.get(id);
    if (batch === undefined) return;
    inc.inflight.delete(id);
    this.failBatch(batch, err);
    this.pump();
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
}
