/**
 * The shared-memory parts of --frontend-threads without threads: the admission limiter across front ends,
 * the in-flight ledger and its reconciliation, counter totals, the registry mirror, breaker outcomes
 * reported by a thread, and the bench's thread-count variable.
 */
import t from 'tap';
import { fileURLToPath } from 'node:url';
import { WorkerTable, Field, BreakerState } from '../../src/actors/worker-table.js';
import { WorkerRegistry } from '../../src/workers/registry.js';
import { CircuitBreakers, Permit } from '../../src/workers/breaker.js';
import { SwitchyardError } from '../../src/errors.js';
import { counterTotals, createSharedFrontendBuffers, LedgeredTable, reconcileLedger, SharedCounters, abandonActive } from '../../src/frontend/threads/shared.js';
import { createSharedLimitsState, reconcileLimits, SharedAdmissionLimits } from '../../src/frontend/threads/shared-limits.js';
import { ReportApplier, ThreadReporter } from '../../src/frontend/threads/report.js';
import { ReportReader, ReportWriter, type ReportVisitor } from '../../src/frontend/threads/report-codec.js';
import type { CompletionRecord } from '../../src/proxy/completion.js';
import { ThreadBreakerGate } from '../../src/frontend/threads/adapters.js';
import type { ThreadReport, ToMain } from '../../src/frontend/threads/protocol.js';
import { chooseRouter } from '../../bench/lib/router-target.js';
import { parseRouterOptions } from '../../src/config/router-options.js';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AdmissionLimitOptions, Waiter } from '../../src/frontend/admission.js';
import type { WorkerMonitor } from '../../src/workers/monitor.js';
import type { PolicyHost } from '../../src/policies/host.js';

const tick = (ms = 0): Promise<void> => new Promise((r) => setTimeout(r, ms));

function limiters(options: Partial<AdmissionLimitOptions>, n = 2): SharedAdmissionLimits[] {
  const o: AdmissionLimitOptions = { maxConcurrent: 2, queueSize: 10, queueTimeoutMs: 5000, ...options };
  const state = createSharedLimitsState(n, o);
  return Array.from({ length: n }, (_, i) => new SharedAdmissionLimits(state, i, o));
}

t.test('admission limits hold across front ends; a release in one wakes a waiter in another', async (t) => {
  const [a, b] = limiters({ maxConcurrent: 2 });
  t.equal(a!.acquire(() => t.fail('admitted at once')), null);
  t.equal(b!.acquire(() => t.fail('admitted at once')), null);
  t.equal(a!.active, 2);
  const order: string[] = [];
  let sync = true;
  const w1 = b!.acquire((err) => order.push(`b1:${err === null ? 'in' : err.code}`));
  const w2 = a!.acquire((err) => order.push(`a1:${err === null ? 'in' : err.code}`));
  sync = false;
  t.ok(!(w1 instanceof SwitchyardError) && w1 !== null, 'queued');
  t.ok(!(w2 instanceof SwitchyardError) && w2 !== null, 'queued');
  t.equal(a!.queued, 2, 'the queue count is global');
  t.same(order, [], 'never admitted inside acquire');
  t.notOk(sync);
  // A release in front end 0: its own waiter first (FIFO within the thread).
  a!.release();
  t.same(order, ['a1:in']);
  // A release in front end 0 with a waiter only in front end 1: woken through the shared word.
  a!.release();
  await tick(20);
  t.same(order, ['a1:in', 'b1:in']);
  t.equal(a!.active, 2);
  t.equal(b!.queued, 0);
  t.same(b!.stats, { admitted: 4, queued: 2, queueFull: 0, queueTimeouts: 0, rateLimited: 0, cancelled: 0 }, 'stats are global');
});

t.test('queue size, timeouts, cancel and drain across front ends', async (t) => {
  const [a, b] = limiters({ maxConcurrent: 1, queueSize: 1, queueTimeoutMs: 50 });
  t.equal(a!.acquire(() => undefined), null);
  const got: string[] = [];
  const w = b!.acquire((err) => got.push(err === null ? 'in' : err.code));
  t.ok(w !== null && !(w instanceof SwitchyardError));
  const full = a!.acquire(() => t.fail('refused at once'));
  t.ok(full instanceof SwitchyardError && full.code === 'queue_full', 'the queue is full for every front end');
  await tick(120);
  t.same(got, ['queue_timeout']);
  t.equal(a!.queued, 0);
  const w2 = b!.acquire(() => t.fail('cancelled'));
  b!.cancel(w2 as Waiter);
  t.equal(b!.queued, 0);
  const drained: string[] = [];
  b!.acquire((err) => drained.push(err?.code ?? 'in'));
  b!.drain(new SwitchyardError('shutting_down', 'bye'));
  t.same(drained, ['shutting_down']);
  a!.release();
  t.equal(a!.active, 0);
  t.same(a!.stats, { admitted: 1, queued: 3, queueFull: 1, queueTimeouts: 1, rateLimited: 0, cancelled: 1 });
});

t.test('a dead front end: reconcile gives back its slots and waiters, and wakes the others', async (t) => {
  const o: AdmissionLimitOptions = { maxConcurrent: 2, queueSize: 10, queueTimeoutMs: 200 };
  const state = createSharedLimitsState(3, o);
  const main = new SharedAdmissionLimits(state, 0, o);
  const dead = new SharedAdmissionLimits(state, 1, o);
  t.equal(dead.acquire(() => undefined), null);
  t.equal(dead.acquire(() => undefined), null);
  let admitted = false;
  main.acquire(() => (admitted = true));
  t.equal(main.queued, 1);
  t.equal(reconcileLimits(state, 1), 2, 'two slots given back');
  await tick(20);
  t.ok(admitted, 'the main thread\'s waiter got a slot');
  t.equal(main.active, 1);
  // A waiter of a dying front end is forgotten. (This "dead" one lives on in this process; once the
  // assertions are done its timer still runs out, which a really dead thread's would not.)
  t.equal(main.acquire(() => undefined), null);
  const dying = new SharedAdmissionLimits(state, 2, o);
  dying.acquire(() => undefined);
  t.equal(main.queued, 1);
  t.equal(reconcileLimits(state, 2), 0, 'it held no slot');
  t.equal(main.queued, 0, 'its waiter no longer counts against the queue');
});

t.test('one token bucket across front ends', async (t) => {
  let now = 1000;
  const o: AdmissionLimitOptions = { maxConcurrent: -1, queueSize: 0, queueTimeoutMs: 0, ratePerSecond: 4, now: () => now };
  const state = createSharedLimitsState(2, o);
  const a = new SharedAdmissionLimits(state, 0, o);
  const b = new SharedAdmissionLimits(state, 1, o);
  const results = [a, b, a, b, a, b].map((l) => l.acquire(() => undefined));
  t.same(results.map((r) => (r instanceof SwitchyardError ? r.code : 'ok')), ['ok', 'ok', 'ok', 'ok', 'rate_limited', 'rate_limited']);
  now += 500; // two tokens refill
  t.equal(b.acquire(() => undefined), null);
  t.equal(a.acquire(() => undefined), null);
  t.ok(b.acquire(() => undefined) instanceof SwitchyardError);
  t.equal(a.stats.rateLimited, 3);
});

t.test('waiters held back by the rate, in any front end, get in as tokens refill', async (t) => {
  const [a, b] = limiters({ maxConcurrent: -1, queueSize: 10, queueTimeoutMs: 3000, ratePerSecond: 10, rateBurst: 1 });
  t.equal(a!.acquire(() => undefined), null, 'the one token');
  const order: string[] = [];
  const started = Date.now();
  b!.acquire((err) => order.push(`b:${err?.code ?? 'in'}`));
  a!.acquire((err) => order.push(`a:${err?.code ?? 'in'}`));
  t.equal(a!.queued, 2);
  await waitUntil(() => order.length === 2, 2000);
  t.same(order.sort(), ['a:in', 'b:in'], 'both admitted, no refusal');
  t.ok(Date.now() - started >= 150, 'at the rate (two tokens at 10/s)');
  t.same(a!.stats, { admitted: 3, queued: 2, queueFull: 0, queueTimeouts: 0, rateLimited: 0, cancelled: 0 });
});

async function waitUntil(cond: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond() && Date.now() < deadline) await tick(5);
}

t.test('the ledger: a dead front end\'s in-flight counts are taken back, and only for the worker it counted', async (t) => {
  const table = WorkerTable.create(8);
  const buffers = createSharedFrontendBuffers(2, 8);
  const ref = table.allocate({ healthy: true });
  const other = table.allocate({ healthy: true });
  const mainView = new LedgeredTable(table, buffers, 0);
  const thread = new LedgeredTable(table, buffers, 1);
  t.ok(mainView.acquire(ref, 10));
  for (let i = 0; i < 3; i++) t.ok(thread.acquire(ref, 5));
  t.ok(thread.acquire(other, 7));
  thread.releaseLoad(other, 7, true);
  t.equal(table.inFlight(ref.slot), 4);
  t.equal(table.inFlightTokens(ref.slot), 25);
  t.equal(reconcileLedger(table, buffers, 1), 3, 'three requests given back');
  t.equal(table.inFlight(ref.slot), 1, 'the main thread\'s request stays');
  t.equal(table.inFlightTokens(ref.slot), 10);
  t.equal(table.inFlight(other.slot), 0);
  t.equal(table.get(other.slot, Field.Processed), 1);
  t.equal(reconcileLedger(table, buffers, 1), 0, 'the ledger is clear');
  // A slot reused by another worker: the old generation's counts are not taken from the new worker.
  t.ok(thread.acquire(other, 3));
  table.release(other.slot);
  const reused = table.allocate({ healthy: true });
  t.equal(reused.slot, other.slot);
  t.ok(mainView.acquire(reused, 1));
  t.equal(reconcileLedger(table, buffers, 1), 0);
  t.equal(table.inFlight(reused.slot), 1);
  t.notOk(thread.acquire({ slot: ref.slot, generation: ref.generation + 5 }, 1), 'a stale generation is refused and not counted');
});

t.test('counter totals: live sums of every block, read-only, spreadable', async (t) => {
  const buffers = createSharedFrontendBuffers(3, 4);
  const c = [0, 1, 2].map((i) => new SharedCounters(buffers, i));
  c[0]!.requests += 2;
  c[1]!.requests++;
  c[2]!.active += 3;
  c[2]!.forwarded++;
  const totals = counterTotals(buffers);
  t.same({ ...totals }, { requests: 3, completed: 0, failed: 0, aborted: 0, retries: 0, active: 3 });
  c[1]!.completed++;
  t.equal(totals.completed, 1, 'read live');
  t.throws(() => {
    (totals as { requests: number }).requests = 0;
  }, 'read-only');
  t.equal(abandonActive(buffers, 2), 3);
  t.same({ ...totals }, { requests: 3, completed: 1, failed: 0, aborted: 3, retries: 0, active: 0 });
});

t.test('registry mirror: sync keeps unchanged pools, replaces changed slots, drains removed ones', async (t) => {
  const table = WorkerTable.create(8);
  const owner = new WorkerRegistry(table, { requestTimeoutMs: 1000, initiallyHealthy: true });
  const mirror = WorkerRegistry.mirror(table, { requestTimeoutMs: 1000 });
  t.teardown(async () => {
    await owner.close();
    await mirror.close();
  });
  owner.addMany(['http://127.0.0.1:9001', 'http://127.0.0.1:9002']);
  const changes: number[] = [];
  mirror.onChange((ws) => changes.push(ws.length));
  mirror.sync(owner.snapshot((url) => (url.endsWith('9002') ? 'multi' : undefined)));
  t.same(mirror.list().map((w) => [w.url, w.slot, w.generation, w.group]), owner.list().map((w) => [w.url, w.slot, w.generation, w.url.endsWith('9002') ? 'multi' : undefined]));
  const pool1 = mirror.get('http://127.0.0.1:9001')!.pool;
  t.not(pool1, owner.get('http://127.0.0.1:9001')!.pool, 'the mirror has its own pools');
  owner.remove('http://127.0.0.1:9002');
  owner.add('http://127.0.0.1:9003');
  mirror.sync(owner.snapshot());
  t.equal(mirror.get('http://127.0.0.1:9001')!.pool, pool1, 'unchanged entry keeps its pool');
  t.equal(mirror.get('http://127.0.0.1:9002'), undefined);
  t.equal(mirror.bySlot(owner.get('http://127.0.0.1:9003')!.slot)?.url, 'http://127.0.0.1:9003');
  t.same(changes, [2, 2]);
  t.throws(() => mirror.add('http://127.0.0.1:9004'), /mirror/);
  t.throws(() => mirror.remove('http://127.0.0.1:9001'), /mirror/);
  t.throws(() => owner.sync([]), /mirrors/);
  t.equal(table.activeSlots().length, 2, 'the mirror never allocated or released a slot');
});

t.test('breaker outcomes reported by a thread drive the hub\'s breaker; a thread limits its own probes', async (t) => {
  const table = WorkerTable.create(4);
  const ref = table.allocate({ healthy: true });
  const breakers = new CircuitBreakers(table, { failureThreshold: 2, successThreshold: 2, openMs: 10 });
  t.teardown(() => breakers.close());
  const posted: ToMain[] = [];
  const reporter = new ThreadReporter((m) => posted.push(m), 0, 0);
  const gate = new ThreadBreakerGate(table, { failureThreshold: 2, successThreshold: 2, openMs: 10 }, reporter);
  const registry = new WorkerRegistry(table, { requestTimeoutMs: 1000 });
  const applier = new ReportApplier({ registry, monitor: {} as WorkerMonitor, policy: {} as PolicyHost, sinks: [], breakers, onSinkError: () => undefined });
  const deliver = (): void => {
    reporter.flush();
    for (const m of posted.splice(0)) if (m.t === 'report') applier.apply(m);
  };
  for (let i = 0; i < 2; i++) gate.record(ref, gate.tryAcquire(ref), false);
  deliver();
  t.equal(table.get(ref.slot, Field.Breaker), BreakerState.Open, 'two failures in a thread open it');
  t.equal(gate.tryAcquire(ref), Permit.Refused);
  await tick(30);
  t.equal(table.get(ref.slot, Field.Breaker), BreakerState.HalfOpen);
  const p1 = gate.tryAcquire(ref);
  const p2 = gate.tryAcquire(ref);
  t.same([p1, p2, gate.tryAcquire(ref)], [Permit.Probe, Permit.Probe, Permit.Refused], 'at most successThreshold probes at once in a thread');
  t.equal(breakers.tryAcquire(ref), Permit.Probe, 'the hub keeps its own probes');
  breakers.record(ref, Permit.Probe, undefined);
  gate.record(ref, p1, true);
  gate.record(ref, p2, true);
  deliver();
  t.equal(table.get(ref.slot, Field.Breaker), BreakerState.Closed, 'two probe successes in a thread close it');
  t.same(breakers.transitions, { opened: 1, halfOpened: 1, closed: 1 });
});

function record(over: Partial<CompletionRecord> = {}): CompletionRecord {
  return {
    requestId: 'r1', route: 'generate', stream: false, workerUrl: 'http://w', slot: 0, nodeId: 0, policy: 'p', reason: 'why', scores: undefined, status: 'completed', httpStatus: 200,
    errorCode: undefined, errorMessage: undefined, timestamp: 1, arrivedAt: 5, decidedAt: 6, sentAt: 0, firstTokenAt: 0, finishedAt: 9, inputTokens: 1, outputTokens: 1, cachedTokens: 0, queueTime: undefined, itl: undefined, attempts: 1,
    ...over,
  };
}

t.test('a thread report crosses with its stamps on the main thread\'s clock and reaches every sink', async (t) => {
  const posted: ToMain[] = [];
  const reporter = new ThreadReporter((m) => posted.push(m), 100, 0);
  reporter.accepted('generate', '/generate');
  reporter.record(record());
  t.same(posted, [], 'batched');
  await tick(5);
  t.equal(posted.length, 1, 'one crossing for the batch');
  const got: string[] = [];
  const recs: CompletionRecord[] = [];
  const table = WorkerTable.create(2);
  new ReportApplier({
    registry: new WorkerRegistry(table, { requestTimeoutMs: 1 }),
    monitor: {} as WorkerMonitor,
    policy: {} as PolicyHost,
    sinks: [{ record: (r) => (got.push(`a:${r.requestId}`), recs.push(r)) }, { record: () => { throw new Error('bad sink'); } }, { record: (r) => got.push(`c:${r.requestId}`) }],
    events: { accepted: (r, path) => got.push(`accepted:${r}:${path}`), rejected: () => undefined, decided: () => undefined },
    onSinkError: (err) => got.push(`error:${(err as Error).message}`),
  }).apply(posted[0] as ThreadReport);
  t.same(got, ['accepted:generate:/generate', 'a:r1', 'error:bad sink', 'c:r1'], 'in order; a failing sink does not stop the others');
  const r = recs[0]!;
  t.same([r.arrivedAt, r.decidedAt, r.sentAt, r.firstTokenAt, r.finishedAt], [105, 106, 0, 0, 109], 'shifted; unset stamps stay 0');
});

t.test('report codec: every event kind round-trips, in order, with undefined fields kept undefined', async (t) => {
  const w = new ReportWriter();
  const full = record({ path: '/v1/embeddings', stream: true, status: 'failed', httpStatus: 502, errorCode: 'upstream_error', errorMessage: 'boom', queueTime: 0.25, itl: [1.5, 2, 3.25], scores: { cache_hit: 1, match: 0.82 }, attempts: 3 });
  const bare = record({ requestId: 'r2', status: 'aborted', workerUrl: '', slot: -1, nodeId: -1 });
  const view = {
    requestId: 'v1', route: 'chat' as const, traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', timestamp: 10, arrivedAt: 11, decidedAt: 12, attempts: 2,
    features: { requestId: 'v1', route: 'chat' as const, text: '', inputTokens: 40, maxNewTokens: 8, stream: true, model: 'm', group: 'multi', admission: 'admission: large' },
    decision: { slot: 1, generation: 3, url: 'http://w', reason: 'cache_hit', scores: { cache_hit: 1 } },
    worker: { slot: 1, generation: 3, url: 'http://w', nodeId: 4 },
  };
  const undecided = { ...view, requestId: 'v2', decision: undefined, worker: undefined, traceparent: '', features: { ...view.features, requestId: 'v2', model: undefined, group: undefined, admission: undefined } };
  const feedback = { requestId: 'f1', url: 'http://w', slot: 1, success: true, sentAt: 1, firstTokenAt: 2, finishedAt: 3, inputTokens: 4, outputTokens: 5, cachedTokens: 6, queueTime: undefined };
  w.accepted('other', '/v1/embeddings');
  w.rejected('generate', 'invalid_json', undefined);
  w.decided(view);
  w.firstByte(view, 13.5);
  w.record(full);
  w.decided(undecided);
  w.record(bare);
  w.feedback(feedback);
  w.failure(1, 3, 'ECONNREFUSED');
  w.breaker(1, 3, 2, undefined);
  w.breaker(1, 3, 1, false);
  w.admission('multi', 'large_input');
  const events: unknown[] = [];
  const visitor: ReportVisitor = {
    accepted: (...a) => events.push(['accepted', ...a]),
    rejected: (...a) => events.push(['rejected', ...a]),
    decided: (v) => events.push(['decided', v]),
    firstByte: (v, at) => events.push(['firstByte', v, at]),
    record: (r) => events.push(['record', r]),
    feedback: (f) => events.push(['feedback', f]),
    failure: (...a) => events.push(['failure', ...a]),
    breaker: (...a) => events.push(['breaker', ...a]),
    admission: (...a) => events.push(['admission', ...a]),
  };
  const reader = new ReportReader();
  const first = w.take();
  t.ok(w.empty);
  reader.read(first, visitor);
  t.same(events, [
    ['accepted', 'other', '/v1/embeddings'],
    ['rejected', 'generate', 'invalid_json', undefined],
    ['decided', view],
    ['firstByte', view, 13.5],
    ['record', full],
    ['decided', undecided],
    ['record', bare],
    ['feedback', feedback],
    ['failure', 1, 3, 'ECONNREFUSED'],
    ['breaker', 1, 3, 2, undefined],
    ['breaker', 1, 3, 1, false],
    ['admission', 'multi', 'large_input'],
  ]);
  const decoded = events[4] as [string, CompletionRecord];
  t.notOk('path' in (events[6] as [string, CompletionRecord])[1], 'no path when none was given');
  t.equal(decoded[1].path, '/v1/embeddings');
  // A batch larger than the writer's first buffer (1024 numbers) grows it without losing an event.
  const many = new ReportWriter();
  for (let i = 0; i < 300; i++) {
    many.decided(view);
    many.record(record({ requestId: `m${i}`, itl: [1, 2, 3] }));
  }
  const ids: string[] = [];
  new ReportReader().read(many.take(), { ...visitor, decided: () => undefined, record: (r) => ids.push(r.requestId) });
  t.equal(ids.length, 300);
  t.equal(ids[299], 'm299');
  // The dictionary carries over: a second batch sends no definition already sent.
  events.length = 0;
  w.accepted('other', '/v1/embeddings');
  const second = w.take();
  t.same(second.defs, []);
  reader.read(second, visitor);
  t.same(events, [['accepted', 'other', '/v1/embeddings']]);
});

t.test('bench: SWITCHYARD_BENCH_FRONTEND_THREADS adds --frontend-threads', async (t) => {
  const base = { root: fileURLToPath(new URL('../../../', import.meta.url)), host: '127.0.0.1', port: 1234, backendUrl: 'http://127.0.0.1:9', nodePath: '/usr/bin/node' };
  const two = chooseRouter({ ...base, env: { SWITCHYARD_BENCH_FRONTEND_THREADS: '2' } });
  t.ok(two.ok);
  if (two.ok) t.match(two.router.display, /--frontend-threads 2$/);
  const none = chooseRouter({ ...base, env: {} });
  t.ok(none.ok);
  if (none.ok) t.notMatch(none.router.display, /frontend-threads/);
  const bad = chooseRouter({ ...base, env: { SWITCHYARD_BENCH_FRONTEND_THREADS: 'two' } });
  t.notOk(bad.ok);
  if (!bad.ok) t.match(bad.reason, /SWITCHYARD_BENCH_FRONTEND_THREADS/);
});

t.test('--frontend-threads: flag, SWITCHYARD_FRONTEND_THREADS, config file key; default 1; bounds', async (t) => {
  t.equal(parseRouterOptions([], {}).frontendThreads, 1);
  t.equal(parseRouterOptions(['--frontend-threads', '3'], {}).frontendThreads, 3);
  t.equal(parseRouterOptions([], { SWITCHYARD_FRONTEND_THREADS: '2' }).frontendThreads, 2);
  const dir = mkdtempSync(join(tmpdir(), 'sy-ft-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'router.json');
  writeFileSync(file, JSON.stringify({ 'frontend-threads': 4 }));
  t.equal(parseRouterOptions(['--config', file], {}).frontendThreads, 4);
  t.equal(parseRouterOptions(['--config', file, '--frontend-threads', '2'], {}).frontendThreads, 2, 'the flag wins');
  t.throws(() => parseRouterOptions(['--frontend-threads', '0'], {}));
  t.throws(() => parseRouterOptions(['--frontend-threads', '65'], {}));
});

