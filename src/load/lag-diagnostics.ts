/**
 * Opt-in attribution of the load generator's late sends (`switchyard load --lag-diagnostics`): for every
 * request sent more than `thresholdMs` after it could go, what the sending thread was doing meanwhile.
 *
 * The window of a late send runs from a snapshot taken before the request became due to the send. Over
 * that window it splits the wall time into:
 *   - gc: V8 pauses on this thread (PerformanceObserver 'gc' entries, matched by start and duration);
 *   - descheduled: the thread was runnable but not running (run delay, /proc/thread-self/schedstat): the
 *     machine, not the generator;
 *   - generator_work: the generator's own JS (recording finished exchanges, building bodies, the HTTP
 *     response callbacks), timed with performance.now() around each;
 *   - other_js: the thread was on the CPU doing something else (other code on the thread, undici's
 *     parser, socket syscalls, the event loop itself): thread CPU time minus the two above;
 *   - timer: the thread was asleep (neither running nor runnable) past the due time: timer / poll
 *     granularity.
 * Each late send's lag is shared between the causes in proportion to their time in the window, and it
 * counts under the largest (its primary cause). The components are clamped in the order above, so that
 * GC inside a recording call is not counted twice.
 *
 * Off by default and then free: the scheduler holds `undefined` and every hook is behind one check. On,
 * it reads /proc/thread-self/schedstat at most every SNAPSHOT_EVERY_MS (a ~10 us syscall) and once per
 * event-loop turn with a late send, and keeps at most `maxEvents` late sends (then counts only).
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { PerformanceObserver, constants as perfConstants, performance, type PerformanceEntry } from 'node:perf_hooks';
import { LAG_CAUSE_DEFINITIONS, LAG_CAUSES, gcOverlap, primaryCause, shareLag, sortedPauses, splitWindow, type LagCause } from './lag-attribution.js';

/** Minimum spacing of the routine schedstat snapshots (ms). */
const SNAPSHOT_EVERY_MS = 0.2;
/** GC pauses kept for matching with late sends (beyond: counted by kind only). */
const GC_KEPT = 100_000;
const WORST_KEPT = 10;

/** Cumulative counters at one moment (performance.now() ms; thread CPU and run delay in ms). */
class Snapshot {
  t = -1;
  execMs = 0;
  delayMs = 0;
  workMs = 0;
}

/**
 * The latest routine snapshots (a ring): a late send's window starts at the newest one taken before the
 * request was due. At one snapshot per SNAPSHOT_EVERY_MS at most, RING of them span >= 51 ms, even when a
 * burst of turns follows a stall.
 */
const RING = 256;

class SnapshotRing {
  private readonly t = new Float64Array(RING).fill(-1);
  private readonly exec = new Float64Array(RING);
  private readonly delay = new Float64Array(RING);
  private readonly work = new Float64Array(RING);
  private head = -1;

  get latestT(): number {
    return this.head < 0 ? -1 : this.t[this.head]!;
  }

  push(t: number, exec: number, delay: number, work: number): void {
    this.head = (this.head + 1) % RING;
    this.t[this.head] = t;
    this.exec[this.head] = exec;
    this.delay[this.head] = delay;
    this.work[this.head] = work;
  }

  /** Copies into `out` the newest snapshot taken at or before `at` (else the oldest kept). */
  before(at: number, out: Snapshot): void {
    let i = this.head;
    let pick = i;
    for (let k = 0; k < RING; k++) {
      const t = this.t[i]!;
      if (t < 0) break;
      pick = i;
      if (t <= at) break;
      i = (i + RING - 1) % RING;
    }
    out.t = this.t[pick]!;
    out.execMs = this.exec[pick]!;
    out.delayMs = this.delay[pick]!;
    out.workMs = this.work[pick]!;
  }
}

export interface LagCauseTotals {
  late_sends: number;
  lag_ms: number;
}

export interface LagCausesSection {
  threshold_ms: number;
  sends: number;
  late_sends: number;
  /** Late sends beyond the kept maximum: counted, not attributed. */
  late_sends_not_attributed: number;
  late_lag_ms: number;
  /** Per cause: late sends it was the primary cause of, and its share of their lag (ms). */
  causes: Record<LagCause, LagCauseTotals>;
  /** The generator's own work inside late windows, by kind (ms). */
  generator_work_ms: { record: number; build: number; response: number };
  /** Every GC pause on the sending thread during the run. */
  gc: { count: number; total_ms: number; max_ms: number; by_kind: Record<string, { count: number; total_ms: number; max_ms: number }> };
  /** The sending thread over the run: CPU time and run delay (null without /proc), and the process's involuntary context switches. */
  thread: { cpu_ms: number | null; run_delay_ms: number | null; involuntary_context_switches: number; schedstat_reads: number };
  worst: { index: number; lag_ms: number; cause: LagCause; gc_ms: number; descheduled_ms: number; generator_work_ms: number; other_js_ms: number; timer_ms: number }[];
  definitions: Record<LagCause, string>;
}

const GC_KINDS: Record<number, string> = {
  [perfConstants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [perfConstants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [perfConstants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [perfConstants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
};

/** Reads this thread's CPU time and run delay (ns in the file) without allocating. */
class SchedStat {
  private readonly fd: number;
  private readonly buf = Buffer.alloc(96);
  execMs = 0;
  delayMs = 0;
  reads = 0;

  private constructor(fd: number) {
    this.fd = fd;
  }

  static open(): SchedStat | undefined {
    try {
      const s = new SchedStat(openSync('/proc/thread-self/schedstat', 'r'));
      return s.read() ? s : (s.close(), undefined);
    } catch {
      return undefined;
    }
  }

  /** Refreshes execMs / delayMs; false when the file did not parse. */
  read(): boolean {
    const n = readSync(this.fd, this.buf, 0, this.buf.length, 0);
    this.reads++;
    const b = this.buf;
    let i = 0;
    let exec = 0;
    let delay = 0;
    while (i < n && b[i]! >= 48 && b[i]! <= 57) exec = exec * 10 + (b[i++]! - 48);
    if (i === 0 || b[i] !== 32) return false;
    const s = ++i;
    while (i < n && b[i]! >= 48 && b[i]! <= 57) delay = delay * 10 + (b[i++]! - 48);
    if (i === s) return false;
    this.execMs = exec / 1e6;
    this.delayMs = delay / 1e6;
    return true;
  }

  close(): void {
    try {
      closeSync(this.fd);
    } catch {
      // already closed
    }
  }
}

/** Events of late sends, column-wise (bounded). */
class LateEvents {
  readonly index: Int32Array;
  readonly lag: Float64Array;
  readonly from: Float64Array;
  readonly to: Float64Array;
  readonly exec: Float64Array;
  readonly delay: Float64Array;
  /** The generator's own work in the window (record + build + response callbacks). */
  readonly work: Float64Array;
  length = 0;

  constructor(readonly cap: number) {
    this.index = new Int32Array(cap);
    this.lag = new Float64Array(cap);
    this.from = new Float64Array(cap);
    this.to = new Float64Array(cap);
    this.exec = new Float64Array(cap);
    this.delay = new Float64Array(cap);
    this.work = new Float64Array(cap);
  }
}

export interface LagDiagnosticsOptions {
  /** Sends later than this count as late (default 0.5 ms). */
  thresholdMs?: number;
  /** Late sends kept for attribution (default 20,000; later ones are only counted). */
  maxEvents?: number;
}

export class LagDiagnostics {
  readonly thresholdMs: number;
  /** Wall time in the generator's own work, cumulative (ms); the client adds its response callbacks. */
  recordMs = 0;
  buildMs = 0;
  readonly responseClock = { ms: 0 };

  private readonly sched: SchedStat | undefined;
  private observer: PerformanceObserver | undefined;
  /** GC pauses (start, duration) for matching with late windows, the first GC_KEPT of them. */
  private readonly gcStart: number[] = [];
  private readonly gcDuration: number[] = [];
  /** Every pause, by kind. */
  private readonly gcByKind: LagCausesSection['gc']['by_kind'] = {};
  private gcCount = 0;
  private gcTotal = 0;
  private gcMax = 0;
  private readonly events: LateEvents;
  private sends = 0;
  private late = 0;
  private lateLag = 0;
  private readonly ring = new SnapshotRing();
  private readonly base = new Snapshot();
  private readonly scratch = new Snapshot();
  /** This turn's closing snapshot, once a late send needed one. */
  private readonly closing = new Snapshot();
  private turnId = 0;
  private closingTurn = -1;
  private startExec = 0;
  private startDelay = 0;
  private startIcs = 0;
  private finished: LagCausesSection | undefined;

  constructor(opts: LagDiagnosticsOptions = {}) {
    this.thresholdMs = opts.thresholdMs ?? 0.5;
    this.events = new LateEvents(opts.maxEvents ?? 20_000);
    this.sched = SchedStat.open();
  }

  /** Starts observing (call right before the first send). */
  start(): void {
    this.observer = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) this.addGc(e);
    });
    this.observer.observe({ entryTypes: ['gc'] });
    this.startIcs = process.resourceUsage().involuntaryContextSwitches;
    if (this.sched !== undefined) {
      this.sched.read();
      this.startExec = this.sched.execMs;
      this.startDelay = this.sched.delayMs;
    }
    this.turn(performance.now());
  }

  private addGc(e: PerformanceEntry): void {
    const d = e.duration;
    if (this.gcStart.length < GC_KEPT) {
      this.gcStart.push(e.startTime);
      this.gcDuration.push(d);
    }
    const k = (e as unknown as { detail?: { kind?: number } }).detail?.kind ?? 0;
    const b = (this.gcByKind[GC_KINDS[k] ?? `kind_${k}`] ??= { count: 0, total_ms: 0, max_ms: 0 });
    b.count++;
    b.total_ms += d;
    if (d > b.max_ms) b.max_ms = d;
    this.gcCount++;
    this.gcTotal += d;
    if (d > this.gcMax) this.gcMax = d;
  }

  private get workMs(): number {
    return this.recordMs + this.buildMs + this.responseClock.ms;
  }

  private snap(s: Snapshot, now: number): void {
    if (this.sched !== undefined) {
      this.sched.read();
      s.execMs = this.sched.execMs;
      s.delayMs = this.sched.delayMs;
    }
    s.t = now;
    s.workMs = this.workMs;
  }

  /** At the start of every scheduler turn (before anything is sent). */
  turn(now: number): void {
    this.turnId++;
    if (now - this.ring.latestT < SNAPSHOT_EVERY_MS) return;
    const s = this.scratch;
    this.snap(s, now);
    this.ring.push(now, s.execMs, s.delayMs, s.workMs);
  }

  /** After each send: `readyAt` is when it could go, `sentAt` when it went (performance.now() ms). */
  sent(index: number, readyAt: number, sentAt: number): void {
    this.sends++;
    const lag = sentAt - readyAt;
    if (lag <= this.thresholdMs) return;
    this.late++;
    this.lateLag += lag;
    const ev = this.events;
    if (ev.length >= ev.cap) return;
    if (this.closingTurn !== this.turnId) {
      this.closingTurn = this.turnId;
      this.snap(this.closing, performance.now());
    }
    const base = this.base;
    this.ring.before(readyAt, base);
    const end = this.closing;
    const k = ev.length++;
    ev.index[k] = index;
    ev.lag[k] = lag;
    ev.from[k] = base.t;
    ev.to[k] = end.t;
    ev.exec[k] = end.execMs - base.execMs;
    ev.delay[k] = end.delayMs - base.delayMs;
    ev.work[k] = end.workMs - base.workMs;
  }

  /** Stops observing and attributes every kept late send. Idempotent. */
  finish(): LagCausesSection {
    if (this.finished !== undefined) return this.finished;
    // Entries still buffered in the observer are delivered by takeRecords.
    if (this.observer !== undefined) {
      for (const e of this.observer.takeRecords()) this.addGc(e);
      this.observer.disconnect();
    }
    let cpuMs: number | null = null;
    let delayMs: number | null = null;
    if (this.sched !== undefined) {
      this.sched.read();
      cpuMs = round(this.sched.execMs - this.startExec);
      delayMs = round(this.sched.delayMs - this.startDelay);
      this.sched.close();
    }
    const causes = Object.fromEntries(LAG_CAUSES.map((c) => [c, { late_sends: 0, lag_ms: 0 }])) as Record<LagCause, LagCauseTotals>;
    const gcs = sortedPauses(this.gcStart, this.gcDuration);
    const ev = this.events;
    const worst: LagCausesSection['worst'] = [];
    let workInLate = 0;
    for (let k = 0; k < ev.length; k++) {
      const w = splitWindow(
        ev.to[k]! - ev.from[k]!,
        gcOverlap(gcs, ev.from[k]!, ev.to[k]!),
        this.sched === undefined ? Number.NaN : ev.delay[k]!,
        ev.work[k]!,
        this.sched === undefined ? Number.NaN : ev.exec[k]!,
      );
      workInLate += ev.work[k]!;
      const lag = ev.lag[k]!;
      const shares = shareLag(w, lag);
      const primary = primaryCause(w);
      causes[primary].late_sends++;
      for (const c of LAG_CAUSES) causes[c].lag_ms += shares[c];
      if (worst.length < WORST_KEPT || lag > worst[worst.length - 1]!.lag_ms) {
        worst.push({
          index: ev.index[k]!,
          lag_ms: round(lag),
          cause: primary,
          gc_ms: round(shares.gc),
          descheduled_ms: round(shares.descheduled),
          generator_work_ms: round(shares.generator_work),
          other_js_ms: round(shares.other_js),
          timer_ms: round(shares.timer),
        });
        worst.sort((a, b) => b.lag_ms - a.lag_ms);
        if (worst.length > WORST_KEPT) worst.length = WORST_KEPT;
      }
    }
    for (const c of LAG_CAUSES) causes[c].lag_ms = round(causes[c].lag_ms);
    const byKind = this.gcByKind;
    for (const b of Object.values(byKind)) {
      b.total_ms = round(b.total_ms);
      b.max_ms = round(b.max_ms);
    }
    const totalWork = this.workMs;
    const scale = totalWork > 0 ? workInLate / totalWork : 0;
    this.finished = {
      threshold_ms: this.thresholdMs,
      sends: this.sends,
      late_sends: this.late,
      late_sends_not_attributed: this.late - ev.length,
      late_lag_ms: round(this.lateLag),
      causes,
      // Inside late windows, split by kind in the run's proportions (the windows only keep the sum).
      generator_work_ms: { record: round(this.recordMs * scale), build: round(this.buildMs * scale), response: round(this.responseClock.ms * scale) },
      gc: { count: this.gcCount, total_ms: round(this.gcTotal), max_ms: round(this.gcMax), by_kind: byKind },
      thread: {
        cpu_ms: cpuMs,
        run_delay_ms: delayMs,
        involuntary_context_switches: process.resourceUsage().involuntaryContextSwitches - this.startIcs,
        schedstat_reads: this.sched?.reads ?? 0,
      },
      worst,
      definitions: LAG_CAUSE_DEFINITIONS,
    };
    return this.finished;
  }
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
