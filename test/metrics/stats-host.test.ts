import t from 'tap';
import type { Worker } from 'node:worker_threads';
import { StatsHost, threadExecArgv } from '../../src/metrics/stats-host.js';
import type { CompletionRecord } from '../../src/proxy/completion.js';
import { parsePrometheusText, valueOf } from './prom-parser.js';
import { near, sleep } from './helpers.js';

const W1 = 'http://127.0.0.1:31001';
const W2 = 'http://127.0.0.1:31002';
const MEMBERS = [
  { url: W1, nodeId: 0 },
  { url: W2, nodeId: 1 },
];

function rec(over: Partial<CompletionRecord> = {}): CompletionRecord {
  return {
    requestId: 'r',
    route: 'chat',
    stream: true,
    workerUrl: W1,
    slot: 0,
    nodeId: 0,
    policy: 'round_robin',
    reason: 'round_robin: counter 0 mod 2',
    scores: undefined,
    status: 'completed',
    httpStatus: 200,
    errorCode: undefined,
    errorMessage: undefined,
    timestamp: Date.now(),
    arrivedAt: 1000,
    decidedAt: 1002,
    sentAt: 1003,
    firstTokenAt: 1053, // TTFT 50 ms
    finishedAt: 1253, // E2E 250 ms
    inputTokens: 12,
    outputTokens: 5, // TPOT (250 - 50) / 4 = 50 ms
    cachedTokens: 4,
    queueTime: 0.02,
    itl: [40, 50, 60, 50],
    attempts: 1,
    ...over,
  };
}

function host(): StatsHost {
  // A generous ask timeout: the first ask waits for the thread to start, which is slow on a loaded machine.
  return new StatsHost({ checkpointIntervalMs: 0, askTimeoutMs: 60_000, actor: { execArgv: [] } });
}

t.test('records are packed into numbers and cross once per event-loop turn', async (t) => {
  const h = host();
  t.teardown(() => h.close());
  await h.actor.whenAvailable();
  const before = h.actor.stats().callsSent;
  for (let i = 0; i < 100; i++) h.record(rec({ workerUrl: i % 2 === 0 ? W1 : W2, slot: i % 2, nodeId: i % 2 }));
  t.equal(h.recorded, 100);
  t.equal(h.batchesSent, 0, 'held until the flush interval');
  const deadline = Date.now() + 10_000;
  while (h.batchesSent === 0 && Date.now() < deadline) await sleep(5);
  await sleep(30);
  t.equal(h.batchesSent, 1, 'one message for the 100 records of one turn');
  t.equal(h.actor.stats().callsSent - before, 1);
  const snap = await h.snapshot(MEMBERS);
  const cum = snap.windows.cumulative;
  t.equal(cum.requests.total, 100);
  t.equal(cum.workers[W1]?.requests.total, 50);
  t.equal(cum.workers[W2]?.node_id, 1);
  const lat = cum.latency;
  t.ok(near(lat.ttft_ms.p50, 50), `ttft ${lat.ttft_ms.p50}`);
  t.ok(near(lat.e2e_ms.p50, 250), `e2e ${lat.e2e_ms.p50}`);
  t.ok(near(lat.tpot_ms.p50, 50), `tpot ${lat.tpot_ms.p50}`);
  t.ok(near(lat.queue_ms.p50, 2), `queue ${lat.queue_ms.p50}`);
  t.ok(near(lat.server_queue_ms.p50, 20), `server queue ${lat.server_queue_ms.p50}`);
  t.equal(lat.itl_ms.count, 400);
  t.ok(near(lat.itl_ms.max, 60));
  t.equal(cum.tokens.cached, 400);
});

t.test('what is measured for non-streaming, failed, aborted and unrouted requests', async (t) => {
  const h = host();
  t.teardown(() => h.close());
  h.record(rec({ stream: false, itl: undefined, firstTokenAt: 1250 })); // non-stream: E2E only, no TTFT
  h.record(rec({ status: 'failed', httpStatus: 500, errorCode: 'http_500' })); // failed: no E2E, no ITL
  h.record(rec({ status: 'aborted', httpStatus: 0 }));
  h.record(rec({ workerUrl: '', slot: -1, nodeId: -1, status: 'failed', decidedAt: 0, sentAt: 0, firstTokenAt: 0, queueTime: undefined, itl: undefined }));
  const snap = await h.snapshot(MEMBERS);
  const cum = snap.windows.cumulative;
  t.same(cum.requests, { total: 4, completed: 1, failed: 2, aborted: 1 });
  t.equal(cum.latency.e2e_ms.count, 1);
  t.equal(cum.latency.ttft_ms.count, 0);
  t.equal(cum.latency.itl_ms.count, 0);
  t.equal(cum.latency.queue_ms.count, 3, 'router-side queueing is known whenever a decision was made');
  t.equal(cum.workers[W1]?.requests.total, 3);
  const text = await h.prometheus(MEMBERS);
  const fams = parsePrometheusText(text);
  t.equal(valueOf(fams, 'sgl_router_request_duration_seconds_count', { route: '/v1/chat/completions' }), 4);
  t.ok(near(valueOf(fams, 'sgl_router_request_duration_seconds_sum', { route: '/v1/chat/completions' }), 4 * 0.253, 1e-6));
  t.equal(valueOf(fams, 'sgl_router_ttft_seconds_count', { worker: W2, gpu: '1' }), 0);
});

t.test('a crashed stats thread is restarted from the latest checkpoint', async (t) => {
  const h = host();
  t.teardown(() => h.close());
  for (let i = 0; i < 10; i++) h.record(rec());
  const cp = await h.checkpoint();
  t.equal(cp.workers.length, 1);
  t.equal(h.latestCheckpoint, cp);
  const before = (await h.snapshot(MEMBERS)).windows.cumulative;
  const restarts = h.actor.restarts;
  const inc = (h.actor as unknown as { inc: { worker: Worker } }).inc;
  await inc.worker.terminate();
  const deadline = Date.now() + 60_000;
  while ((h.actor.restarts === restarts || !h.actor.available) && Date.now() < deadline) await sleep(10);
  t.equal(h.actor.restarts, restarts + 1);
  h.record(rec({ workerUrl: W2, slot: 1, nodeId: 1 }));
  const after = (await h.snapshot(MEMBERS)).windows.cumulative;
  t.equal(after.requests.total, 11, 'the 10 checkpointed requests plus the new one');
  t.same(after.workers[W1]?.latency, before.workers[W1]?.latency);
  t.equal(after.workers[W2]?.node_id, 1, 'workers announced after the restart are known');
});

t.test('asks time out instead of hanging; closed hosts ignore records', async (t) => {
  const h = new StatsHost({ checkpointIntervalMs: 0, askTimeoutMs: 1, actor: { execArgv: [] } });
  // the thread is still starting: a 1 ms deadline cannot be met
  await t.rejects(h.snapshot(MEMBERS), { code: 'service_unavailable' });
  await h.close();
  h.record(rec());
  t.equal(h.recorded, 0);
  await h.close();
});

t.test('records of several turns share a crossing within the flush interval; 0 = one per turn', async (t) => {
  const held = new StatsHost({ checkpointIntervalMs: 0, askTimeoutMs: 60_000, flushIntervalMs: 200, actor: { execArgv: [] } });
  const perTurn = new StatsHost({ checkpointIntervalMs: 0, askTimeoutMs: 60_000, flushIntervalMs: 0, actor: { execArgv: [] } });
  t.teardown(() => Promise.all([held.close(), perTurn.close()]));
  for (let turn = 0; turn < 5; turn++) {
    held.record(rec());
    perTurn.record(rec());
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
  }
  t.equal(held.batchesSent, 0, 'still held');
  t.equal(perTurn.batchesSent, 5, 'one crossing per turn');
  const snap = await held.snapshot(MEMBERS); // a snapshot flushes first
  t.equal(held.batchesSent, 1);
  t.equal(snap.windows.cumulative.requests.total, 5);
});

t.test('thread flags drop module loaders only', async (t) => {
  t.same(threadExecArgv(['--enable-source-maps', '--import', 'x.mjs', '--import=y.mjs', '-r', 'z', '--loader=l', '--max-old-space-size=100']), ['--enable-source-maps', '--max-old-space-size=100']);
});
