/**
 * Helpers shared by policies and policy hosts. They are on the request path: no allocation per call
 * beyond the Decision itself.
 */
import type { WorkerTable } from '../actors/worker-table.js';
import type { Decision, WorkerInfo } from './types.js';
import type { Rng } from '../util/rng.js';

/**
 * Milliseconds on a clock shared by every thread of the process (performance.now() alone has a
 * per-thread origin). Hosts give it to policies as ctx.now(); feedback timestamps should use it too.
 */
export function monotonicNow(): number {
  return performance.timeOrigin + performance.now();
}

/**
 * A worker may be chosen: active, healthy, breaker not open (SGLang's `is_available`), AND the slot still
 * holds the generation the membership list names, so a slot released or reused since the list was sent
 * is never chosen under the old identity.
 */
export function isCandidate(table: WorkerTable, w: WorkerInfo): boolean {
  // Relaxed reads: Atomics.load costs ~20x a plain load here, and a routing read a moment stale is fine.
  return table.isCandidate(w.slot, w.generation);
}

/**
 * Fill `out` with the available members, in membership order; returns how many. `out` is the caller's
 * reusable array: entries past the returned count are leftovers and must be ignored.
 */
export function collectAvailable(table: WorkerTable, workers: readonly WorkerInfo[], out: WorkerInfo[]): number {
  let n = 0;
  for (let i = 0; i < workers.length; i++) {
    const w = workers[i] as WorkerInfo;
    if (isCandidate(table, w)) out[n++] = w;
  }
  return n;
}

/**
 * Index (into candidates[0..count)) of the least-loaded candidate by `table.peekLoad`, ties broken uniformly at
 * random (reservoir sampling): breaking ties by index would send every burst to the same first worker.
 * Returns -1 when count is 0.
 */
export function leastLoadedIndex(table: WorkerTable, candidates: readonly WorkerInfo[], count: number, rng: Rng): number {
  let best = -1;
  let bestLoad = Infinity;
  let ties = 0;
  for (let i = 0; i < count; i++) {
    const load = table.peekLoad((candidates[i] as WorkerInfo).slot);
    if (load < bestLoad) {
      best = i;
      bestLoad = load;
      ties = 1;
    } else if (load === bestLoad) {
      ties++;
      if (rng.next() * ties < 1) best = i;
    }
  }
  return best;
}

export function decisionFor(w: WorkerInfo, reason: string, scores?: Readonly<Record<string, number>>): Decision {
  return { slot: w.slot, generation: w.generation, url: w.url, reason, scores };
}

/**
 * The stateless choice hosts fall back to when a policy cannot answer (actor restarting, call failed):
 * least loaded among the available members, random tie-break. `scratch` is the caller's reusable array.
 */
export function leastLoadedDecision(
  table: WorkerTable,
  workers: readonly WorkerInfo[],
  scratch: WorkerInfo[],
  rng: Rng,
  reasonPrefix: string,
): Decision | null {
  const n = collectAvailable(table, workers, scratch);
  const i = leastLoadedIndex(table, scratch, n, rng);
  if (i < 0) return null;
  const w = scratch[i] as WorkerInfo;
  const load = table.peekLoad(w.slot);
  return decisionFor(w, `${reasonPrefix}; least loaded (load ${load}) of ${n} available`, { load, available: n });
}

/** A seed for when none was configured. */
export function randomSeed(): number {
  return (Math.random() * 0x1_0000_0000) >>> 0;
}
