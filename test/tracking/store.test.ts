import t from 'tap';
import { TraceStore } from '../../src/tracking/store.js';
import { EventReader, EventWriter, MAX_CODES, type DecidedEvent, type EventBatch, type FinishedEvent } from '../../src/tracking/events.js';
import type { RequestProgressView } from '../../src/frontend/context.js';
import type { CompletionRecord } from '../../src/proxy/completion.js';
import type { WorkerEntry } from '../../src/workers/registry.js';

function clock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t0 = start;
  return { now: () => t0, advance: (ms) => void (t0 += ms) };
}

function decided(id: string, over: Partial<DecidedEvent> = {}): DecidedEvent {
  return { requestId: id, timestampMs: 1000, queueMs: 0.5, nodeId: 0, workerUrl: 'http://w0:1', policy: 'random', reason: 'r', scores: null, route: 'generate', stream: false, inputTokens: 10, attempts: 1, ...over };
}

function finished(id: string, over: Partial<FinishedEvent> = {}): FinishedEvent {
  return {
    outcomeOnly: false,
    requestId: id,
    status: 'completed',
    timestampMs: 1000,
    queueMs: 0.5,
    ttftMs: 3,
    e2eMs: 9,
    nodeId: 0,
    workerUrl: 'http://w0:1',
    policy: 'random',
    reason: 'r',
    scores: { a: 1 },
    route: 'generate',
    stream: false,
    httpStatus: 200,
    errorCode: null,
    errorMessage: null,
    inputTokens: 10,
    outputTokens: 5,
    cachedTokens: 2,
    serverQueueMs: 1.5,
    attempts: 1,
    ...over,
  };
}

t.test('lifecycle: pending -> streaming -> completed, with counts', async (t) => {
  const c = clock();
  const s = new TraceStore({ maxEntries: 10, ttlMs: 60_000, now: c.now });
  const finals: string[] = [];
  s.onFinal = (tr) => finals.push(`${tr.request_id}:${tr.status}`);
  s.decided(decided('a', { stream: true, nodeId: 2, workerUrl: 'http://w2:1' }));
  t.equal(s.get('a')?.status, 'pending');
  t.equal(s.get('a')?.node_id, 2);
  t.equal(s.get('a')?.e2e_ms, null, 'no end yet');
  t.equal(s.statusCount('pending'), 1);
  s.firstByte('a', 4.25);
  t.equal(s.get('a')?.status, 'streaming');
  t.equal(s.get('a')?.ttft_ms, 4.25);
  s.firstByte('a', 99);
  t.equal(s.get('a')?.ttft_ms, 4.25, 'only the first byte counts');
  s.finished(finished('a', { stream: true, nodeId: 2, workerUrl: 'http://w2:1', ttftMs: 5 }));
  const tr = s.get('a')!;
  t.equal(tr.status, 'completed');
  t.equal(tr.ttft_ms, 5, 'the completion record has the exact first content chunk');
  t.equal(tr.output_tokens, 5);
  t.equal(tr.cached_tokens, 2);
  t.equal(tr.server_queue_ms, 1.5);
  t.same(tr.scores, { a: 1 });
  t.same(finals, ['a:completed']);
  t.same(s.perStatus(), { pending: 0, streaming: 0, completed: 1, failed: 0, aborted: 0 });
  t.same(s.perNode(), { 2: 1 });
  s.firstByte('a', 1);
  t.equal(s.get('a')?.status, 'completed', 'a late first byte does not reopen a finished trace');
  s.firstByte('unknown', 1);
  t.equal(s.size, 1, 'first byte of an unknown id creates nothing');
});

t.test('a retry moves the trace to the new worker; counts follow', async (t) => {
  const s = new TraceStore({ maxEntries: 10, ttlMs: 60_000 });
  s.decided(decided('a', { nodeId: 0, workerUrl: 'http://w0:1' }));
  s.decided(decided('a', { nodeId: 1, workerUrl: 'http://w1:1', attempts: 2, reason: 'retry' }));
  const tr = s.get('a')!;
  t.equal(tr.node_id, 1);
  t.equal(tr.worker_url, 'http://w1:1');
  t.equal(tr.attempts, 2);
  t.equal(tr.reason, 'retry');
  t.same(s.perNode(), { 1: 1 });
  t.equal(s.counters.recorded, 1, 'still one request');
});

t.test('requests that were never routed; failed and aborted; an id reused by a new request', async (t) => {
  const s = new TraceStore({ maxEntries: 10, ttlMs: 60_000 });
  s.finished(finished('x', { status: 'failed', nodeId: null, workerUrl: null, httpStatus: 503, errorCode: 'no_healthy_workers', errorMessage: 'none', ttftMs: null }));
  t.equal(s.get('x')?.status, 'failed');
  t.equal(s.get('x')?.node_id, null);
  t.equal(s.get('x')?.error_code, 'no_healthy_workers');
  t.same(s.perNode(), { none: 1 });
  s.decided(decided('y'));
  s.finished(finished('y', { status: 'aborted', httpStatus: null }));
  t.equal(s.get('y')?.status, 'aborted');
  t.same(s.perStatus(), { pending: 0, streaming: 0, completed: 0, failed: 1, aborted: 1 });
  // A finished id reused: the new request replaces the old trace.
  s.decided(decided('y', { nodeId: 3 }));
  t.equal(s.get('y')?.status, 'pending');
  t.equal(s.get('y')?.node_id, 3);
  t.equal(s.get('y')?.output_tokens, null, 'nothing of the old request is left');
  t.same(s.perStatus(), { pending: 1, streaming: 0, completed: 0, failed: 1, aborted: 0 });
  t.equal(s.counters.recorded, 3);
  s.finished(finished('x', { status: 'bogus' as never }));
  t.equal(s.get('x')?.status, 'failed', 'an unknown status is stored as failed');
});

t.test('LRU: over max entries the least recently updated trace goes first', async (t) => {
  const c = clock();
  const s = new TraceStore({ maxEntries: 3, ttlMs: 60_000, now: c.now });
  for (const id of ['a', 'b', 'c']) {
    s.decided(decided(id));
    c.advance(1);
  }
  s.finished(finished('a')); // a is now the most recently updated
  s.decided(decided('d'));
  t.equal(s.size, 3);
  t.notOk(s.get('b'), 'b, least recently updated, was evicted');
  t.ok(s.get('a'));
  t.ok(s.get('c'));
  t.ok(s.get('d'));
  t.equal(s.counters.evictedLru, 1);
  t.same(s.perStatus(), { pending: 2, streaming: 0, completed: 1, failed: 0, aborted: 0 }, 'counts follow evictions');
  t.ok(s.get('c'), 'reads do not count as use');
  s.decided(decided('e'));
  t.notOk(s.get('c'), 'c evicted next even though it was just read');
});

t.test('growing from a small start keeps every trace whole: ids, reasons, scores, links, counts', async (t) => {
  // The default makes room for 128k traces at once; a small start exercises the doubling path
  // (columns copied, id table rehashed) that stores past that size take.
  const c = clock();
  const s = new TraceStore({ maxEntries: 1500, ttlMs: 60_000, now: c.now, initialSlots: 3 });
  const id = (i: number): string => `grow-${i}-${'x'.repeat(i % 60)}`; // some ids longer than the inline 48 bytes
  for (let i = 0; i < 2000; i++) {
    s.decided(decided(id(i), { timestampMs: 1000 + i, nodeId: i % 4, reason: `reason ${i}`, scores: { load: i, pick: i % 4 } }));
    if (i % 3 === 0) s.finished(finished(id(i), { nodeId: i % 4, reason: `reason ${i}`, scores: { load: i, pick: i % 4 }, outputTokens: i }));
    c.advance(1);
  }
  t.equal(s.size, 1500, 'bounded by maxEntries once grown to it');
  t.equal(s.counters.evictedLru, 500);
  let held = 0;
  let completed = 0;
  for (let i = 0; i < 2000; i++) {
    const tr = s.get(id(i));
    if (tr === undefined) continue;
    held++;
    if (tr.status === 'completed') completed++;
    if (tr.request_id !== id(i) || tr.reason !== `reason ${i}` || tr.scores?.['load'] !== i || tr.node_id !== i % 4) {
      t.fail(`trace ${i} damaged: ${JSON.stringify(tr)}`);
      break;
    }
    if (i % 3 === 0 && tr.output_tokens !== i) t.fail(`trace ${i} lost its outcome`);
  }
  t.equal(held, 1500, 'every held trace found by its id');
  t.same(s.perStatus(), { pending: 1500 - completed, streaming: 0, completed, failed: 0, aborted: 0 });
  t.same(s.perNode(), { '0': 375, '1': 375, '2': 375, '3': 375 });
  t.same(s.list({ limit: 2 }).map((x) => x.request_id), [id(1999), id(1998)], 'newest first by arrival');
  s.decided(decided('one-more'));
  t.notOk(s.get(id(500)), 'the least recently updated goes next: the recency links survived the growth');
  t.ok(s.get(id(501)));
});

t.test('TTL: traces expire a ttl after their last update', async (t) => {
  const c = clock();
  const s = new TraceStore({ maxEntries: 100, ttlMs: 1000, now: c.now });
  s.decided(decided('old'));
  c.advance(600);
  s.decided(decided('young'));
  c.advance(300);
  s.firstByte('old', 1); // an update: old is now the most recent (+900)
  t.equal(s.expire(), 0, 'nothing older than 1 s yet');
  c.advance(200); // +1100: old was created 1100 ms ago but updated 200 ms ago
  t.equal(s.expire(), 0, 'the TTL runs from the last update');
  c.advance(550); // +1650: young (updated +600) is 1050 old, old (+900) 750
  t.equal(s.expire(), 1);
  t.notOk(s.get('young'));
  t.ok(s.get('old'));
  c.advance(250); // +1900: old is exactly 1000 old: kept (expiry is strictly older than ttl)
  t.equal(s.expire(), 0);
  c.advance(1);
  t.equal(s.expire(), 1);
  t.equal(s.size, 0);
  t.equal(s.counters.expiredTtl, 2);
  t.same(s.perNode(), {});
  t.same(s.perStatus(), { pending: 0, streaming: 0, completed: 0, failed: 0, aborted: 0 });
});

t.test('list: newest first by arrival, filtered by node and status, limited', async (t) => {
  const s = new TraceStore({ maxEntries: 1000, ttlMs: 60_000 });
  for (let i = 0; i < 200; i++) {
    // arrival times shuffled relative to insertion order
    const ts = 10_000 + ((i * 7919) % 200);
    s.decided(decided(`r${i}`, { timestampMs: ts, nodeId: i % 3 }));
    if (i % 2 === 0) s.finished(finished(`r${i}`, { timestampMs: ts, nodeId: i % 3, status: i % 4 === 0 ? 'completed' : 'failed' }));
  }
  const all = s.list({ limit: 1000 });
  t.equal(all.length, 200);
  for (let i = 1; i < all.length; i++) t.ok(all[i - 1]!.timestamp_ms >= all[i]!.timestamp_ms, 'descending');
  const top = s.list({ limit: 5 });
  t.same(
    top.map((x) => x.request_id),
    all.slice(0, 5).map((x) => x.request_id),
    'limit keeps the newest',
  );
  const node1 = s.list({ limit: 1000, nodeId: 1 });
  t.ok(node1.length > 0 && node1.every((x) => x.node_id === 1));
  t.equal(node1.length, s.perNode()['1']);
  const failed = s.list({ limit: 1000, status: 'failed' });
  t.equal(failed.length, 50);
  t.ok(failed.every((x) => x.status === 'failed'));
  const both = s.list({ limit: 3, status: 'pending', nodeId: 2 });
  t.ok(both.length === 3 && both.every((x) => x.status === 'pending' && x.node_id === 2));
  t.same(s.list({ limit: 0 }), []);
  s.finished(finished('unrouted', { nodeId: null, workerUrl: null, status: 'failed', timestampMs: 5 }));
  t.same(
    s.list({ limit: 10, nodeId: null }).map((x) => x.request_id),
    ['unrouted'],
    'node_id none',
  );
});

t.test('load: reloaded traces keep order, skip expired ones and ids already held', async (t) => {
  const c = clock(100_000);
  const s = new TraceStore({ maxEntries: 2, ttlMs: 10_000, now: c.now });
  s.decided(decided('live'));
  const base = { ...s.get('live')!, status: 'completed' as const };
  t.equal(s.load({ ...base, request_id: 'live' }, 99_000), false, 'held id wins');
  t.equal(s.load({ ...base, request_id: 'expired' }, 80_000), false, 'older than ttl');
  t.equal(s.load({ ...base, request_id: 'pending', status: 'pending' }, 99_000), false, 'only final traces');
  t.equal(s.load({ ...base, request_id: 'l1' }, 95_000), true);
  t.equal(s.load({ ...base, request_id: 'l2' }, 96_000), true);
  t.equal(s.size, 2, 'cap applies');
  t.notOk(s.get('live'), 'the oldest entry went');
  t.equal(s.counters.loaded, 2);
});

t.test('an outcome whose decision was evicted still makes a trace (policy from the router, arrival estimated)', async (t) => {
  const c = clock(50_000);
  const s = new TraceStore({ maxEntries: 1, ttlMs: 60_000, now: c.now, defaultPolicy: 'cache_aware' });
  s.decided(decided('a'));
  s.decided(decided('b')); // evicts a's pending trace
  t.notOk(s.get('a'));
  s.finished(finished('a', { outcomeOnly: true, policy: '', reason: null, scores: null, timestampMs: Number.NaN, queueMs: null, e2eMs: 1500 }));
  const a = s.get('a')!;
  t.equal(a.status, 'completed');
  t.equal(a.routing_policy, 'cache_aware');
  t.equal(a.timestamp_ms, 48_500, 'now - e2e');
  t.equal(a.queue_ms, null);
  // an outcome for a held trace keeps what the decision said
  const s2 = new TraceStore({ maxEntries: 10, ttlMs: 60_000 });
  s2.decided(decided('x', { reason: 'kept', scores: { k: 1 }, queueMs: 0.75, timestampMs: 777 }));
  s2.finished(finished('x', { outcomeOnly: true, policy: '', reason: null, scores: null, timestampMs: Number.NaN, queueMs: null }));
  t.match(s2.get('x'), { reason: 'kept', scores: { k: 1 }, queue_ms: 0.75, timestamp_ms: 777, routing_policy: 'random', status: 'completed' });
});

t.test('rejects bad bounds', async (t) => {
  t.throws(() => new TraceStore({ maxEntries: 0, ttlMs: 1 }));
  t.throws(() => new TraceStore({ maxEntries: 1.5, ttlMs: 1 }));
  t.throws(() => new TraceStore({ maxEntries: 1, ttlMs: 0 }));
});

t.test('events: batches round-trip through the writer, the crossing and the reader', async (t) => {
  const worker = { url: 'http://w5:1', nodeId: 5, slot: 0 } as unknown as WorkerEntry;
  const view: RequestProgressView = {
    requestId: 'ev1',
    route: 'chat',
    features: { requestId: 'ev1', route: 'chat', text: 'x', inputTokens: 42, maxNewTokens: 8, stream: true, model: undefined },
    timestamp: 1234.5678,
    arrivedAt: 100,
    decidedAt: 100.25,
    attempts: 1,
    decision: { slot: 0, generation: 1, url: 'http://w5:1', reason: 'because', scores: { w5: 0.9 } },
    worker,
  };
  const rec: CompletionRecord = {
    requestId: 'ev1',
    route: 'chat',
    stream: true,
    workerUrl: 'http://w5:1',
    slot: 0,
    nodeId: 5,
    policy: 'random',
    reason: 'because',
    scores: { w5: 0.9 },
    status: 'completed',
    httpStatus: 200,
    errorCode: undefined,
    errorMessage: undefined,
    timestamp: 1234.5678,
    arrivedAt: 100,
    decidedAt: 100.25,
    sentAt: 100.5,
    firstTokenAt: 110,
    finishedAt: 150.0004,
    inputTokens: 40,
    outputTokens: 7,
    cachedTokens: 3,
    queueTime: 0.002,
    itl: [1, 2],
    attempts: 1,
  };
  const w = new EventWriter();
  t.equal(w.take(), null, 'nothing to take');
  w.decided(view, 'random');
  w.firstByte(view, 105.5);
  w.finished(rec);
  w.finished({ ...rec, requestId: 'ev2', slot: -1, workerUrl: '', nodeId: -1, status: 'failed', httpStatus: 503, errorCode: 'no_healthy_workers', errorMessage: 'none', decidedAt: 0, firstTokenAt: 0, queueTime: undefined, reason: '', scores: undefined });
  t.ok(w.numbers > 0);
  const batch = w.take()!;
  t.equal(w.numbers, 0);
  t.ok(batch.nums instanceof Float64Array);
  t.same(batch.strs, ['because', null, 'none', null], 'only per-request strings other than ids travel as strings');
  t.equal(Buffer.from(batch.ids).toString('latin1'), 'ev1ev1ev1ev2', 'ids travel as bytes, one per event');
  t.same(batch.defs, ['http://w5:1', 'random', 'chat', 'w5', 'completed', 'failed', 'no_healthy_workers']);
  const s = new TraceStore({ maxEntries: 10, ttlMs: 60_000 });
  const seen: string[] = [];
  s.onFinal = (x) => seen.push(x.status);
  const r = new EventReader();
  t.equal(r.apply(structuredClone(batch), s), 4);
  const a = s.get('ev1')!;
  t.match(a, { node_id: 5, worker_url: 'http://w5:1', status: 'completed', route: 'chat', stream: true, timestamp_ms: 1234.568, queue_ms: 0.25, ttft_ms: 10, e2e_ms: 50, server_queue_ms: 2, input_tokens: 40, output_tokens: 7, cached_tokens: 3, http_status: 200, attempts: 1, reason: 'because', routing_policy: 'random' });
  t.same(a.scores, { w5: 0.9 });
  const b = s.get('ev2')!;
  t.match(b, { node_id: null, worker_url: null, status: 'failed', queue_ms: null, ttft_ms: null, http_status: 503, error_code: 'no_healthy_workers', error_message: 'none', reason: null, scores: null, server_queue_ms: null });
  t.same(seen, ['completed', 'failed']);

  // The next batch sends only new dictionary entries; a reader that missed earlier batches (a restarted
  // actor) is initialised with the writer's whole dictionary.
  w.decided({ ...view, requestId: 'ev3' }, 'random');
  const next = w.take()!;
  t.same(next.defs, [], 'nothing new to define');
  t.equal(r.apply(structuredClone(next), s), 1);
  t.throws(() => new EventReader().apply(structuredClone(next), s), /unknown dictionary code/, 'a reader without the dictionary cannot decode');
  t.equal(new EventReader(w.dictionary).apply(structuredClone(next), new TraceStore({ maxEntries: 10, ttlMs: 60_000 })), 1);

  // Beyond MAX_CODES distinct strings, new ones travel raw.
  const many: Record<string, number> = {};
  for (let i = 0; i < MAX_CODES + 10; i++) many[`k${i}`] = i;
  w.decided({ ...view, requestId: 'ev4', decision: { ...view.decision!, scores: many } }, 'random');
  const big = w.take()!;
  t.equal(w.dictionary.length, MAX_CODES);
  t.ok(big.strs.includes(`k${MAX_CODES + 5}`), 'raw strings past the cap');
  r.apply(structuredClone(big), s);
  t.equal(Object.keys(s.get('ev4')!.scores!).length, MAX_CODES + 10);

  // An id that is not ASCII (never from HTTP: ids are validated) travels as a string and is found as one.
  w.decided({ ...view, requestId: 'é-1' }, 'random');
  w.firstByte({ ...view, requestId: 'é-1' }, view.arrivedAt + 3);
  const odd = w.take()!;
  t.same(odd.strs, ['é-1', 'because', 'é-1']);
  t.equal(odd.ids.length, 0);
  r.apply(structuredClone(odd), s);
  t.match(s.get('é-1'), { request_id: 'é-1', status: 'streaming', ttft_ms: 3 });

  const bad = (nums: number[], strs: (string | null)[] = [], ids = ''): EventBatch => ({ nums: Float64Array.from(nums), ids: Buffer.from(ids, 'latin1'), strs, defsFrom: 0, defs: [] });
  t.throws(() => new EventReader().apply(bad([9]), s), /unknown event kind/);
  t.throws(() => new EventReader().apply(bad([2], ['x']), s), /truncated/);
  t.throws(() => new EventReader().apply(bad([2, -1]), s), /missing string/);
  t.throws(() => new EventReader().apply(bad([2, -1], [null]), s), /missing request id/);
  t.throws(() => new EventReader().apply(bad([2, -1, 1], ['x', 'y']), s), /strings left over/);
  t.throws(() => new EventReader().apply(bad([2, 5, 1], [], 'ab'), s), /truncated request id/);
  t.throws(() => new EventReader().apply(bad([2, 1, 1], [], 'ab'), s), /id bytes left over/);
});
