/**
 * The stats store's per-worker series (stats-store.ts): a ring of 10-second slices, a ring of minute
 * slots they fold into, a cumulative slot, and the fixed histograms for Prometheus. Each slot holds an
 * HDR histogram per latency metric (created on first use) and the request counters.
 */
import { build, type Histogram } from 'hdr-histogram-js';
import { FixedHistogram } from './buckets.js';
import { ITL_US, TTFT_US } from './histogram-families.js';
import { METRIC_COUNT, type WindowName } from './stats-protocol.js';

export const SIGNIFICANT_DIGITS = 2;
/** One hour in microseconds: longer values are clamped (the default request timeout is 30 min). */
export const HIGHEST_US = 3_600_000_000;
export const SLICES_PER_MINUTE = 6;
export const MINUTES_KEPT = 5;

/** Request counters per slice: total, completed, failed, aborted, input, output, cached tokens. */
export const enum C {
  Total = 0,
  Completed = 1,
  Failed = 2,
  Aborted = 3,
  Input = 4,
  Output = 5,
  Cached = 6,
}
export const COUNTERS = 7;

export class Slot {
  /** Epoch (10-s ring) or minute index (minute ring) held; -1 when empty. */
  index = -1;
  readonly hists: (Histogram | null)[] = new Array<Histogram | null>(METRIC_COUNT).fill(null);
  readonly counters = new Float64Array(COUNTERS);

  reset(index: number): void {
    this.index = index;
    for (const h of this.hists) h?.reset();
    this.counters.fill(0);
  }
}

export class WorkerSeries {
  readonly tens: Slot[] = Array.from({ length: SLICES_PER_MINUTE }, () => new Slot());
  readonly minutes: Slot[] = Array.from({ length: MINUTES_KEPT }, () => new Slot());
  readonly cumulative = new Slot();
  readonly ttft = new FixedHistogram(TTFT_US);
  readonly itl = new FixedHistogram(ITL_US);
  readonly tpot = new FixedHistogram(ITL_US);

  constructor(
    readonly url: string,
    public nodeId: number,
  ) {}
}

export function newHistogram(bits: 32 | 64, useWasm: boolean): Histogram {
  return build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: HIGHEST_US,
    numberOfSignificantValueDigits: SIGNIFICANT_DIGITS,
    autoResize: false,
    bitBucketSize: bits,
    useWebAssembly: useWasm,
  });
}

/** Fold a ring slice into its minute slot (while that minute is inside the 5m window) and the cumulative slot. */
export function foldSlice(s: WorkerSeries, slot: Slot, nowEpoch: number, useWasm: boolean): void {
  const minute = Math.floor(slot.index / SLICES_PER_MINUTE);
  const nowMinute = Math.floor(nowEpoch / SLICES_PER_MINUTE);
  if (minute > nowMinute - MINUTES_KEPT) {
    const m = s.minutes[minute % MINUTES_KEPT] as Slot;
    // Minutes inside the window are distinct modulo MINUTES_KEPT, so a different index here is older.
    if (m.index !== minute) m.reset(minute);
    addSlot(m, slot, 32, useWasm);
  }
  addSlot(s.cumulative, slot, 64, useWasm);
}

function addSlot(into: Slot, from: Slot, bits: 32 | 64, useWasm: boolean): void {
  for (let k = 0; k < METRIC_COUNT; k++) {
    const h = from.hists[k];
    if (h === null || h === undefined || h.totalCount === 0) continue;
    let target = into.hists[k];
    if (target === null || target === undefined) {
      target = newHistogram(bits, useWasm);
      into.hists[k] = target;
    }
    target.add(h);
  }
  for (let i = 0; i < COUNTERS; i++) into.counters[i] = (into.counters[i] as number) + (from.counters[i] as number);
}

/** Slots of one series that belong to a window (the live ring slices and, for 5m / cumulative, folded data). */
export function slotsIn(s: WorkerSeries, w: WindowName, epoch: number, minute: number, out: Slot[]): number {
  let n = 0;
  for (const t of s.tens) {
    if (t.index < 0 || t.index > epoch) continue;
    if (w === '1m' && t.index <= epoch - SLICES_PER_MINUTE) continue;
    if (w === '5m' && Math.floor(t.index / SLICES_PER_MINUTE) <= minute - MINUTES_KEPT) continue;
    out[n++] = t;
  }
  if (w === '5m') {
    for (const m of s.minutes) if (m.index > minute - MINUTES_KEPT && m.index <= minute) out[n++] = m;
  } else if (w === 'cumulative') out[n++] = s.cumulative;
  return n;
}

export function add(a: Float64Array, i: number, v: number): void {
  a[i] = (a[i] as number) + v;
}

export function clampUs(us: number): number {
  if (!(us > 0)) return 0;
  const v = Math.round(us);
  return v > HIGHEST_US ? HIGHEST_US : v;
}
