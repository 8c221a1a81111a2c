/**
 * The scheduler of one load run: sends the workload's requests at their scheduled times (or as
 * --max-concurrency frees slots), measures its own lateness per request, and hands every finished exchange
 * to the recorder.
 *
 * Scheduling keeps the generator from distorting what it measures: the next request's body is built
 * ahead of its time; a timer sleeps until ~2 ms before it is due, then the loop polls with setImmediate
 * (so network I/O still runs) and sends at the due time, or, with nothing in flight (no response to
 * read), blocks until just before it; requests over --max-concurrency wait client-side and go out from
 * the completion that frees a slot. Its own lateness is measured per request (send lag), and with
 * --lag-diagnostics attributed to causes (lag-diagnostics.ts).
 *
 * Between sends the thread does as little as it can: the client only copies and stamps response chunks,
 * and finished exchanges wait in a queue. Parsing them, recording them and writing their CSV rows (tens of
 * microseconds each) happens only in slack: while the next send is more than RECORD_MARGIN_MS away, or
 * once everything is sent. A generator that cannot keep up records regardless past MAX_DEFERRED waiting.
 */
import { performance } from 'node:perf_hooks';
import { ArrivalProcess, type ArrivalOptions } from './arrivals.js';
import type { Exchange, LoadClient } from './client.js';
import type { Dataset, DatasetIterator } from './datasets.js';
import { buildPayload, type PayloadSettings } from './protocol.js';
import type { Recorder } from './recorder.js';
import type { LagDiagnostics } from './lag-diagnostics.js';

/** Poll (setImmediate) instead of sleeping when the next request is due within this many ms. */
const SPIN_WINDOW_MS = 2;
/**
 * With nothing in flight the thread blocks (Atomics.wait, microsecond timeout) instead of polling, and
 * wakes this much early: measured here, a futex wait overslept by 0.11 ms (median) / 0.2 ms (p99).
 */
const WAKE_SLACK_MS = 0.2;

/**
 * A request ready to go: its body bytes (outside the JS heap) and the two numbers its record needs. Not
 * its spec: ~256 prompts held here until their send survived young-generation collections and made each
 * ~2x longer (--trace-gc-nvp, random 1024-token prompts: new_space_survived ~0.55 MB).
 */
interface Prepared {
  index: number;
  promptTokens: number;
  group: number;
  body: Buffer;
}

/** Request bodies built ahead of their send time (bounded: this many at most). */
const LOOKAHEAD = 256;
/** Building a body takes tens of microseconds; only build ahead when the next send is further away than this. */
const BUILD_MARGIN_MS = 0.3;
/** Parsing and recording a finished exchange takes tens of microseconds: only when the next send is further away. */
const RECORD_MARGIN_MS = 0.25;
/** Finished exchanges waiting to be recorded beyond which they are recorded regardless (bounded memory). */
const MAX_DEFERRED = 2048;

/** One request from its send to its record (pooled: no closure or object per request). */
class Pending {
  index = 0;
  scheduled = 0;
  ready = 0;
  sent = 0;
  promptTokens = 0;
  group = -1;
  ex: Exchange | undefined;
}

export class Scheduler {
  inFlight = 0;
  private nextIndex = 0;
  private nextScheduled: number;
  private readonly arrivals: ArrivalProcess;
  private readonly iter: DatasetIterator;
  /** Bodies of requests nextIndex, nextIndex + 1, ... (a FIFO ring). */
  private readonly ready: (Prepared | undefined)[] = new Array<Prepared | undefined>(LOOKAHEAD);
  private readyHead = 0;
  private readyCount = 0;
  private preparedUpTo = 0;
  private t0 = 0;
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;
  private pumpQueued = false;
  private resolveDone: (() => void) | undefined;
  /** Exchanges finished (recorded or waiting in `deferred`). */
  private completed = 0;
  private readonly deferred: Pending[] = [];
  private deferredHead = 0;
  private readonly pool: Pending[] = [];
  private firstFreedAt = -1;
  /** Never notified: Atomics.wait on it is a sleep with a sub-millisecond timeout. */
  private readonly sleeper = new Int32Array(new SharedArrayBuffer(4));
  private readonly onDoneBound = (ex: Exchange, p: Pending): void => this.onDone(ex, p);
  /** Requests in the run; lowered to the number already sent when the run is stopped early. */
  private n: number;
  stopped = false;

  constructor(
    private readonly client: LoadClient,
    dataset: Dataset,
    private readonly settings: PayloadSettings,
    private readonly path: string,
    private readonly cumulative: boolean,
    arrivals: ArrivalOptions,
    private readonly limit: number,
    private readonly runId: string,
    private readonly recorder: Recorder,
    private readonly diag: LagDiagnostics | undefined,
  ) {
    this.n = dataset.size;
    this.arrivals = new ArrivalProcess(arrivals);
    this.iter = dataset.iterate();
    this.nextScheduled = this.arrivals.next();
  }

  run(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.resolveDone = resolve;
      if (this.completed >= this.n) return this.finishRun(); // stopped before it started
      // Everything that can be built before the clock starts is built now.
      while (this.readyCount < LOOKAHEAD && this.preparedUpTo < this.n) this.prepareOne();
      this.diag?.start();
      this.t0 = performance.now();
      this.tick();
    });
  }

  private now(): number {
    return performance.now() - this.t0;
  }

  private prepareOne(): void {
    const spec = this.iter.next();
    const p: Prepared = { index: this.preparedUpTo++, promptTokens: spec.promptTokens, group: spec.group, body: Buffer.from(JSON.stringify(buildPayload(spec, this.settings))) };
    this.ready[(this.readyHead + this.readyCount) % LOOKAHEAD] = p;
    this.readyCount++;
  }

  /** Builds bodies ahead while the next send is not about to be due. */
  private fillAhead(): void {
    while (this.readyCount < LOOKAHEAD && this.preparedUpTo < this.n && this.nextScheduled - this.now() > BUILD_MARGIN_MS) this.prepareOne();
  }

  private takePrepared(): Prepared {
    if (this.readyCount === 0) this.prepareOne();
    const p = this.ready[this.readyHead]!;
    this.ready[this.readyHead] = undefined;
    this.readyHead = (this.readyHead + 1) % LOOKAHEAD;
    this.readyCount--;
    return p;
  }

  /** Stop sending: the run ends when the requests already sent have finished. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.n = this.nextIndex;
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.immediate !== undefined) clearImmediate(this.immediate);
    this.timer = undefined;
    this.immediate = undefined;
    if (this.completed >= this.n) this.finishRun();
  }

  private readonly tick = (): void => {
    this.timer = undefined;
    this.immediate = undefined;
    this.pump(-1);
  };

  /** Sends everything due while slots are free; `slotFreedAt` >= 0 when called from a completion. */
  private pump(slotFreedAt: number): void {
    const diag = this.diag;
    do {
      if (diag !== undefined) diag.turn(performance.now());
      while (this.nextIndex < this.n && this.inFlight < this.limit) {
        const now = this.now();
        if (this.nextScheduled > now) break;
        const ready = slotFreedAt > this.nextScheduled ? slotFreedAt : this.nextScheduled;
        this.sendNext(ready);
      }
      if (diag === undefined) {
        this.recordInSlack();
        this.fillAhead();
      } else {
        const a = performance.now();
        this.recordInSlack();
        const b = performance.now();
        this.fillAhead();
        diag.recordMs += b - a;
        diag.buildMs += performance.now() - b;
      }
      // Not from a completion: that runs inside undici's callbacks.
    } while (slotFreedAt < 0 && this.sleepUntilDue());
    this.armTimer();
  }

  /**
   * Polling allocates (a setImmediate and a clock reading per turn, ~100k turns a second) and that was
   * most of the generator's young-generation garbage, whose collections were its own largest cause of
   * late sends (--lag-diagnostics). But polling is only needed to read responses the moment they arrive:
   * with nothing in flight none can, so the thread blocks until just before the next send instead. True
   * when it slept (the caller then sends what is due, in the same turn).
   */
  private sleepUntilDue(): boolean {
    if (this.inFlight !== 0 || this.nextIndex >= this.n || this.stopped) return false;
    const wait = this.nextScheduled - this.now();
    if (wait <= WAKE_SLACK_MS || wait > SPIN_WINDOW_MS + 1) return false; // poll the rest / a timer
    Atomics.wait(this.sleeper, 0, 0, wait - WAKE_SLACK_MS);
    return true;
  }

  /** Record finished exchanges while the next send is far enough away (or nothing is left to send). */
  private recordInSlack(): void {
    while (this.deferredHead < this.deferred.length) {
      const waiting = this.deferred.length - this.deferredHead;
      if (waiting <= MAX_DEFERRED && this.nextIndex < this.n && this.nextScheduled - this.now() <= RECORD_MARGIN_MS) break;
      this.recordOne();
    }
    if (this.deferredHead === this.deferred.length) {
      this.deferred.length = 0;
      this.deferredHead = 0;
    }
  }

  private recordOne(): void {
    const p = this.deferred[this.deferredHead] as Pending;
    this.deferred[this.deferredHead++] = undefined as unknown as Pending;
    this.recorder.add({
      index: p.index,
      requestId: `${this.runId}-${p.index}`,
      scheduledMs: p.scheduled,
      readyMs: p.ready,
      sentMs: p.sent,
      clockOffset: this.t0,
      outcome: (p.ex as Exchange).outcome(),
      specPromptTokens: p.promptTokens,
      group: p.group,
    });
    p.ex = undefined;
    this.pool.push(p);
  }

  private finishRun(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.immediate !== undefined) clearImmediate(this.immediate);
    this.timer = undefined;
    this.immediate = undefined;
    while (this.deferredHead < this.deferred.length) this.recordOne();
    this.deferred.length = 0;
    this.deferredHead = 0;
    this.resolveDone?.();
  }

  private armTimer(): void {
    if (this.timer !== undefined || this.immediate !== undefined) return;
    if (this.nextIndex >= this.n || this.inFlight >= this.limit) return; // a completion will pump
    const wait = this.nextScheduled - this.now();
    if (wait > SPIN_WINDOW_MS + 1) this.timer = setTimeout(this.tick, Math.floor(wait - SPIN_WINDOW_MS));
    else this.immediate = setImmediate(this.tick);
  }

  private sendNext(readyAt: number): void {
    const prepared = this.takePrepared();
    const p = this.pool.pop() ?? new Pending();
    p.index = this.nextIndex++;
    p.scheduled = this.nextScheduled;
    p.ready = readyAt;
    p.promptTokens = prepared.promptTokens;
    p.group = prepared.group;
    this.nextScheduled = this.nextIndex < this.n ? this.arrivals.next() : Number.POSITIVE_INFINITY;
    this.inFlight++;
    p.sent = this.now();
    this.client.send(this.path, prepared.body, `${this.runId}-${p.index}`, this.cumulative, this.onDoneBound, p);
    if (this.diag !== undefined) this.diag.sent(p.index, readyAt + this.t0, p.sent + this.t0);
  }

  private onDone(ex: Exchange, p: Pending): void {
    this.inFlight--;
    this.completed++;
    p.ex = ex;
    this.deferred.push(p);
    const freedAt = ex.completedAt - this.t0;
    if (this.completed >= this.n) return this.finishRun();
    // Send from a microtask, not from inside undici's callback (no re-entrancy into its parser); the
    // first slot freed in this turn is when a request waiting for one became ready.
    if (!this.pumpQueued) {
      this.pumpQueued = true;
      this.firstFreedAt = freedAt;
      queueMicrotask(this.pumpFromCompletion);
    }
  }

  private readonly pumpFromCompletion = (): void => {
    this.pumpQueued = false;
    this.pump(this.firstFreedAt);
  };
}
