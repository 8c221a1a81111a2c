/**
 * Per-worker circuit breakers (sgl-router's --cb-* flags): closed -> open after `failureThreshold`
 * consecutive failed attempts; open -> half-open after `openMs`; half-open lets at most `halfOpenProbes`
 * requests through at a time, closes after `successThreshold` successes and re-opens on any failure.
 *
 * The state lives in the shared WorkerTable's Breaker field, so the policies in actor threads (which read
 * `isCandidate` / `isAvailable`) stop choosing an open worker without a message. The bookkeeping (counts,
 * timers, probes in flight) is main-thread only: every attempt is dispatched and finished there.
 */
import { BreakerState, Field, type SlotRef, type WorkerTable } from '../actors/worker-table.js';

export interface BreakerOptions {
  failureThreshold: number;
  successThreshold: number;
  /** How long an open breaker refuses traffic before letting probes through. */
  openMs: number;
  /** Concurrent probe requests allowed while half-open (default: successThreshold). */
  halfOpenProbes?: number;
}

export interface BreakerTransitions {
  opened: number;
  halfOpened: number;
  closed: number;
}

/** What `tryAcquire` grants: refused, a normal attempt, or one of the half-open probes. */
export const enum Permit {
  Refused = 0,
  Normal = 1,
  Probe = 2,
}

interface BreakerSlot {
  generation: number;
  failures: number;
  successes: number;
  probesInFlight: number;
  timer: NodeJS.Timeout | undefined;
  /** Outcomes recorded for this worker (sgl_router_cb_outcomes_total). */
  okTotal: number;
  failedTotal: number;
  /** Transitions of this worker's breaker, indexed by transitionIndex(from, to). */
  readonly transitions: Float64Array;
}

/** State names as sgl-router labels them (sgl_router_cb_state_transitions_total{from,to}). */
export const BREAKER_STATE_NAMES = ['closed', 'open', 'half_open'] as const;

/** The transitions a breaker can make, [from, to] (the metric exports each, at 0 until it happens). */
export const BREAKER_TRANSITIONS: readonly (readonly [BreakerState, BreakerState])[] = [
  [BreakerState.Closed, BreakerState.Open],
  [BreakerState.Open, BreakerState.HalfOpen],
  [BreakerState.HalfOpen, BreakerState.Closed],
  [BreakerState.HalfOpen, BreakerState.Open],
];

function transitionIndex(from: BreakerState, to: BreakerState): number {
  return from * 3 + to;
}

/** Per-worker counts for the exposition. */
export interface BreakerCounts {
  readonly successes: number;
  readonly failures: number;
  /** How often the breaker went from `from` to `to`. */
  transitions(from: BreakerState, to: BreakerState): number;
}

const NO_COUNTS: BreakerCounts = { successes: 0, failures: 0, transitions: () => 0 };

/** `remote`: the transition was another replica's, applied with `applyRemote`. */
export type BreakerListener = (ref: SlotRef, from: BreakerState, to: BreakerState, remote: boolean) => void;

export class CircuitBreakers {
  readonly transitions: BreakerTransitions = { opened: 0, halfOpened: 0, closed: 0 };
  private readonly slots = new Map<number, BreakerSlot>();
  private readonly probes: number;
  private readonly listeners: BreakerListener[] = [];
  private closedForGood = false;
  private applyingRemote = false;

  constructor(
    private readonly table: WorkerTable,
    private readonly options: BreakerOptions,
    listener?: BreakerListener,
  ) {
    this.probes = Math.max(1, options.halfOpenProbes ?? options.successThreshold);
    if (listener !== undefined) this.listeners.push(listener);
  }

  /** Another transition listener (src/cluster/worker-state.ts publishes this replica's transitions). */
  addListener(listener: BreakerListener): void {
    this.listeners.push(listener);
  }

  /**
   * Another replica's breaker transition for this worker (src/cluster/worker-state.ts). Open: this
   * breaker opens too, with its own timer (its own open duration before half-open); closed: it closes.
   * Half-open is not applied: when to probe is this replica's timer's decision. Returns whether the
   * state changed; listeners see the move with `remote` true.
   */
  applyRemote(ref: SlotRef, to: BreakerState): boolean {
    if (this.closedForGood || !this.table.isCurrent(ref) || to === BreakerState.HalfOpen) return false;
    if (this.state(ref) === to) return false;
    this.applyingRemote = true;
    try {
      this.move(ref, this.slotOf(ref), to);
    } finally {
      this.applyingRemote = false;
    }
    return true;
  }

  state(ref: SlotRef): BreakerState {
    return this.table.get(ref.slot, Field.Breaker) as BreakerState;
  }

  /** May an attempt go to this worker now? A Probe permit must be given back through `record`. */
  tryAcquire(ref: SlotRef): Permit {
    const state = this.state(ref);
    if (state === BreakerState.Closed) return Permit.Normal;
    if (state === BreakerState.Open) return Permit.Refused;
    const s = this.slotOf(ref);
    if (s.probesInFlight >= this.probes) return Permit.Refused;
    s.probesInFlight++;
    return Permit.Probe;
  }

  /**
   * The result of one attempt. `success` undefined: neither (client abort) — only gives a probe back.
   * Attempts that started before the breaker opened and finish while it is open change nothing.
   */
  record(ref: SlotRef, permit: Permit, success: boolean | undefined): void {
    if (!this.table.isCurrent(ref)) return;
    const s = this.slotOf(ref);
    if (permit === Permit.Probe && s.probesInFlight > 0) s.probesInFlight--;
    if (success === undefined) return;
    const state = this.state(ref);
    if (success) {
      s.okTotal++;
      s.failures = 0;
      if (state === BreakerState.HalfOpen && permit === Permit.Probe) {
        s.successes++;
        if (s.successes >= this.options.successThreshold) this.move(ref, s, BreakerState.Closed);
      }
      return;
    }
    s.failedTotal++;
    s.successes = 0;
    if (state === BreakerState.HalfOpen) {
      if (permit === Permit.Probe) this.move(ref, s, BreakerState.Open);
      return;
    }
    if (state === BreakerState.Closed) {
      s.failures++;
      if (s.failures >= this.options.failureThreshold) this.move(ref, s, BreakerState.Open);
    }
  }

  /**
   * The worker was readmitted by the health checks after an ejection (it went down and came back): an
   * open breaker turns half-open at once, so probes test it now instead of after the rest of the open
   * timeout (its failures date from while it was down). A failing probe re-opens it as usual.
   */
  recovered(ref: SlotRef): void {
    if (!this.table.isCurrent(ref) || this.state(ref) !== BreakerState.Open) return;
    this.move(ref, this.slotOf(ref), BreakerState.HalfOpen);
  }

  /** Outcome and transition counts of a worker (zeros for a worker never recorded). Not for the hot path. */
  counts(ref: SlotRef): BreakerCounts {
    const s = this.slots.get(ref.slot);
    if (s === undefined || s.generation !== ref.generation) return NO_COUNTS;
    const t = s.transitions;
    return { successes: s.okTotal, failures: s.failedTotal, transitions: (from, to) => t[transitionIndex(from, to)] as number };
  }

  /** The worker was removed: drop its timer and counts (the table slot is reset by the registry). */
  forget(ref: SlotRef): void {
    const s = this.slots.get(ref.slot);
    if (s === undefined || s.generation !== ref.generation) return;
    if (s.timer !== undefined) clearTimeout(s.timer);
    this.slots.delete(ref.slot);
  }

  close(): void {
    this.closedForGood = true;
    for (const s of this.slots.values()) if (s.timer !== undefined) clearTimeout(s.timer);
    this.slots.clear();
  }

  private move(ref: SlotRef, s: BreakerSlot, to: BreakerState): void {
    const from = this.state(ref);
    if (from === to) return;
    if (s.timer !== undefined) {
      clearTimeout(s.timer);
      s.timer = undefined;
    }
    s.failures = 0;
    s.successes = 0;
    s.probesInFlight = 0;
    this.table.set(ref.slot, Field.Breaker, to);
    const i = transitionIndex(from, to);
    s.transitions[i] = (s.transitions[i] as number) + 1;
    if (to === BreakerState.Open) {
      this.transitions.opened++;
      if (!this.closedForGood) {
        s.timer = setTimeout(() => {
          s.timer = undefined;
          if (this.table.isCurrent(ref) && this.state(ref) === BreakerState.Open) this.move(ref, s, BreakerState.HalfOpen);
        }, this.options.openMs);
        s.timer.unref();
      }
    } else if (to === BreakerState.HalfOpen) this.transitions.halfOpened++;
    else this.transitions.closed++;
    for (const l of this.listeners) l(ref, from, to, this.applyingRemote);
  }

  private slotOf(ref: SlotRef): BreakerSlot {
    let s = this.slots.get(ref.slot);
    if (s === undefined || s.generation !== ref.generation) {
      if (s?.timer !== undefined) clearTimeout(s.timer);
      s = { generation: ref.generation, failures: 0, successes: 0, probesInFlight: 0, timer: undefined, okTotal: 0, failedTotal: 0, transitions: new Float64Array(9) };
      this.slots.set(ref.slot, s);
    }
    return s;
  }
}
