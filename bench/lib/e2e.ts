/**
 * The end-to-end comparison's pure parts: workloads, figure names, the figures computed from the wrk
 * runs (medians and paired per-round ratios), and the sanity check each target passes before loading.
 */
import { summarize, type Figure } from './scenario.js';
import type { SkippedPart } from './protocol.js';
import { errorCount, type WrkResult } from './wrk.js';
import { httpRequest } from './processes.js';

export const TARGETS = ['direct', 'nginx', 'router'] as const;
export type TargetName = (typeof TARGETS)[number];

export interface Workload {
  readonly name: 'nonstream' | 'stream';
  readonly body: string;
  /** SSE events per response (0 for plain JSON). */
  readonly chunksPerRequest: number;
}

const PROMPT = 'Switchyard benchmark: a short fixed prompt that every request repeats.';

export function workloads(chunks: number): readonly Workload[] {
  return [
    { name: 'nonstream', body: JSON.stringify({ text: PROMPT, sampling_params: { max_new_tokens: 16, temperature: 0 }, stream: false }), chunksPerRequest: 0 },
    { name: 'stream', body: JSON.stringify({ text: PROMPT, sampling_params: { max_new_tokens: chunks, temperature: 0 }, stream: true }), chunksPerRequest: chunks },
  ];
}

/** Pairs reported as ratios: a/b, both measured in the same round. */
export const RATIO_PAIRS: readonly (readonly [TargetName, TargetName])[] = [
  ['router', 'nginx'],
  ['router', 'direct'],
  ['nginx', 'direct'],
];

/** A run whose failed requests exceed this share says nothing about throughput: the target is dropped. */
export const MAX_ERROR_SHARE = 0.01;

/** Why a wrk run cannot be used, or undefined when it can. */
export function runProblem(r: WrkResult): string | undefined {
  if (r.requests === 0) return 'no request completed';
  const errors = errorCount(r);
  if (errors > r.requests * MAX_ERROR_SHARE) {
    const e = r.errors;
    return `${errors} failed of ${r.requests} requests (non-2xx ${e.non2xx3xx}, connect ${e.connect}, read ${e.read}, write ${e.write}, timeout ${e.timeout})`;
  }
  if (!Number.isFinite(r.latency.p99Ms) || !Number.isFinite(r.latency.p50Ms)) return 'wrk printed no latency distribution';
  return undefined;
}

export interface TargetRuns {
  /** One result per round, in round order; absent when the target could not be measured. */
  readonly runs?: readonly WrkResult[];
  readonly skipped?: string;
}

function fig(name: string, values: readonly number[], unit: string, better: Figure['better'], note?: string): Figure {
  const { median, spread } = summarize(values);
  return note === undefined ? { name, value: median, unit, better, spread } : { name, value: median, unit, better, spread, note };
}

/**
 * Figures of one workload. Per target: rps, chunks_per_s (streaming), p50_ms, p99_ms (medians over the
 * rounds). Per pair a/b: rps_ratio and p99_ratio, each the median of the per-round ratios, so that drift
 * over the run (thermal, neighbours) cancels within a round instead of landing on one side.
 */
export function workloadFigures(w: Workload, measured: Readonly<Record<TargetName, TargetRuns>>, load: string): { figures: Figure[]; skipped: SkippedPart[] } {
  const figures: Figure[] = [];
  const skipped: SkippedPart[] = [];
  const prefix = `e2e.${w.name}`;
  for (const t of TARGETS) {
    const m = measured[t];
    const runs = m.runs;
    if (runs === undefined || runs.length === 0) {
      skipped.push({ what: `${prefix}.${t}.*`, reason: m.skipped ?? 'not measured' });
      continue;
    }
    const errors = runs.reduce((n, r) => n + errorCount(r), 0);
    const requests = runs.reduce((n, r) => n + r.requests, 0);
    const errNote = errors > 0 ? `; ${errors} failed of ${requests} requests` : '';
    const rps = runs.map((r) => r.requestsPerSec);
    figures.push(fig(`${prefix}.${t}.rps`, rps, 'req/s', 'higher', `${load}${errNote}`));
    if (w.chunksPerRequest > 0) {
      figures.push(fig(`${prefix}.${t}.chunks_per_s`, rps.map((x) => x * w.chunksPerRequest), 'chunks/s', 'higher', `req/s x ${w.chunksPerRequest} events`));
    }
    figures.push(fig(`${prefix}.${t}.p50_ms`, runs.map((r) => r.latency.p50Ms), 'ms', 'lower'));
    figures.push(fig(`${prefix}.${t}.p99_ms`, runs.map((r) => r.latency.p99Ms), 'ms', 'lower'));
  }
  for (const [a, b] of RATIO_PAIRS) {
    const ra = measured[a].runs;
    const rb = measured[b].runs;
    const what = `${prefix}.${a}_vs_${b}.*`;
    if (ra === undefined || rb === undefined || ra.length === 0 || ra.length !== rb.length) {
      const missing = ra === undefined || ra.length === 0 ? a : b;
      skipped.push({ what, reason: `${missing} not measured${measured[missing].skipped === undefined ? '' : `: ${measured[missing].skipped}`}` });
      continue;
    }
    const rpsRatios = ra.map((r, i) => r.requestsPerSec / (rb[i] as WrkResult).requestsPerSec);
    const p99Ratios = ra.map((r, i) => r.latency.p99Ms / (rb[i] as WrkResult).latency.p99Ms);
    const note = `${a} / ${b}, paired per round, median of ${ra.length}`;
    figures.push(fig(`${prefix}.${a}_vs_${b}.rps_ratio`, rpsRatios, 'x', 'higher', note));
    figures.push(fig(`${prefix}.${a}_vs_${b}.p99_ratio`, p99Ratios, 'x', 'lower', note));
  }
  return { figures, skipped };
}

/** Count the `data:` events of an SSE body and check it ends with [DONE]. */
export function countSseEvents(body: string): { events: number; done: boolean } {
  let events = 0;
  let done = false;
  for (const block of body.split('\n\n')) {
    const line = block.trim();
    if (!line.startsWith('data:')) continue;
    const payload = line.slice(5).trim();
    if (payload === '[DONE]') done = true;
    else events++;
  }
  return { events, done };
}

/**
 * One request of each workload through `baseUrl` before loading it: a target that answers wrongly
 * (a proxy error page, a truncated stream) would otherwise be measured as fast.
 */
export async function sanityCheck(baseUrl: string, ws: readonly Workload[]): Promise<string | undefined> {
  for (const w of ws) {
    let r;
    try {
      r = await httpRequest(`${baseUrl}/generate`, { method: 'POST', body: w.body, headers: { 'content-type': 'application/json' }, timeoutMs: 10_000 });
    } catch (err) {
      return `${w.name} request failed: ${(err as Error).message}`;
    }
    if (r.status !== 200) return `${w.name} request answered ${r.status}: ${r.body.slice(0, 200)}`;
    if (w.chunksPerRequest === 0) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(r.body);
      } catch {
        return `${w.name} answer is not JSON: ${r.body.slice(0, 200)}`;
      }
      if (parsed === null || typeof parsed !== 'object' || !('meta_info' in parsed)) return `${w.name} answer has no meta_info: ${r.body.slice(0, 200)}`;
    } else {
      const { events, done } = countSseEvents(r.body);
      if (events !== w.chunksPerRequest || !done) return `${w.name} answer had ${events} events (expected ${w.chunksPerRequest})${done ? '' : ' and no [DONE]'}`;
    }
  }
  return undefined;
}

/**
 * sanityCheck, retried until it passes or `timeoutMs` runs out: a router may answer /liveness before its
 * first health check has marked the backend usable.
 */
export async function sanityCheckWithin(baseUrl: string, ws: readonly Workload[], timeoutMs: number, intervalMs = 200): Promise<string | undefined> {
  const t0 = Date.now();
  for (;;) {
    const problem = await sanityCheck(baseUrl, ws);
    if (problem === undefined || Date.now() - t0 >= timeoutMs) return problem;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
