import t from 'tap';
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

t.test('a crashed stats thread is restarted from the latest checkpoint plus the batches sent since', async (t) => {
  const h = host();
  t.teardown(() => h.close());
  for (let i = 0; i < 10; i++) h.record(rec());
  const cp = await h.checkpoint();
  t.equal(cp.workers.length, 1);
  t.equal(h.latestCheckpoint, cp);
  t.equal(h.replayHeld.batches, 0, 'the checkpoint covers every batch sent');
  for (let i = 0; i < 5; i++) h.record(rec({ itl: [10, 20] }));
  const before = (await h.snapshot(MEMBERS)).windows.cumulative;
  t.equal(h.replayHeld.batches, 1, 'the batch sent after the checkpoint is kept');
  const restarts = h.actor.restarts;
  t.ok(await h.actor.killThread(), 'the stats thread killed');
  const deadline = Date.now() + 60_000;
  while ((h.actor.restarts === restarts || !h.actor.available) && Date.now() < deadline) await sleep(10);
  t.equal(h.actor.restarts, restarts + 1);
  t.equal(h.replayed, 1, 'one batch replayed');
  h.record(rec({ workerUrl: W2, slot: 1, nodeId: 1 }));
  const snap = await h.snapshot(MEMBERS);
  const after = snap.windows.cumulative;
  t.equal(after.requests.total, 16, 'the 10 checkpointed requests, the 5 replayed, the new one');
  t.same(after.workers[W1]?.latency, before.workers[W1]?.latency);
  t.equal(after.workers[W2]?.node_id, 1, 'workers announced after the restart are known');
  t.equal(snap.windows['1m'].requests.total, 6, 'the replayed batch is in the windows too');
});

t.test('a crash before the first checkpoint loses nothing either', async (t) => {
  const h = host();
  t.teardown(() => h.close());
  await h.actor.whenAvailable();
  for (let i = 0; i < 7; i++) h.record(rec());
  await h.snapshot(MEMBERS); // flushed and applied
  const restarts = h.actor.restarts;
  await h.actor.killThread();
  h.record(rec()); // sent while the thread is down: queued, then skipped or applied exactly once
  const deadline = Date.now() + 60_000;
  while ((h.actor.restarts === restarts || !h.actor.available) && Date.now() < deadline) await sleep(10);
  const after = (await h.snapshot(MEMBERS)).windows.cumulative;
  t.equal(after.requests.total, 8);
  t.equal(after.latency.itl_ms.count, 32);
  const text = await h.prometheus(MEMBERS);
  t.equal(valueOf(parsePrometheusText(text), 'sgl_router_request_duration_seconds_count', { route: '/v1/chat/completions' }), 8);
});

t.test('the replay is bounded: an early checkpoint past the threshold, the oldest dropped past the maximum', async (t) => {
  const h = new StatsHost({ checkpointIntervalMs: 0, askTimeoutMs: 60_000, flushIntervalMs: 0, replayCheckpointNumbers: 40, replayMaxNumbers: 60, actor: { execArgv: [] } });
  t.teardown(() => h.close());
  await h.actor.whenAvailable();
  // 17 numbers per record (13 + 4 gaps), one batch per turn
  for (let i = 0; i < 3; i++) {
    h.record(rec());
    await new Promise((r) => setImmediate(r));
  }
  const deadline = Date.now() + 30_000;
  while (h.latestCheckpoint === null && Date.now() < deadline) await sleep(5);
  t.ok(h.latestCheckpoint !== null, 'a checkpoint was taken when 51 numbers were held (> 40)');
  while (h.replayHeld.batches !== 0 && Date.now() < deadline) await sleep(5);
  t.equal(h.replayHeld.batches, 0, 'and the batches it covers are released');
  t.equal(h.replayHeld.complete, true);
  // The thread is down: no checkpoint can be taken, so the maximum drops the oldest batches.
  const restarts = h.actor.restarts;
  await h.actor.killThread();
  for (let i = 0; i < 5; i++) {
    h.record(rec());
    await new Promise((r) => setImmediate(r));
  }
  t.equal(h.replayHeld.batches, 3, 'at most 60 numbers: the 3 newest batches of 17');
  t.equal(h.replayDropped, 2);
  t.equal(h.replayHeld.complete, false);
  while ((h.actor.restarts === restarts || !h.actor.available) && Date.now() < deadline) await sleep(10);
  const total = (await h.snapshot(MEMBERS)).windows.cumulative.requests.total;
  // The checkpointed 3 and the 3 kept; the 2 dropped are lost unless they reached the new thread live
  // (a restart that began before they were sent receives them as ordinary messages).
  t.ok(total >= 6 && total <= 8, `total ${total}`);
  await h.checkpoint();
  t.equal(h.replayHeld.complete, true, 'complete again after the next checkpoint');
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
