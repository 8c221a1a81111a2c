/**
 * `marginal_utility` (seed 003): route by the TREND of each worker's recent performance.
 *
 * Per worker, a sliding window (20) of finished requests (observe: sent -> finished latency, output
 * tokens per second). With at least min_history (10) samples the window is split in halves (older,
 * newer); each half's mean throughput and mean latency give
 *
 *   grad_throughput = (t_newer - t_older) / dt      grad_latency = (l_newer - l_older) / dt
 *   dt = finish time of the newer half's last sample - finish time of the older half's last sample (s)
 *   score = 0.6 * grad_throughput - 0.4 * grad_latency                 (highest wins)
 *
 * A worker with too little history has no trend: its score is a neutral 0, and among equal scores the
 * lower load (the router's in-flight count, outstanding_requests) wins, then a seeded random pick; with
 * no history anywhere this is the seed's fallback to a load score.
 *
 * OURS, a load guard (`--mu-load-guard`, default 2; -1 = off, the seed's exact rule): only workers whose
 * in-flight count is within the guard of the minimum compete on score. A trend says nothing about
 * level (a steadily slow worker has a flat trend), so without a bound gradients alone can pile work onto
 * a saturated worker (docs/policies.md).
 *
 * Every decision carries its inputs, gradients and score; with `decisionsCsv` they are also written, in
 * batches, from this (the actor's) thread to a CSV with the seed's columns, real request ids included.
 */
import { basename, dirname, extname, join } from 'node:path';
import { SwitchyardError } from '../errors.js';
import { Field, type WorkerTable } from '../actors/worker-table.js';
import { collectAvailable, decisionFor } from './common.js';
import { checkCsvPath, DecisionsCsv, type SelectionReason } from './decisions-csv.js';
import { WorkerWindows, type SampleRing } from './worker-windows.js';
import type { CompletionFeedback, Decision, Policy, PolicyContext, PolicyFactoryOptions, RequestFeatures, WorkerInfo } from './types.js';

export interface MarginalUtilityOptions {
  readonly windowSize: number;
  readonly minHistory: number;
  readonly throughputWeight: number;
  readonly latencyWeight: number;
  /** In-flight requests above the minimum a worker may have and still compete on score; -1 = no guard. */
  readonly loadGuard: number;
  /** Where to write the decisions CSV (absent: not written). */
  readonly decisionsCsv: string | undefined;
}

export const MARGINAL_UTILITY_DEFAULTS = Object.freeze({
  windowSize: 20,
  minHistory: 10,
  throughputWeight: 0.6,
  latencyWeight: 0.4,
  loadGuard: 2,
});

/** A worker's trend, recomputed when a sample arrives (decisions only read it). */
export interface Trend {
  readonly samples: number;
  readonly hasTrend: boolean;
  readonly throughputGradient: number;
  readonly latencyGradient: number;
  readonly score: number;
  /** Means over the whole window: output tokens/s per request, seconds. */
  readonly avgThroughput: number;
  readonly avgLatency: number;
}

const NO_TREND: Trend = Object.freeze({ samples: 0, hasTrend: false, throughputGradient: 0, latencyGradient: 0, score: 0, avgThroughput: 0, avgLatency: 0 });

function opt(o: PolicyFactoryOptions, key: string, fallback: number, ok: (v: number) => boolean, what: string): number {
  const v = o[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'number' || !ok(v)) throw new SwitchyardError('invalid_request', `marginal_utility: ${key} must be ${what}, got ${String(v)}`);
  return v;
}

export function marginalUtilityOptions(o: PolicyFactoryOptions = {}): MarginalUtilityOptions {
  const d = MARGINAL_UTILITY_DEFAULTS;
  const windowSize = opt(o, 'muWindowSize', d.windowSize, (v) => Number.isInteger(v) && v >= 2 && v <= 10_000, 'an integer in [2, 10000]');
  const minHistory = opt(o, 'muMinHistory', d.minHistory, (v) => Number.isInteger(v) && v >= 2, 'an integer >= 2');
  if (minHistory > windowSize) throw new SwitchyardError('invalid_request', `marginal_utility: muMinHistory (${minHistory}) cannot exceed muWindowSize (${windowSize})`);
  const finite = (v: number): boolean => Number.isFinite(v) && v >= 0;
  const csv = o['decisionsCsv'];
  if (csv !== undefined && csv !== null && typeof csv !== 'string') throw new SwitchyardError('invalid_request', 'marginal_utility: decisionsCsv must be a path');
  let path = typeof csv === 'string' && csv !== '' ? checkCsvPath(csv) : undefined;
  const shardCount = o['shardCount'];
  if (path !== undefined && typeof shardCount === 'number' && shardCount > 1) {
    // Each shard writes its own file: x.csv -> x.shard0.csv
    const ext = extname(path);
    path = join(dirname(path), `${basename(path, ext)}.shard${String(o['shardIndex'] ?? 0)}${ext}`);
  }
  return {
    windowSize,
    minHistory,
    throughputWeight: opt(o, 'muThroughputWeight', d.throughputWeight, finite, 'a non-negative number'),
    latencyWeight: opt(o, 'muLatencyWeight', d.latencyWeight, finite, 'a non-negative number'),
    loadGuard: opt(o, 'muLoadGuard', d.loadGuard, (v) => Number.isInteger(v) && v >= -1, 'an integer >= -1 (-1 = no guard)'),
    decisionsCsv: path,
  };
}

/** The seed's gradient computation over one worker's window (oldest first). */
export function computeTrend(ring: SampleRing, o: Pick<MarginalUtilityOptions, 'minHistory' | 'throughputWeight' | 'latencyWeight'>): Trend {
  const n = ring.count;
  if (n === 0) return NO_TREND;
  let tAll = 0;
  let lAll = 0;
  let t1 = 0;
  let l1 = 0;
  let t2 = 0;
  let l2 = 0;
  const mid = n >> 1;
  for (let k = 0; k < n; k++) {
    const i = ring.index(k);
    const t = ring.throughput[i] as number;
    const l = ring.latencyS[i] as number;
    tAll += t;
    lAll += l;
    if (k < mid) {
      t1 += t;
      l1 += l;
    } else {
      t2 += t;
      l2 += l;
    }
  }
  const avgThroughput = tAll / n;
  const avgLatency = lAll / n;
  if (n < o.minHistory) return { samples: n, hasTrend: false, throughputGradient: 0, latencyGradient: 0, score: 0, avgThroughput, avgLatency };
  t1 /= mid;
  l1 /= mid;
  t2 /= n - mid;
  l2 /= n - mid;
  const dt = ((ring.finishedAt[ring.index(n - 1)] as number) - (ring.finishedAt[ring.index(mid - 1)] as number)) / 1000;
  // Both halves finished within the same instant (or out of order): the change is not a rate; no trend.
  const gT = dt > 1e-6 ? (t2 - t1) / dt : 0;
  const gL = dt > 1e-6 ? (l2 - l1) / dt : 0;
  return {
    samples: n,
    hasTrend: dt > 1e-6,
    throughputGradient: gT,
    latencyGradient: gL,
    score: o.throughputWeight * gT - o.latencyWeight * gL,
    avgThroughput,
    avgLatency,
  };
}

function fixed(x: number): string {
  return Math.abs(x) >= 0.01 || x === 0 ? x.toFixed(3) : x.toExponential(2);
}

export function createMarginalUtilityPolicy(options: PolicyFactoryOptions = {}): Policy {
  const o = marginalUtilityOptions(options);
  const windows = new WorkerWindows(o.windowSize);
  const trends = new Map<number, Trend>();
  const candidates: WorkerInfo[] = [];
  let outstanding = new Float64Array(16);
  let csv: DecisionsCsv | null = null;
  let table: WorkerTable | null = null;
  let gradientDecisions = 0;
  let loadDecisions = 0;
  let observed = 0;

  function writer(): DecisionsCsv | null {
    if (o.decisionsCsv === undefined) return null;
    csv ??= new DecisionsCsv(o.decisionsCsv);
    return csv;
  }

  function row(url: string, requestId: string, tr: Trend, out: number, reason: SelectionReason): void {
    writer()?.append({
      timestampMs: Date.now(),
      workerUrl: url,
      requestId,
      throughputGradient: tr.throughputGradient,
      latencyGradient: tr.latencyGradient,
      score: tr.score,
      outstanding: out,
      avgThroughput: tr.avgThroughput,
      avgLatency: tr.avgLatency,
      windowSize: tr.samples,
      selectionReason: reason,
    });
  }

  return {
    name: 'marginal_utility',
    stateful: true,

    select(req: RequestFeatures, ctx: PolicyContext): Decision | null {
      table = ctx.table;
      const n = collectAvailable(ctx.table, ctx.workers, candidates);
      if (n === 0) return null;
      if (outstanding.length < n) outstanding = new Float64Array(Math.max(n, outstanding.length * 2));
      let minOut = Infinity;
      for (let i = 0; i < n; i++) {
        const v = ctx.table.peek((candidates[i] as WorkerInfo).slot, Field.InFlightRequests);
        outstanding[i] = v;
        if (v < minOut) minOut = v;
      }
      const bound = o.loadGuard < 0 ? Infinity : minOut + o.loadGuard;
      const rng = ctx.rng;
      let best = -1;
      let bestScore = -Infinity;
      let bestOut = Infinity;
      let ties = 0;
      let eligible = 0;
      for (let i = 0; i < n; i++) {
        const out = outstanding[i] as number;
        if (out > bound) continue;
        eligible++;
        const tr = trends.get((candidates[i] as WorkerInfo).slot);
        const score = tr !== undefined && tr.hasTrend ? tr.score : 0;
        if (score > bestScore || (score === bestScore && out < bestOut)) {
          best = i;
          bestScore = score;
          bestOut = out;
          ties = 1;
        } else if (score === bestScore && out === bestOut && rng.next() * ++ties < 1) best = i;
      }
      const w = candidates[best] as WorkerInfo;
      const tr = trends.get(w.slot) ?? NO_TREND;
      const out = outstanding[best] as number;
      const gradient = tr.hasTrend;
      if (gradient) gradientDecisions++;
      else loadDecisions++;
      const guard = o.loadGuard < 0 ? 'no load guard' : `in-flight <= ${bound}`;
      const reason = gradient
        ? `marginal_utility: gradient_based: score ${fixed(tr.score)} = ${o.throughputWeight} * ${fixed(tr.throughputGradient)} tok/s/s - ` +
          `${o.latencyWeight} * ${fixed(tr.latencyGradient)} s/s over ${tr.samples} samples, best of ${eligible} (${guard}) -> ${w.url} (in-flight ${out})`
        : `marginal_utility: load_based: ${w.url} has ${tr.samples} < ${o.minHistory} samples (no trend); in-flight ${out}, lowest of ${eligible} (${guard})`;
      row(w.url, req.requestId, tr, out, gradient ? 'gradient_based' : 'load_based');
      return decisionFor(w, reason, {
        score: tr.score,
        throughput_gradient: tr.throughputGradient,
        latency_gradient: tr.latencyGradient,
        outstanding: out,
        min_outstanding: minOut,
        avg_throughput: tr.avgThroughput,
        avg_latency: tr.avgLatency,
        window_size: tr.samples,
        gradient_based: gradient ? 1 : 0,
        eligible,
        available: n,
      });
    },

    observe(f: CompletionFeedback): void {
      observed++;
      if (!windows.add(f)) return;
      const ring = windows.get(f.slot) as SampleRing;
      const tr = computeTrend(ring, o);
      trends.set(f.slot, tr);
      row(f.url, f.requestId, tr, table === null ? 0 : table.peek(f.slot, Field.InFlightRequests), 'completion_record');
    },

    onWorkersChanged(ws: readonly WorkerInfo[]): void {
      windows.setMembers(ws);
      for (const slot of [...trends.keys()]) if (windows.get(slot) === undefined) trends.delete(slot);
    },

    snapshot(): unknown {
      const workers: Record<string, Trend> = {};
      for (const [slot, tr] of trends) {
        const ring = windows.get(slot);
        if (ring !== undefined) workers[ring.url] = tr;
      }
      return {
        options: o,
        decisions: { gradient_based: gradientDecisions, load_based: loadDecisions },
        observed,
        skipped_feedback: windows.skipped,
        workers,
        csv: csv?.stats() ?? null,
      };
    },

    async close(): Promise<void> {
      await csv?.close();
    },
  };
}
