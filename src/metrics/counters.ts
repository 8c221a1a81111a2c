/**
 * Hot-path counters of the front end: plain numbers incremented in the main thread by the request hooks
 * (RouterContext.events) and the completion sink; the Prometheus exposition and /stats read them.
 * Nothing here allocates per request except the first error of a new (route, error_type) pair.
 *
 * Conventions other code can rely on:
 * - Admission (size-aware classing) calls `admission.record(action, trigger)` once per request.
 * - A Decision whose `scores.cache_hit` is 1 counts as a cache hit, 0 as a miss (absent: neither);
 *   `scores.imbalanced === 1` counts as a load-balancing event (cache_aware's imbalance branch).
 * - `setTreeSize(url, chars)` sets sgl_router_tree_size for a worker (cache_aware's tree).
 */
import type { ErrorCode } from '../errors.js';
import type { CompletionRecord, CompletionSink } from '../proxy/completion.js';
import type { RouteKind } from '../policies/types.js';
import type { WorkerEntry } from '../workers/registry.js';
import type { RequestEventView, RequestEvents } from './events.js';
import { ROUTE_LABEL_COUNT, routeLabelIndex } from './route-labels.js';

/** Admission actions and triggers shown (at zero) before anything is recorded: seed 002's vocabulary. */
export const ADMISSION_ACTIONS = ['single', 'multi'] as const;
export const ADMISSION_TRIGGERS = ['none', 'large_input', 'large_kv', 'memory_pressure'] as const;
const SEEDED_PAIRS: readonly [string, string][] = [
  ['single', 'none'],
  ['multi', 'large_input'],
  ['multi', 'large_kv'],
  ['multi', 'memory_pressure'],
];
/** Distinct actions / triggers kept; further names count under "other" (label cardinality stays bounded). */
const MAX_NAMES = 32;
const NAME_RE = /^[a-z][a-z0-9_]{0,63}$/;

export interface AdmissionSnapshot {
  readonly total: number;
  readonly actions: Readonly<Record<string, number>>;
  readonly triggers: Readonly<Record<string, number>>;
  /** action -> trigger -> count. */
  readonly by_action: Readonly<Record<string, Readonly<Record<string, number>>>>;
}

/** What size-aware admission reports: one call per admitted request. */
export interface AdmissionRecorder {
  record(action: string, trigger: string): void;
}

export class AdmissionCounters implements AdmissionRecorder {
  private readonly pairs = new Map<string, Map<string, number>>();
  private readonly triggers = new Set<string>();
  private total = 0;

  constructor() {
    for (const [a, t] of SEEDED_PAIRS) this.slot(a).set(t, 0);
    for (const t of ADMISSION_TRIGGERS) this.triggers.add(t);
  }

  record(action: string, trigger: string): void {
    const a = this.name(action, this.pairs.size, this.pairs.has(action));
    const t = this.name(trigger, this.triggers.size, this.triggers.has(trigger));
    this.triggers.add(t);
    const m = this.slot(a);
    m.set(t, (m.get(t) ?? 0) + 1);
    this.total++;
  }

  /** [action, trigger, count] for every pair seen or seeded. */
  entries(): [string, string, number][] {
    const out: [string, string, number][] = [];
    for (const [a, m] of this.pairs) for (const [t, n] of m) out.push([a, t, n]);
    return out;
  }

  snapshot(): AdmissionSnapshot {
    const actions: Record<string, number> = {};
    const triggers: Record<string, number> = {};
    const byAction: Record<string, Record<string, number>> = {};
    for (const t of this.triggers) triggers[t] = 0;
    for (const [a, m] of this.pairs) {
      actions[a] = 0;
      byAction[a] = {};
      for (const [t, n] of m) {
        actions[a] += n;
        triggers[t] = (triggers[t] ?? 0) + n;
        (byAction[a] as Record<string, number>)[t] = n;
      }
    }
    return { total: this.total, actions, triggers, by_action: byAction };
  }

  private slot(action: string): Map<string, number> {
    let m = this.pairs.get(action);
    if (m === undefined) {
      m = new Map();
      this.pairs.set(action, m);
    }
    return m;
  }

  private name(raw: string, known: number, seen: boolean): string {
    if (seen) return raw;
    if (!NAME_RE.test(raw)) return 'other';
    return known >= MAX_NAMES ? 'other' : raw;
  }
}

export class RouterMetrics implements RequestEvents, CompletionSink {
  /** Accepted data requests per route label (route-labels.ts order). */
  readonly requests = new Float64Array(ROUTE_LABEL_COUNT);
  /** Per route label: error_type -> count. */
  readonly errors: Map<string, number>[] = Array.from({ length: ROUTE_LABEL_COUNT }, () => new Map<string, number>());
  retriesExhausted = 0;
  /** Retries a request may have (the router's retry policy; set at start). A failure after all of them is "exhausted". */
  maxRetries = 1;
  cacheHits = 0;
  cacheMisses = 0;
  loadBalancingEvents = 0;
  readonly admission = new AdmissionCounters();
  private readonly decisions: Float64Array;
  private readonly decisionGeneration: Int32Array;
  private readonly treeSizes = new Map<string, number>();

  constructor(tableCapacity: number) {
    this.decisions = new Float64Array(tableCapacity);
    this.decisionGeneration = new Int32Array(tableCapacity);
  }

  accepted(route: RouteKind, path?: string): void {
    const i = routeLabelIndex(route, path);
    this.requests[i] = (this.requests[i] as number) + 1;
  }

  rejected(route: RouteKind, code: ErrorCode, path?: string): void {
    this.countError(routeLabelIndex(route, path), code);
  }

  decided(req: RequestEventView): void {
    const worker = req.worker;
    if (worker === undefined) return;
    const slot = worker.slot;
    if (slot < this.decisions.length) {
      if (this.decisionGeneration[slot] !== worker.generation) {
        this.decisionGeneration[slot] = worker.generation;
        this.decisions[slot] = 0;
      }
      this.decisions[slot] = (this.decisions[slot] as number) + 1;
    }
    const scores = req.decision?.scores;
    if (scores !== undefined) {
      const hit = scores['cache_hit'];
      if (hit === 1) this.cacheHits++;
      else if (hit === 0) this.cacheMisses++;
      if (scores['imbalanced'] === 1) this.loadBalancingEvents++;
    }
  }

  /** CompletionSink: errors by type, and requests that failed on their last allowed attempt. */
  record(rec: CompletionRecord): void {
    if (rec.status === 'completed') return;
    const type = rec.status === 'aborted' ? 'client_closed' : (rec.errorCode ?? `http_${rec.httpStatus}`);
    this.countError(routeLabelIndex(rec.route, rec.path), type);
    if (rec.status === 'failed' && this.maxRetries > 0 && rec.attempts > this.maxRetries) this.retriesExhausted++;
  }

  /** Decisions that chose this worker (its current incarnation in the slot). */
  decisionsFor(worker: WorkerEntry): number {
    const slot = worker.slot;
    if (slot >= this.decisions.length || this.decisionGeneration[slot] !== worker.generation) return 0;
    return this.decisions[slot] as number;
  }

  setTreeSize(url: string, chars: number): void {
    this.treeSizes.set(url, chars);
  }

  treeSize(url: string): number {
    return this.treeSizes.get(url) ?? 0;
  }

  /** Every (route label index, error_type, count). */
  errorEntries(): [number, string, number][] {
    const out: [number, string, number][] = [];
    this.errors.forEach((m, i) => {
      for (const [type, n] of m) out.push([i, type, n]);
    });
    return out;
  }

  private countError(route: number, type: string): void {
    const m = this.errors[route] as Map<string, number>;
    m.set(type, (m.get(type) ?? 0) + 1);
  }
}
