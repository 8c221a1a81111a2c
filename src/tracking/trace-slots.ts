/**
 * The trace store's slots: where traces live, how they are found, bounded and counted (store.ts applies
 * events to them and answers queries).
 *
 * Each trace lives in a slot: its numbers in typed arrays (one per field), its repeated strings (worker
 * URL, policy, route, error code) as codes of one shared string table (code-columns.ts), its request id
 * as bytes in the id table, its reason as bytes (inline-strings.ts), its scores as codes and numbers
 * (score-columns.ts) and an error message, when it has one, in a sparse map.
 * So a trace costs no object of its own: 100k traces add nothing for the garbage collector to mark, and
 * evicting them leaves no garbage in the old generation; the bench figures trace.store.100k_heap_mb and
 * trace.tracker.paced_thread_us keep count. Trace objects are made on demand, for answers and the log.
 *
 * An IdTable (id-table.ts: ids as bytes outside the JS heap, hashed) finds a request id's slot; slots are
 * threaded on a doubly linked list (two Int32Arrays) in recency order: every update moves the slot to the
 * tail, so the head is the least recently updated trace. Both bounds are O(1) per trace:
 *   - max entries (LRU): a new trace when full takes the head's slot;
 *   - TTL: a trace expires ttl after its last update; expired traces are dropped from the head.
 * Reads do not count as use (a dashboard polling the list must not pin traces).
 *
 * Counts per status and per node are kept incrementally, so /v1/traces/stats never scans the store.
 */
import type { RequestIdRef } from './events.js';
import { IdTable } from './id-table.js';
import { CodeColumn, SparseStrings, StringTable } from './code-columns.js';
import { InlineStrings } from './inline-strings.js';
import { ScoreColumns } from './score-columns.js';
import { TRACE_STATUSES, type Trace, type TraceStatus } from './types.js';

export interface TraceStoreOptions {
  readonly maxEntries: number;
  readonly ttlMs: number;
  /** Wall clock (ms); injectable for tests. */
  readonly now?: () => number;
  /** routing_policy of a trace whose decision was never seen (its pending trace evicted before the end). */
  readonly defaultPolicy?: string;
  /** Slots made room for at once (default PREALLOCATED_SLOTS, at most maxEntries); then doubling. */
  readonly initialSlots?: number;
}

export interface StoreCounters {
  recorded: number;
  evictedLru: number;
  expiredTtl: number;
  loaded: number;
}

const NONE_KEY = 'none';
export const NIL = -1;
/**
 * Room made at once for the default 100k traces. The columns are typed arrays whose pages the OS commits
 * only when first written, so unused room costs address space, not memory; growing by doubling instead
 * (from 1,024) spent ~30% of a fresh router's tracker-thread CPU over its first 100k requests copying
 * columns and rehashing the id table (thread profile at 14k req/s).
 */
const PREALLOCATED_SLOTS = 1 << 17;
/** Reasons up to this many ASCII chars are kept as bytes (the built-in policies' fit; longer: as strings). */
const REASON_BYTES = 96;

export const PENDING = 0;
export const STREAMING = 1;
export const COMPLETED = 2;
export const FAILED = 3;
export const ABORTED = 4;
export const STATUS_CODE: Readonly<Record<string, number>> = { pending: PENDING, streaming: STREAMING, completed: COMPLETED, failed: FAILED, aborted: ABORTED };

export function isFinalCode(s: number): boolean {
  return s >= COMPLETED;
}

function nullable(x: number): number | null {
  return Number.isNaN(x) ? null : x;
}

export class TraceSlots {
  readonly maxEntries: number;
  readonly ttlMs: number;
  protected readonly now: () => number;
  protected readonly defaultPolicy: string;
  private readonly initialSlots: number;
  protected readonly ids = new IdTable();
  protected readonly statusCounts = new Float64Array(TRACE_STATUSES.length);
  /** Held traces per node id (-1: never routed). */
  protected readonly nodeCounts = new Map<number, number>();
  readonly counters: StoreCounters = { recorded: 0, evictedLru: 0, expiredTtl: 0, loaded: 0 };
  /** Called with every trace that reached a final status (the trace log's append). */
  onFinal: ((t: Trace) => void) | undefined = undefined;

  // slot allocation and recency list
  protected capacity = 0;
  protected used = 0;
  protected readonly free: number[] = [];
  protected head = NIL;
  protected tail = NIL;
  protected older: Int32Array = new Int32Array(0);
  protected newer: Int32Array = new Int32Array(0);

  // numeric columns (NaN: null)
  protected timestamp: Float64Array = new Float64Array(0);
  protected updated: Float64Array = new Float64Array(0);
  protected queue: Float64Array = new Float64Array(0);
  protected ttft: Float64Array = new Float64Array(0);
  protected e2e: Float64Array = new Float64Array(0);
  protected serverQueue: Float64Array = new Float64Array(0);
  // integer columns (-1: null; http 0: null)
  protected node: Int32Array = new Int32Array(0);
  protected input: Int32Array = new Int32Array(0);
  protected output: Int32Array = new Int32Array(0);
  protected cached: Int32Array = new Int32Array(0);
  protected http: Int32Array = new Int32Array(0);
  protected attempts: Int32Array = new Int32Array(0);
  protected status: Uint8Array = new Uint8Array(0);
  protected stream: Uint8Array = new Uint8Array(0);
  // string columns
  private readonly strings = new StringTable();
  protected readonly urls = new CodeColumn(this.strings);
  protected readonly policies = new CodeColumn(this.strings);
  protected readonly routes = new CodeColumn(this.strings);
  protected readonly errorCodes = new CodeColumn(this.strings);
  /** Per-request text: bytes in a column (no string object per trace). */
  protected readonly reasons = new InlineStrings(REASON_BYTES);
  protected readonly errorMessages = new SparseStrings();
  protected readonly scores = new ScoreColumns();

  constructor(options: TraceStoreOptions) {
    if (!Number.isInteger(options.maxEntries) || options.maxEntries < 1) throw new Error(`maxEntries must be a positive integer, got ${options.maxEntries}`);
    if (!(options.ttlMs > 0)) throw new Error(`ttlMs must be positive, got ${options.ttlMs}`);
    this.maxEntries = options.maxEntries;
    this.ttlMs = options.ttlMs;
    this.now = options.now ?? Date.now;
    this.defaultPolicy = options.defaultPolicy ?? '';
    this.initialSlots = Math.max(1, Math.floor(options.initialSlots ?? PREALLOCATED_SLOTS));
  }

  get size(): number {
    return this.ids.count;
  }

  /** The trace of a request id, as a fresh object (undefined when not held). */
  get(id: string): Trace | undefined {
    const s = this.ids.find(id);
    return s < 0 ? undefined : this.view(s);
  }

  protected slotOf(id: RequestIdRef): number {
    return typeof id === 'string' ? this.ids.find(id) : this.ids.findBytes(id.bytes, id.off, id.len);
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
  // counts

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
  protected view(s: number): Trace {
    const node = this.node[s] as number;
    const output = this.output[s] as number;
    const cached = this.cached[s] as number;
    const http = this.http[s] as number;
    return {
      request_id: this.ids.idOf(s),
      node_id: node < 0 ? null : node,
      worker_url: this.urls.get(s),
      routing_policy: this.policies.get(s) ?? '',
      status: TRACE_STATUSES[this.status[s] as number] as TraceStatus,
      timestamp_ms: this.timestamp[s] as number,
      route: this.routes.get(s) ?? 'other',
      stream: this.stream[s] === 1,
      reason: this.reasons.get(s),
      scores: this.scores.get(s),
      queue_ms: nullable(this.queue[s] as number),
      ttft_ms: nullable(this.ttft[s] as number),
      e2e_ms: nullable(this.e2e[s] as number),
      server_queue_ms: nullable(this.serverQueue[s] as number),
      input_tokens: this.input[s] as number,
      output_tokens: output < 0 ? null : output,
      cached_tokens: cached < 0 ? null : cached,
      http_status: http === 0 ? null : http,
      error_code: this.errorCodes.get(s),
      error_message: this.errorMessages.get(s),
      attempts: this.attempts[s] as number,
    };
  }

  /** A slot for a new trace (the least recently updated one's, when full), linked at the tail. */
  protected allocate(id: RequestIdRef, status: number, node: number): number {
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

  protected remove(s: number): void {
    this.ids.remove(s);
    this.unlink(s);
    const st = this.status[s] as number;
    this.statusCounts[st] = (this.statusCounts[st] as number) - 1;
    this.bumpNode(this.node[s] as number, -1);
    // Release what the slot references so the garbage collector can take it.
    this.reasons.set(s, null);
    this.scores.set(s, null);
    this.errorMessages.set(s, null);
    this.free.push(s);
  }

  protected touch(s: number): void {
    this.updated[s] = this.now();
    if (s === this.tail) return;
    this.unlink(s);
    this.append(s);
  }

  protected append(s: number): void {
    this.older[s] = this.tail;
    this.newer[s] = NIL;
    if (this.tail !== NIL) this.newer[this.tail] = s;
    else this.head = s;
    this.tail = s;
  }

  protected unlink(s: number): void {
    const o = this.older[s] as number;
    const n = this.newer[s] as number;
    if (o !== NIL) this.newer[o] = n;
    else this.head = n;
    if (n !== NIL) this.older[n] = o;
    else this.tail = o;
    this.older[s] = NIL;
    this.newer[s] = NIL;
  }

  protected grow(): void {
    const next = Math.min(this.maxEntries, Math.max(this.initialSlots, this.capacity * 2));
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
    this.urls.grow(next);
    this.policies.grow(next);
    this.routes.grow(next);
    this.errorCodes.grow(next);
    this.reasons.grow(next);
    this.scores.grow(next);
    this.capacity = next;
  }

  protected setStatus(s: number, status: number): void {
    const old = this.status[s] as number;
    if (old === status) return;
    this.statusCounts[old] = (this.statusCounts[old] as number) - 1;
    this.statusCounts[status] = (this.statusCounts[status] as number) + 1;
    this.status[s] = status;
  }

  protected setNode(s: number, node: number): void {
    const old = this.node[s] as number;
    if (old === node) return;
    this.bumpNode(old, -1);
    this.bumpNode(node, 1);
    this.node[s] = node;
  }

  protected bumpNode(node: number, by: number): void {
    const n = (this.nodeCounts.get(node) ?? 0) + by;
    if (n === 0) this.nodeCounts.delete(node);
    else this.nodeCounts.set(node, n);
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
