/**
 * The shared worker table: one SharedArrayBuffer of Int32 fields per worker slot, read and written with
 * Atomics from the front end and every actor thread without messages.
 *
 * Membership (slot -> URL) is owned by the main thread's registry and announced to actors by message;
 * the table carries only numbers. A slot's GENERATION changes whenever the slot is allocated or released,
 * so a decision or an in-flight counter taken under an old generation can never touch the counters of a
 * worker that later reused the slot.
 */

export const enum Field {
  Generation = 0,
  State = 1,
  Healthy = 2,
  InFlightRequests = 3,
  InFlightTokens = 4,
  ReportedQueue = 5,
  ReportedRunning = 6,
  ReportedTokens = 7,
  Breaker = 8,
  ConsecutiveFailures = 9,
  Processed = 10,
  NodeId = 11,
  TokenUsagePermille = 12,
  ReportedAtSec = 13,
}
export const STRIDE = 16;
const HEADER = 4; // [0] capacity, [1] membership version, [2..3] reserved

export const enum SlotState {
  Free = 0,
  Active = 1,
  Draining = 2,
}

export const enum BreakerState {
  Closed = 0,
  Open = 1,
  HalfOpen = 2,
}

export interface SlotRef {
  readonly slot: number;
  readonly generation: number;
}

export class WorkerTable {
  readonly buffer: SharedArrayBuffer;
  readonly capacity: number;
  private readonly a: Int32Array;

  private constructor(buffer: SharedArrayBuffer) {
    this.buffer = buffer;
    this.a = new Int32Array(buffer);
    this.capacity = this.a[0] as number;
  }

  static create(capacity = 1024): WorkerTable {
    const buffer = new SharedArrayBuffer((HEADER + capacity * STRIDE) * 4);
    new Int32Array(buffer)[0] = capacity;
    return new WorkerTable(buffer);
  }

  /** Attach to a table created in another thread. */
  static attach(buffer: SharedArrayBuffer): WorkerTable {
    return new WorkerTable(buffer);
  }

  private idx(slot: number, field: Field): number {
    return HEADER + slot * STRIDE + field;
  }

  get(slot: number, field: Field): number {
    return Atomics.load(this.a, HEADER + slot * STRIDE + field);
  }

  set(slot: number, field: Field, value: number): void {
    Atomics.store(this.a, HEADER + slot * STRIDE + field, value | 0);
  }

  /**
   * Relaxed read of one field: a plain load, tear-free for aligned Int32 (ES memory model) but without
   * Atomics' ordering. Measured ~20x cheaper than Atomics.load on this stack (docs/actors.md), which is
   * what lets a policy scan 256 workers per decision. For routing reads where a value a moment old is
   * fine; never for read-modify-write or for checks that must be ordered with a write (use get/acquire).
   */
  peek(slot: number, field: Field): number {
    return this.a[HEADER + slot * STRIDE + field] as number;
  }

  /**
   * Relaxed: may this member receive traffic? Active, healthy, breaker not open, and the slot still holds
   * `generation` (so a slot released or reused since the membership list was sent is not chosen).
   */
  isCandidate(slot: number, generation: number): boolean {
    const base = HEADER + slot * STRIDE;
    const a = this.a;
    return (
      a[base + Field.Generation] === generation &&
      a[base + Field.State] === SlotState.Active &&
      a[base + Field.Healthy] === 1 &&
      a[base + Field.Breaker] !== BreakerState.Open
    );
  }

  /** Relaxed version of load(): own in-flight count, or reported queue+running if larger. */
  peekLoad(slot: number): number {
    const base = HEADER + slot * STRIDE;
    const a = this.a;
    const own = a[base + Field.InFlightRequests] as number;
    const reported = (a[base + Field.ReportedQueue] as number) + (a[base + Field.ReportedRunning] as number);
    return own > reported ? own : reported;
  }

  /** Bumped on every membership change; actors compare it to know their slot->url map is current. */
  get membershipVersion(): number {
    return Atomics.load(this.a, 1);
  }

  /** Main thread only: take a free slot, reset its counters, mark it active (unhealthy until checked unless told). */
  allocate(options: { healthy?: boolean; nodeId?: number } = {}): SlotRef {
    for (let slot = 0; slot < this.capacity; slot++) {
      if (this.get(slot, Field.State) !== SlotState.Free) continue;
      const base = HEADER + slot * STRIDE;
      for (let f = 2; f < STRIDE; f++) Atomics.store(this.a, base + f, 0);
      const generation = Atomics.add(this.a, base + Field.Generation, 1) + 1;
      this.set(slot, Field.Healthy, options.healthy === false ? 0 : 1);
      this.set(slot, Field.NodeId, options.nodeId ?? 0);
      Atomics.store(this.a, base + Field.State, SlotState.Active);
      Atomics.add(this.a, 1, 1);
      return { slot, generation };
    }
    throw new Error(`worker table is full (${this.capacity} slots)`);
  }

  /** Main thread only: free a slot. Its generation changes, so stale references become no-ops. */
  release(slot: number): void {
    const base = HEADER + slot * STRIDE;
    Atomics.store(this.a, base + Field.State, SlotState.Free);
    Atomics.store(this.a, base + Field.Healthy, 0);
    Atomics.add(this.a, base + Field.Generation, 1);
    Atomics.add(this.a, 1, 1);
  }

  isCurrent(ref: SlotRef): boolean {
    return this.get(ref.slot, Field.Generation) === ref.generation && this.get(ref.slot, Field.State) === SlotState.Active;
  }

  /** A worker may receive traffic: active, healthy, breaker not open. */
  isAvailable(slot: number): boolean {
    return (
      this.get(slot, Field.State) === SlotState.Active &&
      this.get(slot, Field.Healthy) === 1 &&
      this.get(slot, Field.Breaker) !== BreakerState.Open
    );
  }

  /**
   * Count a request against a worker. Returns false (and counts nothing) when the slot no longer holds
   * that generation, i.e. the worker was removed after the decision was made.
   */
  acquire(ref: SlotRef, tokens: number): boolean {
    if (!this.isCurrent(ref)) return false;
    const base = HEADER + ref.slot * STRIDE;
    Atomics.add(this.a, base + Field.InFlightRequests, 1);
    Atomics.add(this.a, base + Field.InFlightTokens, tokens | 0);
    // The slot may have been released between the check and the add; undo if so.
    if (Atomics.load(this.a, base + Field.Generation) !== ref.generation) {
      Atomics.sub(this.a, base + Field.InFlightRequests, 1);
      Atomics.sub(this.a, base + Field.InFlightTokens, tokens | 0);
      return false;
    }
    return true;
  }

  /** Undo exactly one acquire; a no-op when the slot was released (its counters were reset). */
  releaseLoad(ref: SlotRef, tokens: number, completed: boolean): void {
    const base = HEADER + ref.slot * STRIDE;
    if (Atomics.load(this.a, base + Field.Generation) !== ref.generation) return;
    Atomics.sub(this.a, base + Field.InFlightRequests, 1);
    Atomics.sub(this.a, base + Field.InFlightTokens, tokens | 0);
    if (completed) Atomics.add(this.a, base + Field.Processed, 1);
  }

  inFlight(slot: number): number {
    return this.get(slot, Field.InFlightRequests);
  }

  inFlightTokens(slot: number): number {
    return this.get(slot, Field.InFlightTokens);
  }

  /** Load as seen by the router: own in-flight count, or the worker's reported queue+running if larger. */
  load(slot: number): number {
    const own = this.get(slot, Field.InFlightRequests);
    const reported = this.get(slot, Field.ReportedQueue) + this.get(slot, Field.ReportedRunning);
    return own > reported ? own : reported;
  }

  setReported(slot: number, report: { queue: number; running: number; tokens: number; tokenUsage?: number }, nowSec: number): void {
    this.set(slot, Field.ReportedQueue, report.queue);
    this.set(slot, Field.ReportedRunning, report.running);
    this.set(slot, Field.ReportedTokens, report.tokens);
    if (report.tokenUsage !== undefined) this.set(slot, Field.TokenUsagePermille, Math.round(report.tokenUsage * 1000));
    this.set(slot, Field.ReportedAtSec, nowSec);
  }

  setHealthy(slot: number, healthy: boolean): void {
    this.set(slot, Field.Healthy, healthy ? 1 : 0);
  }

  /** Active slots in index order (allocates; for snapshots and admin, not per-request loops). */
  activeSlots(): number[] {
    const out: number[] = [];
    for (let s = 0; s < this.capacity; s++) if (this.get(s, Field.State) === SlotState.Active) out.push(s);
    return out;
  }
}
