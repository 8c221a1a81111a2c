/**
 * The trace store: the tracker actor's in-memory state. One trace per request id in a Map whose insertion
 * order is the recency order: every update moves the trace to the end, so the head is always the least
 * recently updated trace. That gives both bounds in O(1) per trace:
 *   - max entries (LRU): over the cap, drop from the head;
 *   - TTL: a trace expires ttl after its last update; expired traces are dropped from the head.
 * Reads do not count as use (a dashboard polling the list must not pin traces).
 *
 * Counts per status and per node are kept incrementally, so /v1/traces/stats never scans the store.
 * Repeated strings (worker URLs, policy names, reasons) arrive as fresh copies from another thread; they are
 * interned so 100k traces share one copy each.
 */
import type { DecidedEvent, EventTarget, FinishedEvent } from './events.js';
import { isFinalStatus, TRACE_STATUSES, type Trace, type TraceQuery, type TraceStatus } from './types.js';

/** A stored trace: the trace plus the wall-clock ms of its last update (TTL and recency). */
export interface StoredTrace extends Trace {
  updated_ms: number;
}

export interface TraceStoreOptions {
  readonly maxEntries: number;
  readonly ttlMs: number;
  /** Wall clock (ms); injectable for tests. */
  readonly now?: () => number;
  /** routing_policy of a trace whose decision was never seen (its pending trace evicted before the end). */
  readonly defaultPolicy?: string;
}

export interface StoreCounters {
  recorded: number;
  evictedLru: number;
  expiredTtl: number;
  loaded: number;
}

/** Distinct strings interned at most (reasons may carry numbers; beyond this, strings are kept as they come). */
const MAX_INTERNED = 16_384;
const NONE_KEY = 'none';

export class TraceStore implements EventTarget {
  readonly maxEntries: number;
  readonly ttlMs: number;
  private readonly now: () => number;
  private readonly defaultPolicy: string;
  private readonly traces = new Map<string, StoredTrace>();
  private readonly interned = new Map<string, string>();
  private readonly statusCounts: Record<TraceStatus, number> = { pending: 0, streaming: 0, completed: 0, failed: 0, aborted: 0 };
  private readonly nodeCounts = new Map<number | null, number>();
  readonly counters: StoreCounters = { recorded: 0, evictedLru: 0, expiredTtl: 0, loaded: 0 };
  /** Called with every trace that reached a final status (the trace log's append). */
  onFinal: ((t: StoredTrace) => void) | undefined = undefined;

  constructor(options: TraceStoreOptions) {
    if (!Number.isInteger(options.maxEntries) || options.maxEntries < 1) throw new Error(`maxEntries must be a positive integer, got ${options.maxEntries}`);
    if (!(options.ttlMs > 0)) throw new Error(`ttlMs must be positive, got ${options.ttlMs}`);
    this.maxEntries = options.maxEntries;
    this.ttlMs = options.ttlMs;
    this.now = options.now ?? Date.now;
    this.defaultPolicy = options.defaultPolicy ?? '';
  }

  get size(): number {
    return this.traces.size;
  }

  get(id: string): StoredTrace | undefined {
    return this.traces.get(id);
  }

  // ---------------------------------------------------------------------------------------------
  // events (EventTarget)

  decided(e: DecidedEvent): void {
    let t = this.traces.get(e.requestId);
    if (t !== undefined && isFinalStatus(t.status)) {
      // A finished request's id reused by a new request: the new one replaces it.
      this.remove(t);
      t = undefined;
    }
    const nodeId = e.nodeId;
    if (t === undefined) {
      t = {
        request_id: e.requestId,
        node_id: nodeId,
        worker_url: this.intern(e.workerUrl),
        routing_policy: this.intern(e.policy) as string,
        status: 'pending',
        timestamp_ms: e.timestampMs,
        route: this.intern(e.route) as string,
        stream: e.stream,
        reason: this.intern(e.reason),
        scores: e.scores,
        queue_ms: e.queueMs,
        ttft_ms: null,
        e2e_ms: null,
        server_queue_ms: null,
        input_tokens: e.inputTokens,
        output_tokens: null,
        cached_tokens: null,
        http_status: null,
        error_code: null,
        error_message: null,
        attempts: e.attempts,
        updated_ms: 0,
      };
      this.counters.recorded++;
      this.add(t);
    } else {
      // A retry on another worker: the trace follows the request.
      this.setNode(t, nodeId);
      t.worker_url = this.intern(e.workerUrl);
      t.reason = this.intern(e.reason);
      t.scores = e.scores;
      t.queue_ms = e.queueMs;
      t.attempts = e.attempts;
      this.touch(t);
    }
    this.enforceCap();
  }

  firstByte(requestId: string, ttftMs: number): void {
    const t = this.traces.get(requestId);
    if (t === undefined || t.status !== 'pending') return;
    this.setStatus(t, 'streaming');
    t.ttft_ms = ttftMs;
    this.touch(t);
  }

  finished(e: FinishedEvent): void {
    const status: TraceStatus = e.status === 'completed' || e.status === 'failed' || e.status === 'aborted' ? e.status : 'failed';
    let t = this.traces.get(e.requestId);
    if (t !== undefined && isFinalStatus(t.status)) {
      this.remove(t);
      t = undefined;
    }
    if (t === undefined) {
      // Never decided (e.g. no healthy worker), or its pending trace was already evicted (then the
      // decision's details are gone: arrival is estimated, policy is the router's).
      t = {
        request_id: e.requestId,
        node_id: e.nodeId,
        worker_url: this.intern(e.workerUrl),
        routing_policy: this.intern(e.outcomeOnly ? this.defaultPolicy : e.policy) as string,
        status,
        timestamp_ms: e.outcomeOnly ? Math.round((this.now() - e.e2eMs) * 1000) / 1000 : e.timestampMs,
        route: this.intern(e.route) as string,
        stream: e.stream,
        reason: this.intern(e.reason),
        scores: e.scores,
        queue_ms: e.queueMs,
        ttft_ms: e.ttftMs,
        e2e_ms: e.e2eMs,
        server_queue_ms: e.serverQueueMs,
        input_tokens: e.inputTokens,
        output_tokens: e.outputTokens,
        cached_tokens: e.cachedTokens,
        http_status: e.httpStatus,
        error_code: this.intern(e.errorCode),
        error_message: e.errorMessage,
        attempts: e.attempts,
        updated_ms: 0,
      };
      this.counters.recorded++;
      this.add(t);
    } else {
      this.setNode(t, e.nodeId);
      this.setStatus(t, status);
      if (t.worker_url !== e.workerUrl) t.worker_url = this.intern(e.workerUrl);
      if (!e.outcomeOnly) {
        t.routing_policy = this.intern(e.policy) as string;
        t.reason = this.intern(e.reason);
        t.scores = e.scores;
        t.queue_ms = e.queueMs;
      }
      t.ttft_ms = e.ttftMs;
      t.e2e_ms = e.e2eMs;
      t.server_queue_ms = e.serverQueueMs;
      t.input_tokens = e.inputTokens;
      t.output_tokens = e.outputTokens;
      t.cached_tokens = e.cachedTokens;
      t.http_status = e.httpStatus;
      t.error_code = this.intern(e.errorCode);
      t.error_message = e.errorMessage;
      t.attempts = e.attempts;
      this.touch(t);
    }
    this.onFinal?.(t);
    this.enforceCap();
  }

  /**
   * A finished trace read back from the trace log (start-up reload). Callers insert oldest first; a trace
   * already held is newer and wins. `updatedMs` is when it finished. Expired traces are not loaded.
   */
  load(trace: Trace, updatedMs: number): boolean {
    if (this.traces.has(trace.request_id) || updatedMs < this.now() - this.ttlMs || !isFinalStatus(trace.status)) return false;
    const t: StoredTrace = {
      request_id: trace.request_id,
      node_id: trace.node_id,
      worker_url: this.intern(trace.worker_url),
      routing_policy: this.intern(trace.routing_policy) as string,
      status: trace.status,
      timestamp_ms: trace.timestamp_ms,
      route: this.intern(trace.route) as string,
      stream: trace.stream,
      reason: this.intern(trace.reason),
      scores: trace.scores,
      queue_ms: trace.queue_ms,
      ttft_ms: trace.ttft_ms,
      e2e_ms: trace.e2e_ms,
      server_queue_ms: trace.server_queue_ms,
      input_tokens: trace.input_tokens,
      output_tokens: trace.output_tokens,
      cached_tokens: trace.cached_tokens,
      http_status: trace.http_status,
      error_code: this.intern(trace.error_code),
      error_message: trace.error_message,
      attempts: trace.attempts,
      updated_ms: updatedMs,
    };
    this.statusCounts[t.status]++;
    this.bumpNode(t.node_id, 1);
    this.traces.set(t.request_id, t);
    this.counters.loaded++;
    this.enforceCap();
    return true;
  }

  // ---------------------------------------------------------------------------------------------
  // bounds

  /** Drop traces not updated for ttl; returns how many. Cheap when nothing expired (looks at the head only). */
  expire(now = this.now()): number {
    const cutoff = now - this.ttlMs;
    let n = 0;
    for (const t of this.traces.values()) {
      if (t.updated_ms >= cutoff) break;
      this.remove(t);
      n++;
    }
    this.counters.expiredTtl += n;
    return n;
  }

  private enforceCap(): void {
    if (this.traces.size <= this.maxEntries) return;
    for (const t of this.traces.values()) {
      if (this.traces.size <= this.maxEntries) break;
      this.remove(t);
      this.counters.evictedLru++;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // queries

  /** Most recent first (by arrival), filtered; at most q.limit. */
  list(q: TraceQuery): StoredTrace[] {
    const limit = q.limit;
    if (limit <= 0) return [];
    const wantNode = q.nodeId !== undefined;
    const node = q.nodeId;
    const status = q.status;
    // A min-heap of the `limit` newest matches seen so far: O(n log limit), no full sort.
    const heap: StoredTrace[] = [];
    for (const t of this.traces.values()) {
      if (status !== undefined && t.status !== status) continue;
      if (wantNode && t.node_id !== node) continue;
      if (heap.length < limit) {
        heap.push(t);
        siftUp(heap, heap.length - 1);
      } else if (newer(t, heap[0] as StoredTrace)) {
        heap[0] = t;
        siftDown(heap, 0);
      }
    }
    return heap.sort((a, b) => (newer(a, b) ? -1 : newer(b, a) ? 1 : 0));
  }

  statusCount(s: TraceStatus): number {
    return this.statusCounts[s];
  }

  perStatus(): Record<TraceStatus, number> {
    const out = {} as Record<TraceStatus, number>;
    for (const s of TRACE_STATUSES) out[s] = this.statusCounts[s];
    return out;
  }

  /** Held traces per node id, keys as text ("none": never routed), ascending by id. */
  perNode(): Record<string, number> {
    const keys = [...this.nodeCounts.keys()].sort((a, b) => (a === null ? 1 : b === null ? -1 : a - b));
    const out: Record<string, number> = {};
    for (const k of keys) out[k === null ? NONE_KEY : String(k)] = this.nodeCounts.get(k) as number;
    return out;
  }

  // ---------------------------------------------------------------------------------------------
  // internals

  private add(t: StoredTrace): void {
    t.updated_ms = this.now();
    this.statusCounts[t.status]++;
    this.bumpNode(t.node_id, 1);
    this.traces.set(t.request_id, t);
  }

  private remove(t: StoredTrace): void {
    this.traces.delete(t.request_id);
    this.statusCounts[t.status]--;
    this.bumpNode(t.node_id, -1);
  }

  private touch(t: StoredTrace): void {
    t.updated_ms = this.now();
    // Re-insertion moves it to the end of the recency order.
    this.traces.delete(t.request_id);
    this.traces.set(t.request_id, t);
  }

  private setStatus(t: StoredTrace, s: TraceStatus): void {
    if (t.status === s) return;
    this.statusCounts[t.status]--;
    this.statusCounts[s]++;
    t.status = s;
  }

  private setNode(t: StoredTrace, nodeId: number | null): void {
    if (t.node_id === nodeId) return;
    this.bumpNode(t.node_id, -1);
    this.bumpNode(nodeId, 1);
    t.node_id = nodeId;
  }

  private bumpNode(nodeId: number | null, by: number): void {
    const n = (this.nodeCounts.get(nodeId) ?? 0) + by;
    if (n === 0) this.nodeCounts.delete(nodeId);
    else this.nodeCounts.set(nodeId, n);
  }

  private intern(s: string | null): string | null {
    if (s === null) return null;
    const hit = this.interned.get(s);
    if (hit !== undefined) return hit;
    if (this.interned.size < MAX_INTERNED) this.interned.set(s, s);
    return s;
  }
}

/** Arrival order, newest first; ties broken by id so the order is total and stable. */
function newer(a: Trace, b: Trace): boolean {
  return a.timestamp_ms > b.timestamp_ms || (a.timestamp_ms === b.timestamp_ms && a.request_id > b.request_id);
}

function siftUp(h: StoredTrace[], i: number): void {
  const x = h[i] as StoredTrace;
  while (i > 0) {
    const p = (i - 1) >> 1;
    const parent = h[p] as StoredTrace;
    if (!newer(parent, x)) break;
    h[i] = parent;
    i = p;
  }
  h[i] = x;
}

function siftDown(h: StoredTrace[], i: number): void {
  const n = h.length;
  const x = h[i] as StoredTrace;
  for (;;) {
    const l = 2 * i + 1;
    if (l >= n) break;
    const r = l + 1;
    let c = l;
    if (r < n && newer(h[l] as StoredTrace, h[r] as StoredTrace)) c = r;
    const child = h[c] as StoredTrace;
    if (!newer(x, child)) break;
    h[i] = child;
    i = c;
  }
  h[i] = x;
}
