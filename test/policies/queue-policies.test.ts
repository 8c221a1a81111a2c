/** shortest_queue and power_of_two: scripted sequences whose answer is known. */
import t from 'tap';
import { WorkerTable } from '../../src/actors/worker-table.js';
import { monotonicNow } from '../../src/policies/common.js';
import { createShortestQueuePolicy } from '../../src/policies/shortest-queue.js';
import { createPowerOfTwoPolicy } from '../../src/policies/power-of-two.js';
import { reportClockSec } from '../../src/policies/reported.js';
import { SwitchyardError } from '../../src/errors.js';
import type { CompletionFeedback, Decision, PolicyContext, RequestFeatures, WorkerInfo } from '../../src/policies/types.js';
import { Rng } from '../../src/util/rng.js';
import { addWorkers } from './conformance.js';

const REQ: RequestFeatures = { requestId: 'r', route: 'generate', text: 'hello', inputTokens: 2, maxNewTokens: 8, stream: false };

function ctxFor(table: WorkerTable, workers: readonly WorkerInfo[], seed = 1): PolicyContext {
  return { table, workers, rng: new Rng(seed), now: monotonicNow };
}

function load(table: WorkerTable, w: WorkerInfo, count: number): void {
  for (let i = 0; i < count; i++) table.acquire(w, 1);
}

function feedback(w: WorkerInfo, queueTime: number | undefined): CompletionFeedback {
  return { requestId: 'x', url: w.url, slot: w.slot, success: true, sentAt: 0, firstTokenAt: 5, finishedAt: 10, inputTokens: 1, outputTokens: 1, cachedTokens: 0, queueTime };
}

t.test('shortest_queue avoids a worker with a long queue (own in-flight counters)', async (t) => {
  const table = WorkerTable.create(8);
  const ws = addWorkers(table, 3);
  const p = createShortestQueuePolicy();
  p.onWorkersChanged?.(ws);
  const ctx = ctxFor(table, ws);
  load(table, ws[0]!, 9);
  load(table, ws[1]!, 2);
  load(table, ws[2]!, 5);
  const d = p.select(REQ, ctx) as Decision;
  t.equal(d.slot, ws[1]!.slot);
  t.same(d.scores, { queue: 2, in_flight: 2, reported_running: 0, reported_waiting: 0, queue_time_ms: 0, max_queue: 9, available: 3 });
  t.match(d.reason, /^shortest_queue: http:\/\/127\.0\.0\.1:\d+ queue 2 \(in-flight 2, reported 0 running \+ 0 waiting, queue time 0\.0 ms\) shortest of 3 \(longest 9\)$/);
  // a stream of requests, each counted as it is sent: the queues even out and the long one gets nothing
  const counts = new Map<number, number>();
  for (let i = 0; i < 12; i++) {
    const x = p.select(REQ, ctx) as Decision;
    counts.set(x.slot, (counts.get(x.slot) ?? 0) + 1);
    table.acquire(x, 1);
  }
  // 2 -> 5 (3 requests), then 5 and 5 -> 9 (8), then all at 9: only the 12th could go to worker 0
  t.ok((counts.get(ws[0]!.slot) ?? 0) <= 1, 'the worker with 9 queued got nothing until the others caught up');
  const queues = ws.map((w) => table.inFlight(w.slot));
  t.ok(Math.max(...queues) - Math.min(...queues) <= 1, `queues evened out: ${queues.join(', ')}`);
});

t.test('shortest_queue combines worker reports: another router\'s traffic counts, stale reports do not', async (t) => {
  const table = WorkerTable.create(8);
  const ws = addWorkers(table, 2);
  const p = createShortestQueuePolicy({ loadReportMaxAgeSecs: 5 });
  p.onWorkersChanged?.(ws);
  const ctx = ctxFor(table, ws);
  load(table, ws[1]!, 3);
  // worker 0 has no requests from us, but reports 20 running and 7 waiting (someone else's)
  table.setReported(ws[0]!.slot, { queue: 7, running: 20, tokens: 5000 }, reportClockSec());
  let d = p.select(REQ, ctx) as Decision;
  t.equal(d.slot, ws[1]!.slot, 'the reported queue of 27 beats our own 0');
  t.equal(d.scores?.['max_queue'], 27);
  // the same report, 60 s old: ignored
  table.setReported(ws[0]!.slot, { queue: 7, running: 20, tokens: 5000 }, reportClockSec() - 60);
  d = p.select(REQ, ctx) as Decision;
  t.equal(d.slot, ws[0]!.slot, 'a stale report no longer describes the worker');
  // equal queues: fewer waiting wins
  const t2 = WorkerTable.create(4);
  const w2 = addWorkers(t2, 2);
  const q = createShortestQueuePolicy();
  q.onWorkersChanged?.(w2);
  t2.setReported(w2[0]!.slot, { queue: 3, running: 1, tokens: 0 }, reportClockSec());
  t2.setReported(w2[1]!.slot, { queue: 0, running: 4, tokens: 0 }, reportClockSec());
  for (let i = 0; i < 10; i++) t.equal(q.select(REQ, ctxFor(t2, w2, i))?.slot, w2[1]!.slot, 'equal queues of 4: the one with 0 waiting');
});

t.test('shortest_queue: ties broken at random, never by index; queue time from meta_info breaks ties', async (t) => {
  const table = WorkerTable.create(8);
  const ws = addWorkers(table, 4);
  const p = createShortestQueuePolicy();
  p.onWorkersChanged?.(ws);
  const ctx = ctxFor(table, ws, 3);
  const counts = new Map<number, number>();
  for (let i = 0; i < 4000; i++) {
    const d = p.select(REQ, ctx) as Decision;
    counts.set(d.slot, (counts.get(d.slot) ?? 0) + 1);
  }
  for (const w of ws) {
    const c = counts.get(w.slot) ?? 0;
    t.ok(c > 850 && c < 1150, `worker ${w.slot}: ${c} of 4000 tied decisions`);
  }
  // workers report their requests queued: 0.5 s on worker 0 and 2, 0.01 s on 1, none on 3 (counts as 0)
  p.observe?.(feedback(ws[0]!, 0.5));
  p.observe?.(feedback(ws[1]!, 0.01));
  p.observe?.(feedback(ws[2]!, 0.5));
  p.observe?.({ ...feedback(ws[3]!, 9), url: 'http://elsewhere:1' }); // not this worker's: ignored
  const seen = new Set<number>();
  for (let i = 0; i < 200; i++) seen.add((p.select(REQ, ctx) as Decision).slot);
  t.same([...seen].sort(), [ws[3]!.slot], 'the worker with no queue time reported wins the tie');
  p.observe?.(feedback(ws[3]!, 1));
  const d = p.select(REQ, ctx) as Decision;
  t.equal(d.slot, ws[1]!.slot, 'now the 10 ms worker');
  t.equal(d.scores?.['queue_time_ms'], 10);
  t.same((p.snapshot?.() as { queue_time_ms: Record<string, number> }).queue_time_ms[ws[1]!.url], 10);
  // the worker leaves: its figure goes with it
  p.onWorkersChanged?.(ws.slice(0, 1));
  t.same(Object.keys((p.snapshot?.() as { queue_time_ms: Record<string, number> }).queue_time_ms), [ws[0]!.url]);
  t.throws(() => createShortestQueuePolicy({ loadReportMaxAgeSecs: -1 }), SwitchyardError);
});

t.test('power_of_two: two distinct random workers, the less loaded wins, a tie goes to the first', async (t) => {
  const table = WorkerTable.create(8);
  const ws = addWorkers(table, 4);
  const p = createPowerOfTwoPolicy();
  const ctx = ctxFor(table, ws, 11);
  // the most loaded worker can only win when drawn against itself, which never happens
  load(table, ws[0]!, 50);
  load(table, ws[1]!, 10);
  load(table, ws[2]!, 10);
  load(table, ws[3]!, 20);
  const counts = new Map<number, number>();
  for (let i = 0; i < 3000; i++) {
    const d = p.select(REQ, ctx) as Decision;
    t.not(d.scores?.['load_first'] === undefined, true);
    const a = d.scores!['load_first']!;
    const b = d.scores!['load_second']!;
    if (d.scores!['load'] !== Math.min(a, b)) t.fail(`chose ${d.scores!['load']} of ${a} and ${b}`);
    counts.set(d.slot, (counts.get(d.slot) ?? 0) + 1);
  }
  t.equal(counts.get(ws[0]!.slot) ?? 0, 0, 'the most loaded worker never wins');
  // ties go to the first drawn: 1 and 2 (10 each) split what they win between them roughly evenly
  const c1 = counts.get(ws[1]!.slot) ?? 0;
  const c2 = counts.get(ws[2]!.slot) ?? 0;
  t.ok(Math.abs(c1 - c2) < 300, `tied workers split evenly (${c1} vs ${c2})`);
  // pair 3 vs 0: worker 3 wins (1/6 of pairs); pairs with 1 or 2 go to them
  t.ok((counts.get(ws[3]!.slot) ?? 0) > 300 && (counts.get(ws[3]!.slot) ?? 0) < 700);
  // reported tokens win over in-flight when both reported
  const t2 = WorkerTable.create(4);
  const w2 = addWorkers(t2, 2);
  load(t2, w2[0]!, 1);
  load(t2, w2[1]!, 5);
  t2.setReported(w2[0]!.slot, { queue: 0, running: 1, tokens: 9000 }, reportClockSec());
  t2.setReported(w2[1]!.slot, { queue: 0, running: 5, tokens: 100 }, reportClockSec());
  const q = createPowerOfTwoPolicy();
  const d = q.select(REQ, ctxFor(t2, w2, 1)) as Decision;
  t.equal(d.slot, w2[1]!.slot, 'fewer reported tokens wins');
  t.equal(d.scores?.['by_tokens'], 1);
  t.match(d.reason, /^power_of_two: .* \(reported tokens \d+\) vs .* \(reported tokens \d+\) -> /);
  // one worker: that one
  const one = q.select(REQ, ctxFor(t2, w2.slice(0, 1))) as Decision;
  t.equal(one.slot, w2[0]!.slot);
  t.match(one.reason, /only available worker/);
  // equal loads: the first drawn (deterministic under the seed)
  const t3 = WorkerTable.create(4);
  const w3 = addWorkers(t3, 2);
  const r = createPowerOfTwoPolicy().select(REQ, ctxFor(t3, w3, 5)) as Decision;
  t.equal(r.scores?.['load_first'], r.scores?.['load_second']);
  t.match(r.reason, new RegExp(`^power_of_two: ${r.url.replace(/[.]/g, '\\.')} \\(in-flight 0\\) vs `), 'the tie went to the first drawn');
});
