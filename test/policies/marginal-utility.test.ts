/** marginal_utility: the seed's gradient arithmetic, selection, the load guard, and the decisions CSV. */
import t from 'tap';
import { mkdtempSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WorkerTable } from '../../src/actors/worker-table.js';
import { monotonicNow } from '../../src/policies/common.js';
import { createPolicyHost } from '../../src/policies/host.js';
import { computeTrend, createMarginalUtilityPolicy, marginalUtilityOptions } from '../../src/policies/marginal-utility.js';
import { WorkerWindows } from '../../src/policies/worker-windows.js';
import { checkCsvPath, csvNumber, csvTimestamp, DECISIONS_CSV_COLUMNS, DecisionsCsv } from '../../src/policies/decisions-csv.js';
import { SwitchyardError } from '../../src/errors.js';
import type { CompletionFeedback, Decision, Policy, PolicyContext, RequestFeatures, WorkerInfo } from '../../src/policies/types.js';
import { Rng } from '../../src/util/rng.js';
import { addWorkers, decideAsync, TEST_ACTOR } from './conformance.js';

function ctxFor(table: WorkerTable, workers: readonly WorkerInfo[], seed = 1): PolicyContext {
  return { table, workers, rng: new Rng(seed), now: monotonicNow };
}

function req(id: string): RequestFeatures {
  return { requestId: id, route: 'generate', text: 'x', inputTokens: 1, maxNewTokens: 8, stream: false };
}

/** A finished request on w: finished at `at` ms, `latencyS` after it was sent, `tokens` output tokens. */
function done(w: WorkerInfo, at: number, latencyS: number, tokens: number, id = `f${at}`): CompletionFeedback {
  return { requestId: id, url: w.url, slot: w.slot, success: true, sentAt: at - latencyS * 1000, firstTokenAt: at - latencyS * 900, finishedAt: at, inputTokens: 10, outputTokens: tokens, cachedTokens: 0 };
}

/** Ten requests: the first five 1 s and 100 tok/s, the last five 2 s and 50 tok/s, one per second. */
function degrading(p: Policy, w: WorkerInfo, start = 0): void {
  for (let i = 1; i <= 10; i++) p.observe?.(done(w, start + i * 1000, i <= 5 ? 1 : 2, 100));
}

/** The mirror image: getting faster. */
function improving(p: Policy, w: WorkerInfo, start = 0): void {
  for (let i = 1; i <= 10; i++) p.observe?.(done(w, start + i * 1000, i <= 5 ? 2 : 1, 100));
}

t.test("the seed's gradients: halves, means, dt between the halves' last finishes, 0.6 / 0.4 weights", async (t) => {
  const table = WorkerTable.create(4);
  const [w] = addWorkers(table, 1) as [WorkerInfo];
  const windows = new WorkerWindows(20);
  windows.setMembers([w]);
  for (let i = 1; i <= 10; i++) windows.add(done(w, i * 1000, i <= 5 ? 1 : 2, 100));
  const tr = computeTrend(windows.get(w.slot)!, { minHistory: 10, throughputWeight: 0.6, latencyWeight: 0.4 });
  // t1 = 100 tok/s, t2 = 50; l1 = 1 s, l2 = 2 s; dt = (10000 - 5000) / 1000 = 5 s
  t.equal(tr.hasTrend, true);
  t.equal(tr.throughputGradient, -10);
  t.equal(tr.latencyGradient, 0.2);
  t.equal(tr.score, 0.6 * -10 - 0.4 * 0.2);
  t.equal(tr.avgThroughput, 75);
  t.equal(tr.avgLatency, 1.5);
  t.equal(tr.samples, 10);
  // nine samples: no trend yet, but means are known
  const few = new WorkerWindows(20);
  few.setMembers([w]);
  for (let i = 1; i <= 9; i++) few.add(done(w, i * 1000, 1, 50));
  const ft = computeTrend(few.get(w.slot)!, { minHistory: 10, throughputWeight: 0.6, latencyWeight: 0.4 });
  t.same([ft.hasTrend, ft.score, ft.avgThroughput, ft.avgLatency], [false, 0, 50, 1]);
  // the window slides: 20 kept, the oldest dropped
  for (let i = 11; i <= 40; i++) windows.add(done(w, i * 1000, 1, 100));
  t.equal(windows.get(w.slot)!.count, 20);
  t.equal(computeTrend(windows.get(w.slot)!, { minHistory: 10, throughputWeight: 0.6, latencyWeight: 0.4 }).score, 0, 'flat: no change, score 0');
  // all samples finished in the same instant: no rate, no trend (never a division by zero)
  const same = new WorkerWindows(20);
  same.setMembers([w]);
  for (let i = 1; i <= 10; i++) same.add(done(w, 5000, i <= 5 ? 1 : 2, 100));
  const st = computeTrend(same.get(w.slot)!, { minHistory: 10, throughputWeight: 0.6, latencyWeight: 0.4 });
  t.same([st.hasTrend, st.score], [false, 0]);
  // failures, unknown workers and bad timestamps are not samples
  t.notOk(windows.add({ ...done(w, 1, 1, 1), success: false }));
  t.notOk(windows.add({ ...done(w, 1, 1, 1), url: 'http://other:1' }));
  t.notOk(windows.add({ ...done(w, 1000, 1, 1), sentAt: 2000 }));
  t.equal(windows.skipped, 3);
});

t.test('highest score wins; no history -> load; the load guard bounds who competes', async (t) => {
  const table = WorkerTable.create(8);
  const ws = addWorkers(table, 3);
  const [a, b, c] = ws as [WorkerInfo, WorkerInfo, WorkerInfo];
  const p = createMarginalUtilityPolicy();
  p.onWorkersChanged?.(ws);
  const ctx = ctxFor(table, ws);
  // no history anywhere: the least outstanding, reason says load_based
  table.acquire(a, 1);
  table.acquire(c, 1);
  let d = p.select(req('r1'), ctx) as Decision;
  t.equal(d.slot, b.slot);
  t.equal(d.scores?.['gradient_based'], 0);
  t.match(d.reason, /^marginal_utility: load_based: http:\/\/127\.0\.0\.1:\d+ has 0 < 10 samples \(no trend\); in-flight 0, lowest of 3 \(in-flight <= 2\)$/);
  // a degrades, c improves, b has no history (neutral 0): c wins on score
  degrading(p, a);
  improving(p, c);
  d = p.select(req('r2'), ctx) as Decision;
  t.equal(d.slot, c.slot);
  t.equal(d.scores?.['gradient_based'], 1);
  t.equal(d.scores?.['throughput_gradient'], 10);
  t.equal(d.scores?.['latency_gradient'], -0.2);
  t.ok(Math.abs((d.scores?.['score'] ?? 0) - 6.08) < 1e-9);
  t.match(d.reason, /^marginal_utility: gradient_based: score 6\.080 = 0\.6 \* 10\.000 tok\/s\/s - 0\.4 \* -0\.200 s\/s over 10 samples, best of 3 \(in-flight <= 2\) -> /);
  // c gets busy: 3 above the minimum (0 on b) is beyond the guard of 2 -> b (neutral) beats degrading a
  for (let i = 0; i < 2; i++) table.acquire(c, 1); // c at 3
  d = p.select(req('r3'), ctx) as Decision;
  t.equal(d.slot, b.slot, 'c is outside the guard; b (no trend, 0) beats a (negative score)');
  t.equal(d.scores?.['eligible'], 2);
  // without the guard (the seed's exact rule) c's score wins regardless of its load
  const exact = createMarginalUtilityPolicy({ muLoadGuard: -1 });
  exact.onWorkersChanged?.(ws);
  improving(exact, c);
  d = exact.select(req('r4'), ctx) as Decision;
  t.equal(d.slot, c.slot);
  t.match(d.reason, /\(no load guard\)/);
  // the worker leaves: its window and trend go
  p.onWorkersChanged?.([a, b]);
  const snap = p.snapshot?.() as { workers: Record<string, unknown>; decisions: Record<string, number> };
  t.same(Object.keys(snap.workers), [a.url]);
  t.same(snap.decisions, { gradient_based: 1, load_based: 2 });
});

t.test('options: defaults, validation', async (t) => {
  const o = marginalUtilityOptions();
  t.same({ ...o }, { windowSize: 20, minHistory: 10, throughputWeight: 0.6, latencyWeight: 0.4, loadGuard: 2, decisionsCsv: undefined });
  for (const bad of [{ muWindowSize: 1 }, { muMinHistory: 30 }, { muLoadGuard: -2 }, { muThroughputWeight: -1 }, { decisionsCsv: 5 }, { decisionsCsv: '/nonexistent-dir/x.csv' }]) {
    const err = t.throws(() => createMarginalUtilityPolicy(bad)) as SwitchyardError;
    t.equal(err.code, 'invalid_request', JSON.stringify(bad));
  }
  const dir = mkdtempSync(join(tmpdir(), 'mu-opt-'));
  t.equal(marginalUtilityOptions({ decisionsCsv: join(dir, 'd.csv'), shardCount: 3, shardIndex: 2 }).decisionsCsv, join(dir, 'd.shard2.csv'), 'one file per shard');
  mkdirSync(join(dir, 'a-dir.csv'));
  t.throws(() => checkCsvPath(join(dir, 'a-dir.csv')), /not a regular file/);
  t.equal(csvNumber(Number.NaN), '0');
  t.equal(csvNumber(1 / 3), '0.333333');
  t.equal(csvNumber(-12), '-12');
  t.equal(csvTimestamp(Date.UTC(2025, 6, 31, 5, 38, 8, 623)), '2025-07-31 05:38:08.623');
});

t.test('the decisions CSV through a policy actor: seed columns, numbers in every gradient column, real request ids', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mu-csv-'));
  const path = join(dir, 'decisions.csv');
  const table = WorkerTable.create(8);
  const ws = addWorkers(table, 2);
  const host = createPolicyHost('marginal_utility', { seed: 3, decisionsCsv: path }, table, undefined, { actor: TEST_ACTOR });
  t.equal(host.placement, 'actor', 'stateful: decides (and writes) in its actor thread');
  await host.ready();
  host.setWorkers(ws);
  const ids: string[] = [];
  let clock = 10_000;
  for (let i = 0; i < 40; i++) {
    const id = `req-${i}-${(i * 2654435761) % 1000}`;
    ids.push(id);
    const d = (await decideAsync(host, req(id))) as Decision;
    t.not(d, null);
    clock += 250;
    host.observe(done(ws.find((w) => w.slot === d.slot)!, clock, 0.2 + (i % 5) * 0.05, 40 + i, id));
  }
  await host.close();
  const lines = readFileSync(path, 'utf8').trimEnd().split('\n');
  t.equal(lines[0], DECISIONS_CSV_COLUMNS.join(','), 'the header: the seed\'s columns exactly');
  t.equal(lines[0], 'timestamp,worker_url,request_id,throughput_gradient,latency_gradient,score,outstanding_requests,avg_throughput,avg_latency,window_size,selection_reason');
  const rows = lines.slice(1).map((l) => l.split(','));
  t.equal(rows.length, 80, 'one row per decision and one per completion');
  const reasons = new Map<string, number>();
  for (const r of rows) {
    t.equal(r.length, 11);
    t.match(r[0], /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}$/);
    t.ok(ids.includes(r[2]!), `request id ${r[2]} is a real one`);
    for (const col of [3, 4, 5, 6, 7, 8, 9]) {
      if (r[col] === '' || !Number.isFinite(Number(r[col]))) t.fail(`column ${DECISIONS_CSV_COLUMNS[col]} is not a number: '${r[col]}'`);
    }
    reasons.set(r[10]!, (reasons.get(r[10]!) ?? 0) + 1);
  }
  t.equal(reasons.get('completion_record'), 40);
  t.ok((reasons.get('gradient_based') ?? 0) > 0, 'decisions with a trend are marked gradient_based');
  t.ok((reasons.get('load_based') ?? 0) > 0, 'early decisions are load_based');
  t.ok(rows.some((r) => r[10] === 'gradient_based' && Number(r[3]) !== 0), 'gradients are recorded, not left empty');
  // a restarted writer appends, without a second header
  const again = new DecisionsCsv(path, { flushIntervalMs: 0 });
  again.append({ timestampMs: 0, workerUrl: 'http://w:1', requestId: 'a,"b"', throughputGradient: 1, latencyGradient: 2, score: 3, outstanding: 4, avgThroughput: 5, avgLatency: 6, windowSize: 7, selectionReason: 'load_based' });
  await again.close();
  const after = readFileSync(path, 'utf8').trimEnd().split('\n');
  t.equal(after.length, 82);
  t.equal(after[81], '1970-01-01 00:00:00.000,http://w:1,"a,""b""",1,2,3,4,5,6,7,load_based', 'quoted where needed');
  t.same(again.stats().errors, 0);
});

t.test('the CSV writer: batches, timer flush, write errors counted not thrown', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mu-w-'));
  const path = join(dir, 'w.csv');
  const w = new DecisionsCsv(path, { flushRows: 3, flushIntervalMs: 20 });
  const row = { timestampMs: 1, workerUrl: 'u', requestId: 'r', throughputGradient: 0, latencyGradient: 0, score: 0, outstanding: 0, avgThroughput: 0, avgLatency: 0, windowSize: 0, selectionReason: 'gradient_based' as const };
  w.append(row);
  w.append(row);
  t.equal(w.stats().pending, 2, 'below the batch size: buffered');
  await new Promise((r) => setTimeout(r, 100));
  t.equal(w.stats().pending, 0, 'the timer flushed it');
  for (let i = 0; i < 7; i++) w.append(row);
  await w.close();
  w.append(row); // after close: ignored
  t.equal(readFileSync(path, 'utf8').trimEnd().split('\n').length, 10);
  t.equal(w.stats().rows, 9);
  writeFileSync(join(dir, 'ro.csv'), '');
  const bad = new DecisionsCsv(join(dir, 'ro.csv'), { flushRows: 1, flushIntervalMs: 0 });
  // simulate a lost file descriptor: the write fails, the error is counted, nothing throws
  (bad as unknown as { fd: number }).fd = 999_999;
  bad.append(row);
  await new Promise((r) => setTimeout(r, 50));
  t.equal(bad.stats().errors, 1);
  t.match(bad.stats().lastError, /EBADF/);
  (bad as unknown as { fd: number }).fd = -1;
  await bad.close();
});
