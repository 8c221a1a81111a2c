/**
 * The arithmetic of --lag-diagnostics (lag-diagnostics.ts measures; this attributes): the causes, how a
 * late send's window splits between them, GC pauses overlapping a window, and each cause's share of the lag.
 * Pure functions, tested on their own.
 */
export const LAG_CAUSES = ['gc', 'descheduled', 'generator_work', 'other_js', 'timer'] as const;
export type LagCause = (typeof LAG_CAUSES)[number];

export const LAG_CAUSE_DEFINITIONS: Record<LagCause, string> = {
  gc: 'a V8 garbage collection pause on the sending thread (perf_hooks gc entries)',
  descheduled: 'the sending thread was runnable but not running: the operating system ran something else (run delay from /proc/thread-self/schedstat); the machine, not the generator',
  generator_work: "the generator's own JS between sends: recording finished exchanges, building request bodies, HTTP response callbacks",
  other_js: "the thread was on the CPU doing other work: other code on the thread, undici's HTTP parser and socket syscalls, event-loop overhead",
  timer: 'the thread was asleep past the due time: a timer or a blocking sleep woke it late (timer / event-loop poll granularity, timer slack)',
};

/** What a late send's window is made of, in ms (before sharing its lag out). */
export interface LagWindow {
  gc: number;
  descheduled: number;
  generatorWork: number;
  otherJs: number;
  timer: number;
}

/** GC pauses sorted by start, with the longest duration (bounds the backwards search). */
export interface SortedPauses {
  start: Float64Array;
  end: Float64Array;
  maxDuration: number;
}

export function sortedPauses(starts: readonly number[], durations: readonly number[]): SortedPauses {
  const order = Array.from(starts.keys()).sort((a, b) => starts[a]! - starts[b]!);
  const start = new Float64Array(order.length);
  const end = new Float64Array(order.length);
  let maxDuration = 0;
  order.forEach((i, j) => {
    start[j] = starts[i]!;
    end[j] = starts[i]! + durations[i]!;
    if (durations[i]! > maxDuration) maxDuration = durations[i]!;
  });
  return { start, end, maxDuration };
}

/** Total time GC pauses overlap [from, to] (binary search to the first pause that can reach `from`). */
export function gcOverlap(p: SortedPauses, from: number, to: number): number {
  const s = p.start;
  let lo = 0;
  let hi = s.length;
  const first = from - p.maxDuration;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (s[mid]! < first) lo = mid + 1;
    else hi = mid;
  }
  let sum = 0;
  for (let j = lo; j < s.length && s[j]! < to; j++) {
    const e = p.end[j]!;
    if (e <= from) continue;
    sum += Math.min(e, to) - Math.max(s[j]!, from);
  }
  return sum;
}

/**
 * Splits a window of `total` ms: gc, then run delay, then the generator's work, then the rest of the
 * thread's CPU time, and what remains is sleep. Without schedstat (NaN run delay / CPU), everything not
 * GC or generator work is other_js.
 */
export function splitWindow(total: number, gc: number, delay: number, work: number, exec: number): LagWindow {
  let left = Math.max(0, total);
  const g = Math.min(Math.max(0, gc), left);
  left -= g;
  const d = Number.isNaN(delay) ? 0 : Math.min(Math.max(0, delay), left);
  left -= d;
  const w = Math.min(Math.max(0, work), left);
  left -= w;
  const o = Number.isNaN(exec) ? left : Math.min(Math.max(0, exec - g - w), left);
  left -= o;
  return { gc: g, descheduled: d, generatorWork: w, otherJs: o, timer: left };
}

function windowValue(w: LagWindow, c: LagCause): number {
  switch (c) {
    case 'gc':
      return w.gc;
    case 'descheduled':
      return w.descheduled;
    case 'generator_work':
      return w.generatorWork;
    case 'other_js':
      return w.otherJs;
    case 'timer':
      return w.timer;
  }
}

export function primaryCause(w: LagWindow): LagCause {
  let best: LagCause = 'other_js';
  let v = -1;
  for (const c of LAG_CAUSES) {
    const x = windowValue(w, c);
    if (x > v) {
      v = x;
      best = c;
    }
  }
  return best;
}

export function shareLag(w: LagWindow, lag: number): Record<LagCause, number> {
  const total = w.gc + w.descheduled + w.generatorWork + w.otherJs + w.timer;
  const out = {} as Record<LagCause, number>;
  for (const c of LAG_CAUSES) out[c] = total > 0 ? (windowValue(w, c) / total) * lag : c === 'other_js' ? lag : 0;
  return out;
}
