/**
 * The trace store: the tracker actor's in-memory state, laid out in columns.
 *
 * Each trace lives in a slot: its numbers in typed arrays (one per field), its strings in plain arrays
 * (interned ones: shared), its request id as bytes in the id table, so a trace costs no object of its own
 * (only its scores object, when the policy gave scores): 100k traces are a few hundred thousand fewer
 * objects for the garbage collector to mark and move than one object per trace would be; the bench figure
 * trace.store.100k_heap_mb keeps count. Trace objects are made on demand, for answers and for the log.
 *
 * An IdTable (id-table.ts: ids as bytes outside the JS heap, hashed) finds a request id's slot; slots are
 * threaded on a doubly linked list (two Int32Arrays) in recency order: every update moves the slot to the
 * tail, so the head is the least recently updated trace. Both bounds are O(1) per trace:
 *   - max entries (LRU): a new trace when full takes the head's slot;
 *   - TTL: a trace expires ttl after its last update; expired traces are dropped from the head.
 * Reads do not count as use (a dashboard polling the list must not pin traces).
 *
 * Counts per status and per node are kept incrementally, so /v1/traces/stats never scans the store.
 * Repeated strings (worker URLs, policy names, reasons) arrive as fresh copies from another thread; they are
 * interned so 100k traces share one copy each.
 */
import type { DecidedEvent, EventTarget, FinishedEvent, RequestIdRef } from './events.js';
import { IdTable } from './id-table.js';
import { TRACE_STATUSES, type Trace, type TraceQuery, type TraceStatus } from './types.js';

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
const NIL = -1;
const INITIAL_SLOTS = 1024;

const PENDING = 0;
const STREAMING = 1;
const COMPLETED = 2;
const FAILED = 3;
const ABORTED = 4;
const STATUS_CODE: Readonly<Record<string, number>> = { pending: PENDING, streaming: STREAMING, completed: COMPLETED, failed: FAILED, aborted: ABORTED };

function isFinalCode(s: number): boolean {
  return s >= COMPLETED;
}

function nullable(x: number): number | null {
  return Number.isNaN(x) ? null : x;
}

export class TraceStore implements EventTarget {
  readonly maxEntries: number;
  readonly ttlMs: number;
  private readonly now: () => number;
  private readonly defaultPolicy: string;
  private readonly ids = new IdTable();
  private readonly interned = new Map<string, string>();
  private readonly statusCounts = new Float64Array(TRACE_STATUSES.length);
  /** Held traces per node id (-1: never routed). */
  private readonly nodeCounts = new Map<number, number>();
  readonly counters: StoreCounters = { recorded: 0, evictedLru: 0, expiredTtl: 0, loaded: 0 };
  /** Called with every trace that reached a final status (the trace log's append). */
  onFinal: ((t: Trace) => void) | undefined = undefined;

  // slot allocation and recency list
  private capacity = 0;
  private used = 0;
  private readonly free: number[] = [];
  private head = NIL;
  private tail = NIL;
  private older: Int32Array = new Int32Array(0);
  private newer: Int32Array = new Int32Array(0);

  // numeric columns (NaN: null)
  private timestamp: Float64Array = new Float64Array(0);
  private updated: Float64Array = new Float64Array(0);
  private queue: Float64Array = new Float64Array(0);
  private ttft: Float64Array = new Float64Array(0);
  private e2e: Float64Array = new Float64Array(0);
  private serverQueue: Float64Array = new Float64Array(0);
  // integer columns (-1: null; http 0: null)
  private node: Int32Array = new Int32Array(0);
  private input: Int32Array = new Int32Array(0);
  private output: Int32Array = new Int32Array(0);
  private cached: Int32Array = new Int32Array(0);
  private http: Int32Array = new Int32Array(0);
  private attempts: Int32Array = new Int32Array(0);
  private status: Uint8Array = new Uint8Array(0);
  private stream: Uint8Array = new Uint8Array(0);
  // string / object columns
  private readonly urls: (string | null)[] = [];
  private readonly policies: string[] = [];
  private readonly routes: string[] = [];
  private readonly reasons: (string | null)[] = [];
  private readonly errorCodes: (string | null)[] = [];
  private readonly errorMessages: (string | null)[] = [];
  private readonly scores: (Record<string, number> | null)[] = [];

  constructor(options: TraceStoreOptions) {
    if (!Number.isInteger(options.maxEntries) || options.maxEntries < 1) throw new Error(`maxEntries must be a positive integer, got ${options.maxEntries}`);
    if (!(options.ttlMs > 0)) throw new Error(`ttlMs must be positive, got ${options.ttlMs}`);
    this.maxEntries = options.maxEntries;
    this.ttlMs = options.ttlMs;
    this.now = options.now ?? Date.now;
    this.defaultPolicy = options.defaultPolicy ?? '';
  }

  get size(): number {
    return this.ids.count;
  }

  /** The trace of a request id, as a fresh object (undefined when not held). */
  get(id: string): Trace | undefined {
    const s = this.ids.find(id);
    return s < 0 ? undefined : this.view(s);
  }

  private slotOf(id: RequestIdRef): number {
    return typeof id === 'string' ? this.ids.find(id) : this.ids.findBytes(id.bytes, id.off, id.len);
  }

  // ---------------------------------------------------------------------------------------------
  // events (EventTarget)

  decided(e: DecidedEvent): void {
    let s = this.slotOf(e.requestId);
    if (s >= 0 && isFinalCode(this.status[s] as number)) {
      // A finished request's id reused by a new request: the new one replaces it.
      this.remove(s);
      s = -1;
    }
    if (s < 0) {
      s = this.allocate(e.requestId, PENDING, e.nodeId ?? -1);
      this.timestamp[s] = e.timestampMs;
      this.route(s, e.route);
      this.stream[s] = e.stream ? 1 : 0;
      this.input[s] = e.inputTokens;
      this.output[s] = -1;
      this.cached[s] = -1;
      this.ttft[s] = Number.NaN;
      this.e2e[s] = Number.NaN;
      this.serverQueue[s] = Number.NaN;
      this.http[s] = 0;
      this.errorCodes[s] = null;
      this.errorMessages[s] = null;
      this.counters.recorded++;
    } else {
      // A retry on another worker: the trace follows the request.
      this.setNode(s, e.nodeId ?? -1);
      this.touch(s);
    }
    this.urls[s] = this.intern(e.workerUrl);
    this.policies[s] = this.intern(e.policy) as string;
    this.reasons[s] = this.intern(e.reason);
    this.scores[s] = e.scores;
    this.queue[s] = e.queueMs;
    this.attempts[s] = e.attempts;
  }

  firstByte(requestId: RequestIdRef, ttftMs: number): void {
    const s = this.slotOf(requestId);
    if (s < 0 || this.status[s] !== PENDING) return;
    this.setStatus(s, STREAMING);
    this.ttft[s] = ttftMs;
    this.touch(s);
  }

  finished(e: FinishedEvent): void {
    const status = e.status === 'completed' ? COMPLETED : e.status === 'aborted' ? ABORTED : FAILED;
    let s = this.slotOf(e.requestId);
    if (s >= 0 && isFinalCode(this.status[s] as number)) {
      this.remove(s);
      s = -1;
    }
    const full = !e.outcomeOnly;
    if (s < 0) {
      // Never decided (e.g. no healthy worker), or its pending trace was already evicted (then the
      // decision's details are gone: arrival is estimated, policy is the router's).
      s = this.allocate(e.requestId, status, e.nodeId ?? -1);
      this.counters.recorded++;
      this.timestamp[s] = full ? e.timestampMs : Math.round((this.now() - e.e2eMs) * 1000) / 1000;
      this.policies[s] = this.intern(full ? e.policy : this.defaultPolicy) as string;
      this.reasons[s] = this.intern(e.reason);
      this.scores[s] = e.scores;
      this.queue[s] = e.queueMs ?? Number.NaN;
    } else {
      this.setNode(s, e.nodeId ?? -1);
      this.setStatus(s, status);
      if (full) {
        this.policies[s] = this.intern(e.policy) as string;
        this.reasons[s] = this.intern(e.reason);
        this.scores[s] = e.scores;
        this.queue[s] = e.queueMs ?? Number.NaN;
      }
      this.touch(s);
    }
    if (this.urls[s] !== e.workerUrl) this.urls[s] = this.intern(e.workerUrl);
    this.route(s, e.route);
    this.stream[s] = e.stream ? 1 : 0;
    this.ttft[s] = e.ttftMs ?? Number.NaN;
    this.e2e[s] = e.e2eMs;
    this.serverQueue[s] = e.serverQueueMs ?? Number.NaN;
    this.input[s] = e.inputTokens;
    this.output[s] = e.outputTokens;
    this.cached[s] = e.cachedTokens;
    this.http[s] = e.httpStatus ?? 0;
    this.errorCodes[s] = this.intern(e.errorCode);
    this.errorMessages[s] = e.errorMessage;
    this.attempts[s] = e.attempts;
    if (this.onFinal !== undefined) this.onFinal(this.view(s));
  }

  /**
   * A finished trace read back from the trace log (start-up reload). Callers insert oldest first; a trace
   * already held is newer and wins. `updatedMs` is when it finished. Expired traces are not loaded.
   */
  load(t: Trace, updatedMs: number): boolean {
    const status = STATUS_CODE[t.status];
    if (status === undefined || !isFinalCode(status) || this.ids.find(t.request_id) >= 0 || updatedMs < this.now() - this.ttlMs) return false;
    const s = this.allocate(t.request_id, status, t.node_id ?? -1);
    this.updated[s] = updatedMs;
    this.timestamp[s] = t.timestamp_ms;
    this.urls[s] = this.intern(t.worker_url);
    this.policies[s] = this.intern(t.routing_policy) as string;
    this.route(s, t.route);
    this.stream[s] = t.stream ? 1 : 0;
    this.reasons[s] = this.intern(t.reason);
    this.scores[s] = t.scores;
    this.queue[s] = t.queue_ms ?? Number.NaN;
    this.ttft[s] = t.ttft_ms ?? Number.NaN;
    this.e2e[s] = t.e2e_ms ?? Number.NaN;
    this.serverQueue[s] = t.server_queue_ms ?? Number.NaN;
    this.input[s] = t.input_tokens;
    this.output[s] = t.output_tokens ?? -1;
    this.cached[s] = t.cached_tokens ?? -1;
    this.http[s] = t.http_status ?? 0;
    this.errorCodes[s] = this.intern(t.error_code);
    this.errorMessages[s] = t.error_message;
    this.attempts[s] = t.attempts;
    this.counters.loaded++;
    return true;
  }

  // ---------------------------------------------------------------------------------------------
  // bounds

  /** Drop traces not updated for ttl; returns how many. Cheap when nothing expired (looks at the head only). */
  expire(now = this.now()): number {
    const cutoff = now - this.ttlMs;
    let n = 0;
    while (this.head !== NIL && (this.updated[this.head] as number) < cutoff) {
      this.remove(this.head);
      n++;
    }
    this.counters.expiredTtl += n;
    return n;
  }

  // ---------------------------------------------------------------------------------------------
  // queries

  /** Most recent first (by arrival), filtered; at most q.limit. */
  list(q: TraceQuery): Trace[] {
    const limit = q.limit;
    if (limit <= 0) return [];
    const wantNode = q.nodeId !== undefined;
    const node = q.nodeId === null || q.nodeId === undefined ? -1 : q.nodeId;
    const status = q.status === undefined ? -1 : (STATUS_CODE[q.status] as number);
    // A min-heap of the `limit` newest matches seen so far: O(n log limit), no full sort.
    const heap: number[] = [];
    for (let s = this.head; s !== NIL; s = this.newer[s] as number) {
      if (status >= 0 && this.status[s] !== status) continue;
      if (wantNode && this.node[s] !== node) continue;
      if (heap.length < limit) {
        heap.push(s);
        this.siftUp(heap, heap.length - 1);
      } else if (this.isNewer(s, heap[0] as number)) {
        heap[0] = s;
        this.siftDown(heap, 0);
      }
    }
    heap.sort((a, b) => (this.isNewer(a, b) ? -1 : this.isNewer(b, a) ? 1 : 0));
    return heap.map((s) => this.view(s));
  }

  /** Every held trace with a final status, least recently updated first, with when it was last updated. */
  forEachFinal(fn: (t: Trace, updatedMs: number) => void): void {
    for (let s = this.head; s !== NIL; s = this.newer[s] as number) {
      if (isFinalCode(this.status[s] as number)) fn(this.view(s), this.updated[s] as number);
    }
  }

  statusCount(s: TraceStatus): number {
    return this.statusCounts[STATUS_CODE[s] as number] as number;
  }

  perStatus(): Record<TraceStatus, number> {
    const out = {} as Record<TraceStatus, number>;
    for (let i = 0; i < TRACE_STATUSES.length; i++) out[TRACE_STATUSES[i] as TraceStatus] = this.statusCounts[i] as number;
    return out;
  }

  /** Held traces per node id, keys as text ("none": never routed), ascending by id. */
  perNode(): Record<string, number> {
    const keys = [...this.nodeCounts.keys()].sort((a, b) => (a < 0 ? 1 : b < 0 ? -1 : a - b));
    const out: Record<string, number> = {};
    for (const k of keys) out[k < 0 ? NONE_KEY : String(k)] = this.nodeCounts.get(k) as number;
    return out;
  }

  // ---------------------------------------------------------------------------------------------
  // internals

  /** The trace in slot s as an object (API answers, the log). */
  private view(s: number): Trace {
    const node = this.node[s] as number;
    const output = this.output[s] as number;
    const cached = this.cached[s] as number;
    const http = this.http[s] as number;
    return {
      request_id: this.ids.idOf(s),
      node_id: node < 0 ? null : node,
      worker_url: this.urls[s] ?? null,
      routing_policy: this.policies[s] as string,
      status: TRACE_STATUSES[this.status[s] as number] as TraceStatus,
      timestamp_ms: this.timestamp[s] as number,
      route: this.routes[s] as string,
      stream: this.stream[s] === 1,
      reason: this.reasons[s] ?? null,
      scores: this.scores[s] ?? null,
      queue_ms: nullable(this.queue[s] as number),
      ttft_ms: nullable(this.ttft[s] as number),
      e2e_ms: nullable(this.e2e[s] as number),
      server_queue_ms: nullable(this.serverQueue[s] as number),
      input_tokens: this.input[s] as number,
      output_tokens: output < 0 ? null : output,
      cached_tokens: cached < 0 ? null : cached,
      http_status: http === 0 ? null : http,
      error_code: this.errorCodes[s] ?? null,
      error_message: this.errorMessages[s] ?? null,
      attempts: this.attempts[s] as number,
    };
  }

  /** A slot for a new trace (the least recently updated one's, when full), linked at the tail. */
  private allocate(id: RequestIdRef, status: number, node: number): number {
    while (this.ids.count >= this.maxEntries && this.head !== NIL) {
      this.remove(this.head);
      this.counters.evictedLru++;
    }
    let s = this.free.pop();
    if (s === undefined) {
      if (this.used === this.capacity) this.grow();
      s = this.used++;
    }
    if (typeof id === 'string') this.ids.insert(s, id);
    else this.ids.insertBytes(s, id.bytes, id.off, id.len);
    this.status[s] = status;
    this.node[s] = node;
    this.updated[s] = this.now();
    this.statusCounts[status] = (this.statusCounts[status] as number) + 1;
    this.bumpNode(node, 1);
    this.append(s);
    return s;
  }

  private remove(s: number): void {
    this.ids.remove(s);
    this.unlink(s);
    const st = this.status[s] as number;
    this.statusCounts[st] = (this.statusCounts[st] as number) - 1;
    this.bumpNode(this.node[s] as number, -1);
    // Release what the slot references so the garbage collector can take it.
    this.reasons[s] = null;
    this.scores[s] = null;
    this.errorMessages[s] = null;
    this.free.push(s);
  }

  private touch(s: number): void {
    this.updated[s] = this.now();
    if (s === this.tail) return;
    this.unlink(s);
    this.append(s);
  }

  private append(s: number): void {
    this.older[s] = this.tail;
    this.newer[s] = NIL;
    if (this.tail !== NIL) this.newer[this.tail] = s;
    else this.head = s;
    this.tail = s;
  }

  private unlink(s: number): void {
    const o = this.older[s] as number;
    const n = this.newer[s] as number;
    if (o !== NIL) this.newer[o] = n;
    else this.head = n;
    if (n !== NIL) this.older[n] = o;
    else this.tail = o;
    this.older[s] = NIL;
    this.newer[s] = NIL;
  }

  private grow(): void {
    const next = Math.min(this.maxEntries, Math.max(INITIAL_SLOTS, this.capacity * 2));
    this.older = growInt(this.older, next);
    this.newer = growInt(this.newer, next);
    this.timestamp = growFloat(this.timestamp, next);
    this.updated = growFloat(this.updated, next);
    this.queue = growFloat(this.queue, next);
    this.ttft = growFloat(this.ttft, next);
    this.e2e = growFloat(this.e2e, next);
    this.serverQueue = growFloat(this.serverQueue, next);
    this.node = growInt(this.node, next);
    this.input = growInt(this.input, next);
    this.output = growInt(this.output, next);
    this.cached = growInt(this.cached, next);
    this.http = growInt(this.http, next);
    this.attempts = growInt(this.attempts, next);
    this.status = growByte(this.status, next);
    this.stream = growByte(this.stream, next);
    this.ids.grow(next);
    this.capacity = next;
  }

  private setStatus(s: number, status: number): void {
    const old = this.status[s] as number;
    if (old === status) return;
    this.statusCounts[old] = (this.statusCounts[old] as number) - 1;
    this.statusCounts[status] = (this.statusCounts[status] as number) + 1;
    this.status[s] = status;
  }

  private setNode(s: number, node: number): void {
    const old = this.node[s] as number;
    if (old === node) return;
    this.bumpNode(old, -1);
    this.bumpNode(node, 1);
    this.node[s] = node;
  }

  private bumpNode(node: number, by: number): void {
    const n = (this.nodeCounts.get(node) ?? 0) + by;
    if (n === 0) this.nodeCounts.delete(node);
    else this.nodeCounts.set(node, n);
  }

  private route(s: number, r: string): void {
    if (this.routes[s] !== r) this.routes[s] = this.intern(r) as string;
  }

  private intern(s: string | null): string | null {
    if (s === null) return null;
    const hit = this.interned.get(s);
    if (hit !== undefined) return hit;
    if (this.interned.size < MAX_INTERNED) this.interned.set(s, s);
    return s;
  }

  /** Arrival order, newest first; ties broken by id so the order is total and stable. */
  private isNewer(a: number, b: number): boolean {
    const ta = this.timestamp[a] as number;
    const tb = this.timestamp[b] as number;
    return ta > tb || (ta === tb && this.ids.compare(a, b) > 0);
  }

  private siftUp(h: number[], i: number): void {
    const x = h[i] as number;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = h[p] as number;
      if (!this.isNewer(parent, x)) break;
      h[i] = parent;
      i = p;
    }
    h[i] = x;
  }

  private siftDown(h: number[], i: number): void {
    const n = h.length;
    const x = h[i] as number;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      let c = l;
      if (r < n && this.isNewer(h[l] as number, h[r] as number)) c = r;
      const child = h[c] as number;
      if (!this.isNewer(x, child)) break;
      h[i] = child;
      i = c;
    }
    h[i] = x;
  }
}

function growFloat(a: Float64Array, size: number): Float64Array {
  const b = new Float64Array(size);
  b.set(a);
  return b;
}

function growInt(a: Int32Array, size: number): Int32Array {
  const b = new Int32Array(size);
  b.set(a);
  return b;
}

function growByte(a: Uint8Array, size: number): Uint8Array {
  const b = new Uint8Array(size);
  b.set(a);
  return b;
}
