/**
 * The wire form of a front-end thread's report: one ordered stream of events as numbers (a Float64Array,
 * transferred, not copied), free-form strings in a list, and repeated strings (routes, paths, worker URLs,
 * policy names, statuses, error codes, score keys, groups) as codes into a dictionary the thread sends each
 * entry of once. Structured clone of the same records and views cost ~3x more CPU on each side (measured:
 * ~13 us per request to receive on the main thread against ~4.6 us), and the main thread receives every
 * thread's requests.
 *
 * Writer and reader walk the same field order per event kind; `undefined` is NaN for numbers, -1 for codes
 * and null for strings.
 */
import type { CompletionRecord } from '../../proxy/completion.js';
import type { CompletionFeedback, Decision, RequestFeatures, RouteKind } from '../../policies/types.js';
import type { DecidedView } from './protocol.js';

export const enum Ev {
  Accepted = 1,
  Rejected = 2,
  Decided = 3,
  FirstByte = 4,
  Record = 5,
  Feedback = 6,
  Failure = 7,
  Breaker = 8,
  Admission = 9,
}

const STATUSES = ['completed', 'failed', 'aborted'] as const;

/** One hand-over on the wire. */
export interface EncodedReport {
  readonly nums: ArrayBuffer;
  readonly count: number;
  readonly strs: (string | null)[];
  /** Dictionary entries new since the previous hand-over, in code order. */
  readonly defs: string[];
}

export class ReportWriter {
  private buf = new Float64Array(1024);
  private n = 0;
  private strs: (string | null)[] = [];
  private defs: string[] = [];
  private readonly codes = new Map<string, number>();

  get empty(): boolean {
    return this.n === 0;
  }

  /** The buffered events, and a fresh buffer for the next ones. */
  take(): EncodedReport {
    const nums = this.buf.buffer.slice(0, this.n * 8);
    const out: EncodedReport = { nums, count: this.n, strs: this.strs, defs: this.defs };
    this.n = 0;
    this.strs = [];
    this.defs = [];
    return out;
  }

  accepted(route: RouteKind, path: string | undefined): void {
    this.num(Ev.Accepted);
    this.code(route);
    this.code(path);
  }

  rejected(route: RouteKind, code: string, path: string | undefined): void {
    this.num(Ev.Rejected);
    this.code(route);
    this.code(code);
    this.code(path);
  }

  decided(v: DecidedView): void {
    this.num(Ev.Decided);
    this.view(v);
  }

  firstByte(v: DecidedView, at: number): void {
    this.num(Ev.FirstByte);
    this.view(v);
    this.num(at);
  }

  record(r: CompletionRecord): void {
    this.num(Ev.Record);
    this.str(r.requestId);
    this.code(r.route);
    this.code(r.path);
    this.num(r.stream ? 1 : 0);
    this.code(r.workerUrl);
    this.num(r.slot);
    this.num(r.nodeId);
    this.code(r.policy);
    this.str(r.reason);
    this.num(STATUSES.indexOf(r.status));
    this.num(r.httpStatus);
    this.code(r.errorCode);
    this.str(r.errorMessage ?? null);
    this.num(r.timestamp);
    this.num(r.arrivedAt);
    this.num(r.decidedAt);
    this.num(r.sentAt);
    this.num(r.firstTokenAt);
    this.num(r.finishedAt);
    this.num(r.inputTokens);
    this.num(r.outputTokens);
    this.num(r.cachedTokens);
    this.num(r.queueTime ?? Number.NaN);
    this.num(r.attempts);
    this.scores(r.scores);
    const itl = r.itl;
    const k = itl === undefined ? -1 : itl.length;
    this.num(k);
    for (let i = 0; i < k; i++) this.num(itl![i] as number);
  }

  feedback(f: CompletionFeedback): void {
    this.num(Ev.Feedback);
    this.str(f.requestId);
    this.code(f.url);
    this.num(f.slot);
    this.num(f.success ? 1 : 0);
    this.num(f.sentAt);
    this.num(f.firstTokenAt);
    this.num(f.finishedAt);
    this.num(f.inputTokens);
    this.num(f.outputTokens);
    this.num(f.cachedTokens);
    this.num(f.queueTime ?? Number.NaN);
  }

  failure(slot: number, generation: number, reason: string): void {
    this.num(Ev.Failure);
    this.num(slot);
    this.num(generation);
    this.str(reason);
  }

  breaker(slot: number, generation: number, permit: number, success: boolean | undefined): void {
    this.num(Ev.Breaker);
    this.num(slot);
    this.num(generation);
    this.num(permit);
    this.num(success === undefined ? -1 : success ? 1 : 0);
  }

  admission(action: string, trigger: string): void {
    this.num(Ev.Admission);
    this.code(action);
    this.code(trigger);
  }

  private view(v: DecidedView): void {
    const f = v.features;
    this.str(v.requestId);
    this.code(v.route);
    this.num(f.inputTokens);
    this.num(f.maxNewTokens);
    this.num(f.stream ? 1 : 0);
    this.code(f.model);
    this.code(f.group);
    this.str(f.admission ?? null);
    this.str(v.traceparent);
    this.num(v.timestamp);
    this.num(v.arrivedAt);
    this.num(v.decidedAt);
    this.num(v.attempts);
    const d = v.decision;
    this.num(d === undefined ? 0 : 1);
    if (d !== undefined) {
      this.num(d.slot);
      this.num(d.generation);
      this.code(d.url);
      this.str(d.reason);
      this.scores(d.scores);
    }
    const w = v.worker;
    this.num(w === undefined ? 0 : 1);
    if (w !== undefined) {
      this.num(w.slot);
      this.num(w.generation);
      this.code(w.url);
      this.num(w.nodeId);
    }
  }

  private scores(s: Readonly<Record<string, number>> | undefined): void {
    if (s === undefined) {
      this.num(-1);
      return;
    }
    const keys = Object.keys(s);
    this.num(keys.length);
    for (const k of keys) {
      this.code(k);
      this.num(s[k] as number);
    }
  }

  private grow(): void {
    const next = new Float64Array(this.buf.length * 2);
    next.set(this.buf);
    this.buf = next;
  }

  private num(x: number): void {
    if (this.n === this.buf.length) this.grow();
    this.buf[this.n++] = x;
  }

  private str(s: string | null): void {
    this.strs.push(s);
  }

  private code(s: string | undefined): void {
    if (s === undefined) {
      this.num(-1);
      return;
    }
    let c = this.codes.get(s);
    if (c === undefined) {
      c = this.codes.size;
      this.codes.set(s, c);
      this.defs.push(s);
    }
    this.num(c);
  }
}

/** What a decoded report is handed to, event by event, in the order they happened. */
export interface ReportVisitor {
  accepted(route: RouteKind, path: string | undefined): void;
  rejected(route: RouteKind, code: string, path: string | undefined): void;
  decided(v: DecidedView): void;
  firstByte(v: DecidedView, at: number): void;
  record(r: CompletionRecord): void;
  feedback(f: CompletionFeedback): void;
  failure(slot: number, generation: number, reason: string): void;
  breaker(slot: number, generation: number, permit: number, success: boolean | undefined): void;
  admission(action: string, trigger: string): void;
}

/** The main thread's side for one thread (its dictionary lives as long as that thread's writer). */
export class ReportReader {
  private readonly dict: string[] = [];
  private f = new Float64Array(0);
  private o = 0;
  private strs: (string | null)[] = [];
  private si = 0;

  read(r: EncodedReport, to: ReportVisitor): void {
    for (const d of r.defs) this.dict.push(d);
    this.f = new Float64Array(r.nums, 0, r.count);
    this.o = 0;
    this.strs = r.strs;
    this.si = 0;
    while (this.o < r.count) {
      const kind = this.num() as Ev;
      switch (kind) {
        case Ev.Accepted:
          to.accepted(this.code() as RouteKind, this.code());
          break;
        case Ev.Rejected:
          to.rejected(this.code() as RouteKind, this.code() as string, this.code());
          break;
        case Ev.Decided:
          to.decided(this.view());
          break;
        case Ev.FirstByte: {
          const v = this.view();
          to.firstByte(v, this.num());
          break;
        }
        case Ev.Record:
          to.record(this.record());
          break;
        case Ev.Feedback:
          to.feedback(this.feedbackOf());
          break;
        case Ev.Failure:
          to.failure(this.num(), this.num(), this.str() ?? '');
          break;
        case Ev.Breaker: {
          const slot = this.num();
          const generation = this.num();
          const permit = this.num();
          const s = this.num();
          to.breaker(slot, generation, permit, s < 0 ? undefined : s === 1);
          break;
        }
        case Ev.Admission:
          to.admission(this.code() as string, this.code() as string);
          break;
        default:
          throw new Error(`front-end thread report: unknown event kind ${String(kind)} at ${this.o - 1}`);
      }
    }
  }

  private record(): CompletionRecord {
    const requestId = this.str() as string;
    const route = this.code() as RouteKind;
    const path = this.code();
    const stream = this.num() === 1;
    const workerUrl = this.code() as string;
    const slot = this.num();
    const nodeId = this.num();
    const policy = this.code() as string;
    const reason = this.str() as string;
    const status = STATUSES[this.num()] ?? 'failed';
    const httpStatus = this.num();
    const errorCode = this.code();
    const errorMessage = this.str() ?? undefined;
    const timestamp = this.num();
    const arrivedAt = this.num();
    const decidedAt = this.num();
    const sentAt = this.num();
    const firstTokenAt = this.num();
    const finishedAt = this.num();
    const inputTokens = this.num();
    const outputTokens = this.num();
    const cachedTokens = this.num();
    const q = this.num();
    const attempts = this.num();
    const scores = this.scores();
    const k = this.num();
    let itl: number[] | undefined;
    if (k >= 0) {
      itl = new Array<number>(k);
      for (let i = 0; i < k; i++) itl[i] = this.num();
    }
    const rec: CompletionRecord = {
      requestId,
      route,
      stream,
      workerUrl,
      slot,
      nodeId,
      policy,
      reason,
      scores,
      status,
      httpStatus,
      errorCode,
      errorMessage,
      timestamp,
      arrivedAt,
      decidedAt,
      sentAt,
      firstTokenAt,
      finishedAt,
      inputTokens,
      outputTokens,
      cachedTokens,
      queueTime: Number.isNaN(q) ? undefined : q,
      itl,
      attempts,
    };
    if (path !== undefined) rec.path = path;
    return rec;
  }

  private feedbackOf(): CompletionFeedback {
    const requestId = this.str() as string;
    const url = this.code() as string;
    const slot = this.num();
    const success = this.num() === 1;
    const sentAt = this.num();
    const firstTokenAt = this.num();
    const finishedAt = this.num();
    const inputTokens = this.num();
    const outputTokens = this.num();
    const cachedTokens = this.num();
    const q = this.num();
    return { requestId, url, slot, success, sentAt, firstTokenAt, finishedAt, inputTokens, outputTokens, cachedTokens, queueTime: Number.isNaN(q) ? undefined : q };
  }

  private view(): DecidedView {
    const requestId = this.str() as string;
    const route = this.code() as RouteKind;
    const inputTokens = this.num();
    const maxNewTokens = this.num();
    const stream = this.num() === 1;
    const model = this.code();
    const group = this.code();
    const admission = this.str() ?? undefined;
    const traceparent = this.str() ?? '';
    const timestamp = this.num();
    const arrivedAt = this.num();
    const decidedAt = this.num();
    const attempts = this.num();
    let decision: Decision | undefined;
    if (this.num() === 1) {
      const slot = this.num();
      const generation = this.num();
      const url = this.code() as string;
      const reason = this.str() as string;
      const scores = this.scores();
      decision = scores === undefined ? { slot, generation, url, reason } : { slot, generation, url, reason, scores };
    }
    let worker: DecidedView['worker'];
    if (this.num() === 1) worker = { slot: this.num(), generation: this.num(), url: this.code() as string, nodeId: this.num() };
    // The routing text stays in the thread: no hub hook reads it.
    const features: RequestFeatures = { requestId, route, text: '', inputTokens, maxNewTokens, stream, model, group, admission };
    return { requestId, route, features, traceparent, timestamp, arrivedAt, decidedAt, attempts, decision, worker };
  }

  private scores(): Record<string, number> | undefined {
    const k = this.num();
    if (k < 0) return undefined;
    const s: Record<string, number> = {};
    for (let i = 0; i < k; i++) {
      const key = this.code() as string;
      s[key] = this.num();
    }
    return s;
  }

  private num(): number {
    return this.f[this.o++] as number;
  }

  private str(): string | null {
    return this.strs[this.si++] ?? null;
  }

  private code(): string | undefined {
    const c = this.f[this.o++] as number;
    return c < 0 ? undefined : this.dict[c];
  }
}
