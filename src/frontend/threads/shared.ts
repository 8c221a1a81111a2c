/**
 * Shared memory of the front-end threads (--frontend-threads N): what every data-plane thread writes
 * without a message and the main thread reads.
 *
 *   counters  Float64, one block per front end (index 0 = the main thread): the RouterCounters fields of
 *             that thread's data path, plus the control requests it forwarded. Single writer per block, so
 *             plain loads and stores; the main thread sums the blocks for /stats, /metrics and close().
 *   ledger    Int32, per front end and worker-table slot: [generation, in-flight requests, in-flight
 *             tokens] this front end added to the shared worker table. When a thread dies, the main thread
 *             takes exactly that back out of the table (its requests are lost; their counters must not be).
 *
 * Both survive a thread's restart: a restarted thread continues its block (totals stay monotonic) and
 * starts with an empty ledger (the main thread reconciled it).
 */
import type { SlotRef, WorkerTable } from '../../actors/worker-table.js';
import type { DataPlaneTable, RouterCounters } from '../context.js';

/** RouterCounters fields in block order, then our own. */
export const COUNTER_FIELDS = ['requests', 'completed', 'failed', 'aborted', 'retries', 'active'] as const;
const C_FORWARDED = COUNTER_FIELDS.length;
const COUNTER_STRIDE = 8;
const LEDGER_FIELDS = 3;

export interface SharedFrontendBuffers {
  /** Front ends, the main thread included. */
  readonly frontends: number;
  /** Worker-table capacity the ledger covers. */
  readonly capacity: number;
  readonly counters: SharedArrayBuffer;
  readonly ledger: SharedArrayBuffer;
}

export function createSharedFrontendBuffers(frontends: number, capacity: number): SharedFrontendBuffers {
  return {
    frontends,
    capacity,
    counters: new SharedArrayBuffer(frontends * COUNTER_STRIDE * 8),
    ledger: new SharedArrayBuffer(frontends * capacity * LEDGER_FIELDS * 4),
  };
}

/** One front end's counters in its block of the shared buffer (what that thread's data path writes). */
export class SharedCounters implements RouterCounters {
  private readonly a: Float64Array;
  private readonly o: number;

  constructor(buffers: SharedFrontendBuffers, index: number) {
    this.a = new Float64Array(buffers.counters);
    this.o = index * COUNTER_STRIDE;
  }

  get requests(): number {
    return this.a[this.o] as number;
  }
  set requests(v: number) {
    this.a[this.o] = v;
  }
  get completed(): number {
    return this.a[this.o + 1] as number;
  }
  set completed(v: number) {
    this.a[this.o + 1] = v;
  }
  get failed(): number {
    return this.a[this.o + 2] as number;
  }
  set failed(v: number) {
    this.a[this.o + 2] = v;
  }
  get aborted(): number {
    return this.a[this.o + 3] as number;
  }
  set aborted(v: number) {
    this.a[this.o + 3] = v;
  }
  get retries(): number {
    return this.a[this.o + 4] as number;
  }
  set retries(v: number) {
    this.a[this.o + 4] = v;
  }
  get active(): number {
    return this.a[this.o + 5] as number;
  }
  set active(v: number) {
    this.a[this.o + 5] = v;
  }
  /** Control requests this front end forwarded to the main thread's control app. */
  get forwarded(): number {
    return this.a[this.o + C_FORWARDED] as number;
  }
  set forwarded(v: number) {
    this.a[this.o + C_FORWARDED] = v;
  }
}

/** A thread died with `active` requests: they are lost (their clients saw the connection close): count them aborted. */
export function abandonActive(buffers: SharedFrontendBuffers, index: number): number {
  const c = new SharedCounters(buffers, index);
  const lost = c.active;
  c.aborted += lost;
  c.active = 0;
  return lost;
}

/**
 * The sum over every front end's block, read live; read-only (the data paths count into their own
 * blocks). The fields are own enumerable getters, so `{ ...totals }` copies the numbers (the RouterCounters
 * fields only: the debug bundle shows the same shape whatever the number of front ends).
 */
export function counterTotals(buffers: SharedFrontendBuffers): RouterCounters {
  const a = new Float64Array(buffers.counters);
  const n = buffers.frontends;
  const sum = (field: number): number => {
    let s = 0;
    for (let i = 0; i < n; i++) s += a[i * COUNTER_STRIDE + field] as number;
    return s;
  };
  const totals = {};
  COUNTER_FIELDS.forEach((name, field) => Object.defineProperty(totals, name, { enumerable: true, get: () => sum(field) }));
  return Object.freeze(totals) as RouterCounters;
}

/**
 * The worker table as a front end's data path uses it, keeping that front end's ledger: what it added to
 * the shared in-flight counters and has not yet taken back.
 */
export class LedgeredTable implements DataPlaneTable {
  private readonly l: Int32Array;
  private readonly base: number;

  constructor(
    private readonly table: WorkerTable,
    buffers: SharedFrontendBuffers,
    index: number,
  ) {
    this.l = new Int32Array(buffers.ledger);
    this.base = index * buffers.capacity * LEDGER_FIELDS;
  }

  acquire(ref: SlotRef, tokens: number): boolean {
    if (!this.table.acquire(ref, tokens)) return false;
    const i = this.base + ref.slot * LEDGER_FIELDS;
    const l = this.l;
    if (l[i] !== ref.generation) {
      // The slot holds another worker than last time: the old generation's counts went with the old worker.
      l[i] = ref.generation;
      l[i + 1] = 0;
      l[i + 2] = 0;
    }
    l[i + 1] = (l[i + 1] as number) + 1;
    l[i + 2] = (l[i + 2] as number) + (tokens | 0);
    return true;
  }

  releaseLoad(ref: SlotRef, tokens: number, completed: boolean): void {
    this.table.releaseLoad(ref, tokens, completed);
    const i = this.base + ref.slot * LEDGER_FIELDS;
    const l = this.l;
    if (l[i] !== ref.generation) return;
    l[i + 1] = (l[i + 1] as number) - 1;
    l[i + 2] = (l[i + 2] as number) - (tokens | 0);
  }

  isAvailable(slot: number): boolean {
    return this.table.isAvailable(slot);
  }

  load(slot: number): number {
    return this.table.load(slot);
  }
}

/**
 * After front end `index` died: take its ledger's in-flight requests and tokens back out of the worker
 * table (slots still holding the ledger's generation only) and clear the ledger. Returns the requests returned.
 */
export function reconcileLedger(table: WorkerTable, buffers: SharedFrontendBuffers, index: number): number {
  const l = new Int32Array(buffers.ledger);
  const base = index * buffers.capacity * LEDGER_FIELDS;
  let returned = 0;
  for (let slot = 0; slot < buffers.capacity; slot++) {
    const i = base + slot * LEDGER_FIELDS;
    const requests = l[i + 1] as number;
    const tokens = l[i + 2] as number;
    if (requests === 0 && tokens === 0) continue;
    const ref = { slot, generation: l[i] as number };
    if (table.isCurrent(ref) && requests > 0) {
      // releaseLoad takes one request (and the given tokens) per call.
      table.releaseLoad(ref, tokens, false);
      for (let k = 1; k < requests; k++) table.releaseLoad(ref, 0, false);
      returned += requests;
    }
    l[i + 1] = 0;
    l[i + 2] = 0;
  }
  return returned;
}
