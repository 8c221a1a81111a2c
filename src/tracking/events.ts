/**
 * Trace events, front end -> tracker actor, encoded for a cheap crossing.
 *
 * The front end appends every event of an event-loop turn to one batch: numbers into a Float64Array (a
 * single memcpy when the batch is cloned to the actor's thread, and no boxed doubles on the hot path),
 * strings that differ per request (request id, the policy's reason, an error message) into a string list,
 * and strings that repeat (worker URLs, policy names, route kinds, statuses, error codes, score keys) as
 * small integer codes of a dictionary the two sides share. A code's string crosses once, in the first
 * batch that uses it; a restarted actor gets the whole dictionary with its init data.
 *
 * Monotonic stamps are turned into durations here, because a worker thread's performance.now() has its
 * own origin.
 *
 * Request ids (ASCII by validation) cross as bytes in their own buffer, not as strings: cloning a string
 * costs the sending thread ~0.2-0.5 us, and the tracker keeps ids as bytes anyway (id-table.ts), so no id
 * string is made on either side. The numbers and the id bytes of a large batch are moved (transferred).
 *
 * Layouts (N: a number; C: a dictionary code, -1 null, -2 "the string is the next in strs"; S: the next
 * string of strs; I: an id, N:length then that many bytes of `ids` (-1: the id is the next in strs, for an
 * id that is not ASCII); nullable numbers are NaN when null, node ids -1):
 *   DECIDED    1 I:id N:timestamp_ms N:queue_ms N:node_id C:worker_url C:policy C:route N:stream
 *              N:input_tokens N:attempts S:reason N:score_count (C:key N:value)*
 *   FIRST_BYTE 2 I:id N:ttft_ms
 *   FINISHED   3 I:id C:status N:timestamp_ms N:queue_ms N:ttft_ms N:e2e_ms N:node_id C:worker_url
 *              C:policy C:route N:stream N:http_status C:error_code S:error_message N:input_tokens
 *              N:output_tokens N:cached_tokens N:server_queue_ms N:attempts S:reason N:score_count (C:key N:value)*
 *   OUTCOME    4 I:id C:status N:ttft_ms N:e2e_ms N:node_id C:worker_url C:route N:stream N:http_status
 *              C:error_code S:error_message N:input_tokens N:output_tokens N:cached_tokens
 *              N:server_queue_ms N:attempts
 * A request that was decided ends with OUTCOME (what its DECIDED event carried is not sent twice);
 * FINISHED (everything) is for requests that never got a worker, and for those that ended before their
 * DECIDED event was written (tracker.ts holds decisions until the hand-over). score_count is -1 for no
 * scores.
 */
import type { CompletionRecord } from '../proxy/completion.js';
import type { RequestProgressView } from '../frontend/context.js';
import type { TraceStatus } from './types.js';
import type { IdBytes } from './id-table.js';
import { copyBytes, copyFloats } from '../util/typed-copy.js';

/** A request id as the store takes it: a string, or bytes inside an event batch. */
export type RequestIdRef = string | IdBytes;

export const EV_DECIDED = 1;
export const EV_FIRST_BYTE = 2;
export const EV_FINISHED = 3;
export const EV_OUTCOME = 4;

const NULL_CODE = -1;
const RAW_CODE = -2;
/** Distinct repeated strings given codes at most; beyond, strings travel raw (reasons never use codes). */
export const MAX_CODES = 8192;
const INITIAL_NUMBERS = 4096;
const INITIAL_ID_BYTES = 16384;

/** One turn's events as they cross to the actor. */
export interface EventBatch {
  readonly nums: Float64Array;
  /** The request ids' bytes, in event order. */
  readonly ids: Uint8Array;
  readonly strs: (string | null)[];
  /** Dictionary entries first used in this batch, starting at code `defsFrom`. */
  readonly defsFrom: number;
  readonly defs: string[];
}

/** Milliseconds rounded to microseconds (keeps JSON short; finer is noise). */
function ms(x: number): number {
  return Math.round(x * 1000) / 1000;
}

/** The front end's side: appends events, hands over one batch per turn. Not thread-safe (one per thread). */
export class EventWriter {
  private nums = new Float64Array(INITIAL_NUMBERS);
  private n = 0;
  private idBytes = new Uint8Array(INITIAL_ID_BYTES);
  private idEnd = 0;
  private strs: (string | null)[] = [];
  private readonly codes = new Map<string, number>();
  /** Every dictionary entry so far, by code (what a restarted actor is initialised with). */
  readonly dictionary: string[] = [];
  private sentDefs = 0;

  /** Numbers buffered for the next take() (a measure of the batch's size; 0: nothing waits). */
  get numbers(): number {
    return this.n;
  }

  decided(v: RequestProgressView, policy: string): void {
    this.reserve(16);
    const w = v.worker;
    const d = v.decision;
    this.num(EV_DECIDED);
    this.id(v.requestId);
    this.num(ms(v.timestamp));
    this.num(ms(v.decidedAt - v.arrivedAt));
    this.num(w === undefined ? -1 : w.nodeId);
    this.code(w === undefined ? null : w.url);
    this.code(policy);
    this.code(v.route);
    this.num(v.features.stream ? 1 : 0);
    this.num(v.features.inputTokens);
    this.num(v.attempts);
    this.strs.push(d === undefined ? null : d.reason);
    this.scores(d === undefined ? undefined : d.scores);
  }

  firstByte(v: RequestProgressView, at: number): void {
    this.reserve(2);
    this.num(EV_FIRST_BYTE);
    this.id(v.requestId);
    this.num(ms(at - v.arrivedAt));
  }

  /**
   * The end of a request. `whole`: its DECIDED event was never written (the tracker held it back), so
   * this one carries the decision too (FINISHED); otherwise a decided request sends only its OUTCOME.
   */
  finished(r: CompletionRecord, whole = false): void {
    const routed = r.slot >= 0 && r.workerUrl !== '';
    const ttft = r.firstTokenAt > 0 ? ms(r.firstTokenAt - r.arrivedAt) : Number.NaN;
    const serverQueue = r.queueTime === undefined ? Number.NaN : ms(r.queueTime * 1000);
    if (routed && r.decidedAt > 0 && !whole) {
      this.reserve(16);
      this.num(EV_OUTCOME);
      this.id(r.requestId);
      this.code(r.status);
      this.num(ttft);
      this.num(ms(r.finishedAt - r.arrivedAt));
      this.num(r.nodeId);
      this.code(r.workerUrl);
      this.code(r.route);
      this.num(r.stream ? 1 : 0);
      this.num(r.httpStatus > 0 ? r.httpStatus : Number.NaN);
      this.code(r.errorCode ?? null);
      this.strs.push(r.errorMessage ?? null);
      this.num(r.inputTokens);
      this.num(r.outputTokens);
      this.num(r.cachedTokens);
      this.num(serverQueue);
      this.num(r.attempts);
      return;
    }
    this.reserve(20);
    this.num(EV_FINISHED);
    this.id(r.requestId);
    this.code(r.status);
    this.num(ms(r.timestamp));
    this.num(r.decidedAt > 0 ? ms(r.decidedAt - r.arrivedAt) : Number.NaN);
    this.num(ttft);
    this.num(ms(r.finishedAt - r.arrivedAt));
    this.num(routed ? r.nodeId : -1);
    this.code(routed ? r.workerUrl : null);
    this.code(r.policy);
    this.code(r.route);
    this.num(r.stream ? 1 : 0);
    this.num(r.httpStatus > 0 ? r.httpStatus : Number.NaN);
    this.code(r.errorCode ?? null);
    this.strs.push(r.errorMessage ?? null);
    this.num(r.inputTokens);
    this.num(r.outputTokens);
    this.num(r.cachedTokens);
    this.num(serverQueue);
    this.num(r.attempts);
    this.strs.push(r.reason === '' ? null : r.reason);
    this.scores(r.scores);
  }

  /** The batch of everything appended since the last take (null when nothing was). */
  take(): EventBatch | null {
    if (this.n === 0) return null;
    // Exact-size copies cross (a view would take the whole backing buffer along when moved or cloned).
    const batch: EventBatch = {
      nums: copyFloats(this.nums, this.n),
      ids: copyBytes(this.idBytes, this.idEnd),
      strs: this.strs,
      defsFrom: this.sentDefs,
      defs: this.dictionary.slice(this.sentDefs),
    };
    this.sentDefs = this.dictionary.length;
    this.n = 0;
    this.idEnd = 0;
    this.strs = [];
    return batch;
  }

  private num(x: number): void {
    this.nums[this.n++] = x;
  }

  /** An id as its bytes (a char code a byte: ids are ASCII), or as a string when it is not ASCII. */
  private id(s: string): void {
    const len = s.length;
    if (this.idEnd + len > this.idBytes.length) {
      let size = this.idBytes.length * 2;
      while (size < this.idEnd + len) size *= 2;
      const grown = new Uint8Array(size);
      grown.set(this.idBytes.subarray(0, this.idEnd));
      this.idBytes = grown;
    }
    const b = this.idBytes;
    const at = this.idEnd;
    for (let i = 0; i < len; i++) {
      const c = s.charCodeAt(i);
      if (c > 127) {
        this.num(-1);
        this.strs.push(s);
        return;
      }
      b[at + i] = c;
    }
    this.idEnd = at + len;
    this.num(len);
  }

  private code(s: string | null): void {
    if (s === null) {
      this.num(NULL_CODE);
      return;
    }
    let c = this.codes.get(s);
    if (c === undefined) {
      if (this.dictionary.length >= MAX_CODES) {
        this.num(RAW_CODE);
        this.strs.push(s);
        return;
      }
      c = this.dictionary.length;
      this.dictionary.push(s);
      this.codes.set(s, c);
    }
    this.num(c);
  }

  private scores(scores: Readonly<Record<string, number>> | undefined): void {
    if (scores === undefined) {
      this.num(-1);
      return;
    }
    let count = 0;
    for (const k in scores) if (typeof scores[k] === 'number') count++;
    this.reserve(1 + 2 * count);
    this.num(count);
    for (const k in scores) {
      const v = scores[k];
      if (typeof v !== 'number') continue;
      this.code(k);
      this.num(v);
    }
  }

  /** Room for `extra` more numbers (events reserve their fixed part up front; at most 20). */
  private reserve(extra: number): void {
    const need = this.n + extra + 4;
    if (need <= this.nums.length) return;
    let size = this.nums.length * 2;
    while (size < need) size *= 2;
    const grown = new Float64Array(size);
    grown.set(this.nums.subarray(0, this.n));
    this.nums = grown;
  }
}

/** What applying a batch needs: one method per event kind, fields already typed. */
export interface EventTarget {
  decided(e: DecidedEvent): void;
  firstByte(requestId: RequestIdRef, ttftMs: number): void;
  finished(e: FinishedEvent): void;
}

export interface DecidedEvent {
  /** Bytes inside the batch being applied: valid only during the call. */
  requestId: RequestIdRef;
  timestampMs: number;
  queueMs: number;
  nodeId: number | null;
  workerUrl: string | null;
  policy: string;
  reason: string | null;
  scores: Record<string, number> | null;
  route: string;
  stream: boolean;
  inputTokens: number;
  attempts: number;
}

export interface FinishedEvent {
  /** OUTCOME form: timestampMs, queueMs, policy, reason and scores were sent with the DECIDED event (here: NaN, null, '', null, null). */
  outcomeOnly: boolean;
  /** Bytes inside the batch being applied: valid only during the call. */
  requestId: RequestIdRef;
  status: TraceStatus;
  timestampMs: number;
  queueMs: number | null;
  ttftMs: number | null;
  e2eMs: number;
  nodeId: number | null;
  workerUrl: string | null;
  policy: string;
  reason: string | null;
  scores: Record<string, number> | null;
  route: string;
  stream: boolean;
  httpStatus: number | null;
  errorCode: string | null;
  errorMessage: string | null;
  inputTokens: number;
  outputTokens: number;
  cachedTokens: number;
  serverQueueMs: number | null;
  attempts: number;
}

/** A malformed batch: only a version mismatch or a bug can cause one, never client input. */
export class EventBatchError extends Error {
  constructor(message: string) {
    super(`trace event batch: ${message}`);
    this.name = 'EventBatchError';
  }
}

/** The actor's side: the dictionary, and the walk over a batch. */
export class EventReader {
  private readonly dict: string[];

  constructor(dictionary: readonly string[] = []) {
    this.dict = dictionary.slice();
  }

  /** Hand each event of `batch` to `target`, in order; returns the number of events. */
  apply(batch: EventBatch, target: EventTarget): number {
    const { defs, defsFrom } = batch;
    for (let i = 0; i < defs.length; i++) this.dict[defsFrom + i] = defs[i] as string;
    const c = new Cursor(batch, this.dict);
    const d = {} as DecidedEvent;
    const f = {} as FinishedEvent;
    let events = 0;
    while (!c.done()) {
      const kind = c.num();
      if (kind === EV_DECIDED) {
        d.requestId = c.id();
        d.timestampMs = c.num();
        d.queueMs = c.num();
        d.nodeId = c.node();
        d.workerUrl = c.code();
        d.policy = c.code() ?? '';
        d.route = c.code() ?? 'other';
        d.stream = c.num() === 1;
        d.inputTokens = c.int();
        d.attempts = c.int();
        d.reason = c.str();
        d.scores = c.scores();
        target.decided(d);
      } else if (kind === EV_FIRST_BYTE) {
        const id = c.id();
        target.firstByte(id, c.num());
      } else if (kind === EV_FINISHED || kind === EV_OUTCOME) {
        const full = kind === EV_FINISHED;
        f.outcomeOnly = !full;
        f.requestId = c.id();
        f.status = (c.code() ?? 'failed') as TraceStatus;
        f.timestampMs = full ? c.num() : Number.NaN;
        f.queueMs = full ? c.nullable() : null;
        f.ttftMs = c.nullable();
        f.e2eMs = c.num();
        f.nodeId = c.node();
        f.workerUrl = c.code();
        f.policy = full ? (c.code() ?? '') : '';
        f.route = c.code() ?? 'other';
        f.stream = c.num() === 1;
        f.httpStatus = c.nullableInt();
        f.errorCode = c.code();
        f.errorMessage = c.str();
        f.inputTokens = c.int();
        f.outputTokens = c.int();
        f.cachedTokens = c.int();
        f.serverQueueMs = c.nullable();
        f.attempts = c.int();
        if (full) {
          f.reason = c.str();
          f.scores = c.scores();
        } else {
          f.reason = null;
          f.scores = null;
        }
        target.finished(f);
      } else {
        throw new EventBatchError(`unknown event kind ${kind} at ${c.at - 1}`);
      }
      events++;
    }
    if (!c.allStringsRead()) throw new EventBatchError('strings left over');
    if (!c.allIdsRead()) throw new EventBatchError('id bytes left over');
    return events;
  }
}

/** An id's place in a batch; one per cursor, reused for every event. */
class IdSlice implements IdBytes {
  off = 0;
  len = 0;
  constructor(readonly bytes: Uint8Array) {}
}

class Cursor {
  at = 0;
  private s = 0;
  private idAt = 0;
  private readonly idRef: IdSlice;
  constructor(
    private readonly b: EventBatch,
    private readonly dict: readonly string[],
  ) {
    this.idRef = new IdSlice(b.ids);
  }

  done(): boolean {
    return this.at >= this.b.nums.length;
  }

  allStringsRead(): boolean {
    return this.s === this.b.strs.length;
  }

  allIdsRead(): boolean {
    return this.idAt === this.b.ids.length;
  }

  num(): number {
    if (this.at >= this.b.nums.length) throw new EventBatchError('truncated event');
    return this.b.nums[this.at++] as number;
  }

  nullable(): number | null {
    const x = this.num();
    return Number.isNaN(x) ? null : x;
  }

  /**
   * Integer fields leave the Float64Array as small integers: stored in a trace as a double they would each
   * cost a heap number (100k traces x 6 fields).
   */
  int(): number {
    const x = this.num();
    return x === (x | 0) ? x | 0 : x;
  }

  nullableInt(): number | null {
    const x = this.num();
    return Number.isNaN(x) ? null : x === (x | 0) ? x | 0 : x;
  }

  node(): number | null {
    const x = this.num();
    return x < 0 ? null : x === (x | 0) ? x | 0 : x;
  }

  str(): string | null {
    if (this.s >= this.b.strs.length) throw new EventBatchError('missing string');
    return this.b.strs[this.s++] ?? null;
  }

  id(): RequestIdRef {
    const len = this.num();
    if (len < 0) {
      const s = this.str();
      if (s === null) throw new EventBatchError('missing request id');
      return s;
    }
    if (this.idAt + len > this.b.ids.length) throw new EventBatchError('truncated request id');
    const ref = this.idRef;
    ref.off = this.idAt;
    ref.len = len;
    this.idAt += len;
    return ref;
  }

  code(): string | null {
    const c = this.num();
    if (c === NULL_CODE) return null;
    if (c === RAW_CODE) return this.str();
    const s = this.dict[c];
    if (s === undefined) throw new EventBatchError(`unknown dictionary code ${c}`);
    return s;
  }

  scores(): Record<string, number> | null {
    const count = this.num();
    if (count < 0) return null;
    const out: Record<string, number> = {};
    for (let i = 0; i < count; i++) {
      const k = this.code() as string;
      out[k] = this.num();
    }
    return out;
  }
}
