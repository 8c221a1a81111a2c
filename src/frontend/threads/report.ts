/**
 * What a front-end thread's data path tells the main thread, batched by time: the request hooks (events,
 * progress), completion records, policy feedback, passive ejections, breaker outcomes and admission counts.
 *
 * Thread side (ThreadReporter): one object behind every hook of the thread's DataPlaneContext; each call
 * appends to the current batch (report-codec.ts: numbers, codes and a few strings, no object per event)
 * and the first one starts a timer (reportMs, a few ms): at most one crossing per few milliseconds whatever
 * the request rate (the tracker and stats hosts batch the same way). Stamps are shifted to the main
 * thread's performance.now() clock before they cross. A connection failure is handed over at once
 * (ejection should not wait).
 *
 * Main side (applyReport): decodes the batch, in order, into the real hub objects: metrics and
 * OpenTelemetry hooks, the tracker, every completion sink, the policy, the monitor, the breakers, the
 * admission counters.
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
import { ReportReader, ReportWriter, type ReportVisitor } from './report-codec.js';
import type { DecidedView, ThreadReport, ToMain } from './protocol.js';

export class ThreadReporter implements RequestEvents, RequestProgressHook, CompletionSink, ConnectionFailureReporter {
  private readonly w = new ReportWriter();
  private pending = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly flushBound = (): void => this.flush();

  /**
   * @param post     posts to the main thread (the report's number buffer is transferred)
   * @param offsetMs added to this thread's performance.now() stamps to get the main thread's
   */
  constructor(
    private readonly post: (m: ToMain, transfer: ArrayBuffer[]) => void,
    private readonly offsetMs: number,
    private readonly reportMs: number,
  ) {}

  accepted(route: RouteKind, path?: string): void {
    this.w.accepted(route, path);
    this.schedule();
  }

  rejected(route: RouteKind, code: ErrorCode, path?: string): void {
    this.w.rejected(route, code, path);
    this.schedule();
  }

  /** Called by the events hook of a decided attempt: the hub hands the view to its progress hook too. */
  decided(v: RequestEventView | RequestProgressView): void {
    this.w.decided(this.view(v));
    this.schedule();
  }

  firstByte(v: RequestProgressView, at: number): void {
    this.w.firstByte(this.view(v), at + this.offsetMs);
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
    this.w.record(rec);
    this.schedule();
  }

  feedback(f: CompletionFeedback): void {
    const off = this.offsetMs;
    this.w.feedback({
      ...f,
      sentAt: f.sentAt > 0 ? f.sentAt + off : f.sentAt,
      firstTokenAt: f.firstTokenAt > 0 ? f.firstTokenAt + off : f.firstTokenAt,
      finishedAt: f.finishedAt + off,
    });
    this.schedule();
  }

  reportConnectionFailure(worker: WorkerEntry, reason: string): void {
    this.w.failure(worker.slot, worker.generation, reason);
    this.flush();
  }

  breakerOutcome(slot: number, generation: number, permit: Permit, success: boolean | undefined): void {
    this.w.breaker(slot, generation, permit, success);
    this.schedule();
  }

  /** Size-aware admission's recorder. */
  readonly admission = {
    record: (action: string, trigger: string): void => {
      this.w.admission(action, trigger);
      this.schedule();
    },
  };

  /** Hand over whatever is buffered now. */
  flush(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.pending = false;
    if (this.w.empty) return;
    const r = this.w.take();
    this.post({ t: 'report', ...r }, [r.nums]);
  }

  private schedule(): void {
    if (this.pending) return;
    this.pending = true;
    if (this.reportMs > 0) this.timer = setTimeout(this.flushBound, this.reportMs);
    else setImmediate(this.flushBound);
  }

  private view(v: RequestEventView | RequestProgressView): DecidedView {
    const w = v.worker;
    const off = this.offsetMs;
    return {
      requestId: v.requestId,
      route: v.route,
      features: v.features,
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

/** Decodes one thread's reports (its dictionary) into the hub objects. */
export class ReportApplier implements ReportVisitor {
  private readonly reader = new ReportReader();

  constructor(private readonly to: ReportTargets) {}

  apply(r: ThreadReport): void {
    this.reader.read(r, this);
  }

  accepted(route: RouteKind, path: string | undefined): void {
    this.to.events?.accepted(route, path);
  }

  rejected(route: RouteKind, code: string, path: string | undefined): void {
    this.to.events?.rejected(route, code as ErrorCode, path);
  }

  decided(v: DecidedView): void {
    const view = hubView(v, this.to.registry);
    this.to.events?.decided(view);
    this.to.progress?.decided(view);
  }

  firstByte(v: DecidedView, at: number): void {
    this.to.progress?.firstByte(hubView(v, this.to.registry), at);
  }

  record(rec: CompletionRecord): void {
    for (const sink of this.to.sinks) {
      try {
        sink.record(rec);
      } catch (err) {
        this.to.onSinkError(err);
      }
    }
  }

  feedback(f: CompletionFeedback): void {
    this.to.policy.observe(f);
  }

  failure(slot: number, generation: number, reason: string): void {
    const w = this.to.registry.bySlot(slot);
    if (w !== undefined && w.generation === generation) this.to.monitor.reportConnectionFailure(w, reason);
  }

  breaker(slot: number, generation: number, permit: number, success: boolean | undefined): void {
    const breakers = this.to.breakers;
    if (breakers === undefined) return;
    const ref = { slot, generation };
    if (permit === Permit.Probe) {
      // A thread's half-open probe: count it as one of the hub's probes for the transition rules (closing
      // after enough probe successes, re-opening on a probe failure) without touching the hub's own
      // probes in flight: acquire one here, record it at once.
      const p = breakers.tryAcquire(ref);
      breakers.record(ref, p === Permit.Refused ? Permit.Normal : p, success);
    } else breakers.record(ref, permit as Permit, success);
  }

  admission(action: string, trigger: string): void {
    this.to.admission?.(action, trigger);
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
