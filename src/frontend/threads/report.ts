/**
 * What a front-end thread's data path tells the main thread, batched by time: the request hooks (events,
 * progress), completion records, policy feedback, passive ejections, breaker outcomes and admission counts.
 *
 * Thread side (ThreadReporter): one object behind every hook of the thread's DataPlaneContext; each call
 * appends to the current batch and the first one starts a timer (reportMs, a few ms): at most one crossing
 * per few milliseconds whatever the request rate (the tracker and stats hosts batch the same way). Stamps
 * are shifted to the main thread's performance.now() clock before they cross. A connection failure is
 * handed over at once (ejection should not wait).
 *
 * Main side (applyReport): feeds the batch to the real hub objects: metrics and OpenTelemetry hooks, the
 * tracker, every completion sink, the policy, the monitor, the breakers, the admission counters.
 */
import type { CompletionRecord, CompletionSink } from '../../proxy/completion.js';
import type { CompletionFeedback, RouteKind } from '../../policies/types.js';
import type { ErrorCode } from '../../errors.js';
import type { RequestEventView, RequestEvents } from '../../metrics/events.js';
import type { WorkerEntry, WorkerRegistry } from '../../workers/registry.js';
import type { ConnectionFailureReporter, RequestProgressHook, RequestProgressView } from '../context.js';
import type { PolicyHost } from '../../policies/host.js';
import type { WorkerMonitor } from '../../workers/monitor.js';
import { Permit, type CircuitBreakers } from '../../workers/breaker.js';
import type { DecidedView, ThreadReport, ToMain } from './protocol.js';

function emptyReport(): ThreadReport {
  return { t: 'report', accepted: [], rejected: [], decided: [], firstBytes: [], records: [], feedback: [], failures: [], breaker: [], admission: [] };
}

export class ThreadReporter implements RequestEvents, RequestProgressHook, CompletionSink, ConnectionFailureReporter {
  private batch = emptyReport();
  private pending = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly flushBound = (): void => this.flush();

  /**
   * @param post     posts to the main thread
   * @param offsetMs added to this thread's performance.now() stamps to get the main thread's
   */
  constructor(
    private readonly post: (m: ToMain) => void,
    private readonly offsetMs: number,
    private readonly reportMs: number,
  ) {}

  accepted(route: RouteKind, path?: string): void {
    this.batch.accepted.push(route, path ?? '');
    this.schedule();
  }

  rejected(route: RouteKind, code: ErrorCode, path?: string): void {
    this.batch.rejected.push(route, code, path ?? '');
    this.schedule();
  }

  /** Called by both the events and the progress hook of a decided attempt: one view crosses for both. */
  decided(v: RequestEventView | RequestProgressView): void {
    this.batch.decided.push(this.view(v));
    this.schedule();
  }

  firstByte(v: RequestProgressView, at: number): void {
    this.batch.firstBytes.push({ view: this.view(v), at: at + this.offsetMs });
    this.schedule();
  }

  record(rec: CompletionRecord): void {
    // The record is ours alone (the thread has no other sink): shift its stamps in place.
    const off = this.offsetMs;
    rec.arrivedAt += off;
    if (rec.decidedAt > 0) rec.decidedAt += off;
    if (rec.sentAt > 0) rec.sentAt += off;
    if (rec.firstTokenAt > 0) rec.firstTokenAt += off;
    rec.finishedAt += off;
    this.batch.records.push(rec);
    this.schedule();
  }

  feedback(f: CompletionFeedback): void {
    const off = this.offsetMs;
    this.batch.feedback.push({
      ...f,
      sentAt: f.sentAt > 0 ? f.sentAt + off : f.sentAt,
      firstTokenAt: f.firstTokenAt > 0 ? f.firstTokenAt + off : f.firstTokenAt,
      finishedAt: f.finishedAt + off,
    });
    this.schedule();
  }

  reportConnectionFailure(worker: WorkerEntry, reason: string): void {
    this.batch.failures.push({ slot: worker.slot, generation: worker.generation, reason });
    this.flush();
  }

  breakerOutcome(slot: number, generation: number, permit: Permit, success: boolean | undefined): void {
    this.batch.breaker.push(slot, generation, permit, success === undefined ? -1 : success ? 1 : 0);
    this.schedule();
  }

  /** Size-aware admission's recorder. */
  readonly admission = {
    record: (action: string, trigger: string): void => {
      this.batch.admission.push(action, trigger);
      this.schedule();
    },
  };

  /** Hand over whatever is buffered now. */
  flush(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.pending = false;
    const b = this.batch;
    if (b.accepted.length + b.rejected.length + b.decided.length + b.firstBytes.length + b.records.length + b.feedback.length + b.failures.length + b.breaker.length + b.admission.length === 0) return;
    this.batch = emptyReport();
    this.post(b);
  }

  private schedule(): void {
    if (this.pending) return;
    this.pending = true;
    if (this.reportMs > 0) this.timer = setTimeout(this.flushBound, this.reportMs);
    else setImmediate(this.flushBound);
  }

  private view(v: RequestEventView | RequestProgressView): DecidedView {
    const f = v.features;
    const w = v.worker;
    const off = this.offsetMs;
    return {
      requestId: v.requestId,
      route: v.route,
      // The routing text stays here: no hub hook reads it, and it can be the largest thing in a request.
      features: { ...f, text: '' },
      traceparent: 'traceparent' in v ? v.traceparent : '',
      timestamp: v.timestamp,
      arrivedAt: v.arrivedAt + off,
      decidedAt: v.decidedAt > 0 ? v.decidedAt + off : 0,
      attempts: v.attempts,
      decision: v.decision,
      worker: w === undefined ? undefined : { slot: w.slot, generation: w.generation, url: w.url, nodeId: w.nodeId },
    };
  }
}

/** The hub objects a report feeds (the main thread's RouterContext parts). */
export interface ReportTargets {
  readonly registry: WorkerRegistry;
  readonly monitor: WorkerMonitor;
  readonly policy: PolicyHost;
  readonly sinks: readonly CompletionSink[];
  readonly progress?: RequestProgressHook | undefined;
  readonly events?: RequestEvents | undefined;
  readonly breakers?: CircuitBreakers | undefined;
  /** Size-aware admission's counters (admission's own tally and the metrics'). */
  readonly admission?: ((action: string, trigger: string) => void) | undefined;
  readonly onSinkError: (err: unknown) => void;
}

export function applyReport(r: ThreadReport, to: ReportTargets): void {
  const events = to.events;
  if (events !== undefined) {
    const a = r.accepted;
    for (let i = 0; i + 1 < a.length; i += 2) events.accepted(a[i] as RouteKind, a[i + 1] || undefined);
    const j = r.rejected;
    for (let i = 0; i + 2 < j.length; i += 3) events.rejected(j[i] as RouteKind, j[i + 1] as ErrorCode, j[i + 2] || undefined);
  }
  if (to.admission !== undefined) for (let i = 0; i + 1 < r.admission.length; i += 2) to.admission(r.admission[i] as string, r.admission[i + 1] as string);
  for (const v of r.decided) {
    const view = hubView(v, to.registry);
    events?.decided(view);
    to.progress?.decided(view);
  }
  const progress = to.progress;
  if (progress !== undefined) for (const fb of r.firstBytes) progress.firstByte(hubView(fb.view, to.registry), fb.at);
  for (const rec of r.records) {
    for (const sink of to.sinks) {
      try {
        sink.record(rec);
      } catch (err) {
        to.onSinkError(err);
      }
    }
  }
  for (const f of r.feedback) to.policy.observe(f);
  for (const f of r.failures) {
    const w = to.registry.bySlot(f.slot);
    if (w !== undefined && w.generation === f.generation) to.monitor.reportConnectionFailure(w, f.reason);
  }
  const breakers = to.breakers;
  if (breakers !== undefined) {
    const b = r.breaker;
    for (let i = 0; i + 3 < b.length; i += 4) {
      const ref = { slot: b[i] as number, generation: b[i + 1] as number };
      const permit = b[i + 2] as Permit;
      const s = b[i + 3] as number;
      const success = s < 0 ? undefined : s === 1;
      if (permit === Permit.Probe) {
        // A thread's half-open probe: count it as one of the hub's probes for the transition rules (closing
        // after enough probe successes, re-opening on a probe failure) without touching the hub's own
        // probes in flight: acquire one here, record it at once.
        const p = breakers.tryAcquire(ref);
        breakers.record(ref, p === Permit.Refused ? Permit.Normal : p, success);
      } else breakers.record(ref, permit, success);
    }
  }
}

/** A decided view with the hub's own registry entry (or, for a worker removed meanwhile, its plain fields). */
function hubView(v: DecidedView, registry: WorkerRegistry): RequestEventView & RequestProgressView {
  const w = v.worker;
  let worker: WorkerEntry | undefined;
  if (w !== undefined) {
    const entry = registry.bySlot(w.slot);
    // A removed worker has no entry; hooks read only slot, generation, url and node id of it.
    worker = entry !== undefined && entry.generation === w.generation ? entry : (w as WorkerEntry);
  }
  return { ...v, worker };
}
