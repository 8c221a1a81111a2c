/**
 * The soak's bookkeeping, pure and unit-tested (test/hardening/soak.test.ts): request outcomes, which
 * errors the injected faults explain, the memory trend (least-squares slope over the steady part), the
 * verdict, and the printed table.
 */

export const FAULT_KINDS = ['kill', '5xx', 'garbage', 'hang', 'slow-clients'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** One injected fault: worker `worker` (index) from `start` to `end` (ms since the soak started). */
export interface FaultWindow {
  readonly kind: FaultKind;
  readonly worker: number;
  readonly start: number;
  readonly end: number;
  /** What was done, for the report (e.g. "SIGKILL pid 123, restarted on :20001"). */
  note: string;
}

/**
 * Error kinds a fault explains (a request that overlapped its window may end so). Everything else is
 * unexpected. Non-streaming requests are retried, so a fault should show at most in streams already
 * started (kill) or as our own upstream timeout (hang, which is not retried by design).
 */
const EXPLAINED: Readonly<Record<FaultKind, readonly string[]>> = {
  kill: ['stream:upstream_error', 'stream:upstream_connect_failed'],
  '5xx': ['injected_failure'],
  garbage: ['upstream_error', 'upstream_invalid_response'],
  hang: ['upstream_timeout'],
  'slow-clients': [],
};

export type Outcome =
  | { readonly kind: 'ok' }
  | { readonly kind: 'aborted' }
  | { readonly kind: 'error'; readonly error: string }
  /** No definitive answer: reset, truncated stream, timeout, a non-JSON error body. */
  | { readonly kind: 'lost'; readonly why: string };

export interface RequestRecord {
  readonly sentAt: number;
  readonly endedAt: number;
  readonly stream: boolean;
  readonly outcome: Outcome;
}

/** Is an error of this kind explained by a fault active while the request ran (plus `slackMs` after)? */
export function isExpected(error: string, sentAt: number, endedAt: number, faults: readonly FaultWindow[], slackMs: number): boolean {
  for (const f of faults) {
    if (sentAt > f.end + slackMs || endedAt < f.start) continue;
    if (EXPLAINED[f.kind].includes(error)) return true;
  }
  return false;
}

export interface ErrorTally {
  readonly kind: string;
  readonly count: number;
  readonly expected: number;
  readonly unexpected: number;
}

export function tallyErrors(records: readonly RequestRecord[], faults: readonly FaultWindow[], slackMs: number): ErrorTally[] {
  const by = new Map<string, { count: number; expected: number }>();
  for (const r of records) {
    if (r.outcome.kind !== 'error') continue;
    const k = r.outcome.error;
    const e = by.get(k) ?? { count: 0, expected: 0 };
    e.count++;
    if (isExpected(k, r.sentAt, r.endedAt, faults, slackMs)) e.expected++;
    by.set(k, e);
  }
  return [...by.entries()].map(([kind, e]) => ({ kind, count: e.count, expected: e.expected, unexpected: e.count - e.expected })).sort((a, b) => b.count - a.count);
}

export interface Point {
  /** ms */
  readonly t: number;
  readonly v: number;
}

/** Least-squares slope of v over t, per minute (v units per minute); 0 with fewer than 2 points. */
export function slopePerMinute(points: readonly Point[]): number {
  const n = points.length;
  if (n < 2) return 0;
  let st = 0;
  let sv = 0;
  for (const p of points) {
    st += p.t;
    sv += p.v;
  }
  const mt = st / n;
  const mv = sv / n;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.t - mt) * (p.v - mv);
    den += (p.t - mt) ** 2;
  }
  return den === 0 ? 0 : (num / den) * 60_000;
}

export interface MemoryTrend {
  /** MB */
  readonly first: number;
  readonly afterWarmup: number;
  readonly last: number;
  readonly max: number;
  /** MB per minute over the samples after warm-up. */
  readonly slopeMbPerMin: number;
  /** MB per minute over the second half of those samples (a plateau shows here as ~0). */
  readonly lastHalfSlopeMbPerMin: number;
  readonly samples: number;
}

const MB = 1024 * 1024;

export function memoryTrend(samples: readonly Point[], warmupMs: number): MemoryTrend {
  const steady = samples.filter((p) => p.t >= warmupMs);
  const mb = (v: number | undefined) => (v === undefined ? 0 : Math.round((v / MB) * 10) / 10);
  return {
    first: mb(samples[0]?.v),
    afterWarmup: mb(steady[0]?.v),
    last: mb(samples[samples.length - 1]?.v),
    max: mb(samples.reduce((m, p) => Math.max(m, p.v), 0)),
    slopeMbPerMin: Math.round((slopePerMinute(steady) / MB) * 100) / 100,
    lastHalfSlopeMbPerMin: Math.round((slopePerMinute(steady.slice(Math.floor(steady.length / 2))) / MB) * 100) / 100,
    samples: steady.length,
  };
}

/** Counters that must be 0 once the load stopped and the router drained. */
export interface LeakCheck {
  readonly name: string;
  readonly value: number;
}

export interface Verdict {
  readonly pass: boolean;
  readonly reasons: string[];
}

export interface Thresholds {
  /** Fail when the router's RSS grows faster than this over the steady part (MB/min). */
  readonly maxRssSlopeMbPerMin: number;
  /** Same for the live heap (after GC); undefined = reported only. */
  readonly maxHeapSlopeMbPerMin?: number | undefined;
}

export function judge(lost: number, leaks: readonly LeakCheck[], rss: MemoryTrend, heap: MemoryTrend, t: Thresholds): Verdict {
  const reasons: string[] = [];
  if (lost > 0) reasons.push(`${lost} accepted requests lost (no answer, reset, truncated or timed out)`);
  for (const l of leaks) if (l.value !== 0) reasons.push(`leaked counter ${l.name} = ${l.value}`);
  if (rss.slopeMbPerMin > t.maxRssSlopeMbPerMin) reasons.push(`router RSS grows ${rss.slopeMbPerMin} MB/min over the steady part (threshold ${t.maxRssSlopeMbPerMin})`);
  if (t.maxHeapSlopeMbPerMin !== undefined && heap.slopeMbPerMin > t.maxHeapSlopeMbPerMin) {
    reasons.push(`router live heap grows ${heap.slopeMbPerMin} MB/min over the steady part (threshold ${t.maxHeapSlopeMbPerMin})`);
  }
  return { pass: reasons.length === 0, reasons };
}

function table(rows: readonly (readonly (string | number)[])[]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, String(c).length)));
  return rows.map((r) => r.map((c, i) => (typeof c === 'number' ? String(c).padStart(widths[i]!) : String(c).padEnd(widths[i]!))).join('  ').trimEnd()).join('\n');
}

export interface SoakSummary {
  readonly settings: Readonly<Record<string, unknown>>;
  readonly requests: { sent: number; ok: number; aborted: number; errors: number; lost: number; streams: number; slowClients: number };
  readonly lostReasons: Readonly<Record<string, number>>;
  readonly errors: readonly ErrorTally[];
  readonly faults: readonly FaultWindow[];
  readonly leaks: readonly LeakCheck[];
  readonly routerCounters: Readonly<Record<string, number>>;
  readonly rss: MemoryTrend;
  readonly heap: MemoryTrend;
  readonly loadGenerator: { sendLagP99Ms: number; sendLagMaxMs: number };
  readonly breakerTransitions: Readonly<Record<string, number>>;
  readonly verdict: Verdict;
}

/** The human-readable report. */
export function formatSoak(s: SoakSummary): string {
  const q = s.requests;
  const out: string[] = [];
  out.push(`soak ${JSON.stringify(s.settings)}`);
  out.push('');
  out.push(
    table([
      ['requests', 'sent', 'ok', 'aborted (by us)', 'errors', 'lost', 'streams', 'slow clients'],
      ['', q.sent, q.ok, q.aborted, q.errors, q.lost, q.streams, q.slowClients],
    ]),
  );
  if (q.lost > 0) out.push(`lost: ${Object.entries(s.lostReasons).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  out.push('');
  out.push(s.errors.length === 0 ? 'errors: none' : table([['error kind', 'count', 'expected (a fault explains it)', 'unexpected'], ...s.errors.map((e) => [e.kind, e.count, e.expected, e.unexpected])]));
  out.push('');
  out.push(table([['fault', 'worker', 'from s', 'to s', 'what'], ...s.faults.map((f) => [f.kind, f.worker, Math.round(f.start / 100) / 10, Math.round(f.end / 100) / 10, f.note])]));
  out.push('');
  out.push(table([['counter at the end', 'value'], ...s.leaks.map((l) => [l.name, l.value])]));
  out.push('');
  out.push(
    table([
      ['router memory (MB)', 'first', 'after warm-up', 'last', 'max', 'slope MB/min (steady part)', '(its last half)', 'samples'],
      ['RSS', s.rss.first, s.rss.afterWarmup, s.rss.last, s.rss.max, s.rss.slopeMbPerMin, s.rss.lastHalfSlopeMbPerMin, s.rss.samples],
      ['heap (live, after GC)', s.heap.first, s.heap.afterWarmup, s.heap.last, s.heap.max, s.heap.slopeMbPerMin, s.heap.lastHalfSlopeMbPerMin, s.heap.samples],
    ]),
  );
  out.push('');
  out.push(`load generator send lag: p99 ${s.loadGenerator.sendLagP99Ms} ms, max ${s.loadGenerator.sendLagMaxMs} ms`);
  const transitions = Object.entries(s.breakerTransitions).filter(([, n]) => n > 0);
  out.push(`breaker transitions: ${transitions.length === 0 ? 'none' : transitions.map(([k, n]) => `${k} ${n}`).join(', ')}`);
  out.push('');
  out.push(s.verdict.pass ? 'verdict: PASS' : `verdict: FAIL\n  ${s.verdict.reasons.join('\n  ')}`);
  return out.join('\n');
}
