import t from 'tap';
import { initWebAssembly } from 'hdr-histogram-js';
import { balanceOf, HIGHEST_US, StatsStore } from '../../src/metrics/stats-store.js';
import { parsePrometheusText, valueOf } from './prom-parser.js';
import { near, pack } from './helpers.js';
import { OTHER_ROUTE } from '../../src/metrics/route-labels.js';

await initWebAssembly();

const A = 'http://127.0.0.1:30001';
const B = 'http://127.0.0.1:30002';
const C = 'http://127.0.0.1:30003';
const MEMBERS = [
  { url: A, nodeId: 0 },
  { url: B, nodeId: 1 },
  { url: C, nodeId: 2 },
];

function makeStore(useWasm: boolean, clock: { now: number }): StatsStore {
  const s = new StatsStore({ sliceMs: 10_000, useWasm, now: () => clock.now });
  s.defineWorkers([
    { id: 0, url: A, nodeId: 0 },
    { id: 1, url: B, nodeId: 1 },
    { id: 2, url: C, nodeId: 2 },
  ]);
  return s;
}

for (const useWasm of [true, false]) {
  t.test(`percentiles, TPOT, pooled ITL and queue times (${useWasm ? 'wasm' : 'js'})`, async (t) => {
    const clock = { now: 1_000 };
    const s = makeStore(useWasm, clock);
    t.teardown(() => s.destroy());
    // E2E 1..1000 ms on worker A, non-streaming
    const samples = Array.from({ length: 1000 }, (_, i) => ({ worker: 0, stream: false, e2eMs: i + 1, queueMs: 2, output: 5 }));
    t.equal(s.ingest(pack(samples)), 1000);
    // two streams on B: TTFT 100 ms, E2E 1100 ms, 11 tokens -> TPOT (1100 - 100) / 10 = 100 ms
    t.equal(s.ingest(pack([
      { worker: 1, ttftMs: 100, e2eMs: 1100, output: 11, itlMs: [10, 20], serverQueueMs: 7 },
      { worker: 1, ttftMs: 300, e2eMs: 300, output: 1, itlMs: [30] }, // one token: no TPOT
    ])), 2);
    const snap = s.snapshot(MEMBERS);
    const cum = snap.windows.cumulative;
    const a = cum.workers[A]?.latency;
    t.equal(a?.e2e_ms.count, 1000);
    t.ok(near(a?.e2e_ms.p50, 500), `p50 ${a?.e2e_ms.p50}`);
    t.ok(near(a?.e2e_ms.p90, 900), `p90 ${a?.e2e_ms.p90}`);
    t.ok(near(a?.e2e_ms.p99, 990), `p99 ${a?.e2e_ms.p99}`);
    t.ok(near(a?.e2e_ms.max, 1000), `max ${a?.e2e_ms.max}`);
    t.ok(near(a?.e2e_ms.mean, 500.5), `mean ${a?.e2e_ms.mean}`);
    t.ok(near(a?.queue_ms.p50, 2));
    t.equal(a?.ttft_ms.count, 0, 'non-streaming requests have no TTFT');
    t.equal(a?.ttft_ms.p50, null);
    const b = cum.workers[B]?.latency;
    t.equal(b?.tpot_ms.count, 1, 'TPOT only with more than one output token');
    t.ok(near(b?.tpot_ms.p50, 100));
    t.equal(b?.itl_ms.count, 3, 'every gap pooled');
    t.ok(near(b?.itl_ms.max, 30));
    t.equal(b?.server_queue_ms.count, 1);
    t.ok(near(b?.server_queue_ms.p50, 7));
    // overall merges the workers
    t.equal(cum.latency.e2e_ms.count, 1002);
    t.equal(cum.latency.itl_ms.count, 3);
    t.equal(cum.requests.total, 1002);
    t.equal(cum.tokens.output, 5000 + 12);
    t.equal(cum.workers[C]?.requests.total, 0, 'an idle member is listed with zeros');
    t.equal(cum.workers[C]?.latency.e2e_ms.p99, null);
    t.equal(snap.samples.requests, 1002);
    t.equal(snap.samples.itl_gaps, 3);
    t.equal(snap.hdr.wasm, useWasm);
  });
}

t.test('windows: 1m, 5m and cumulative over a moving clock, with ring slots folded on reuse', async (t) => {
  const clock = { now: 0 };
  const s = makeStore(true, clock);
  t.teardown(() => s.destroy());
  const batch = (n: number, e2eMs: number) => pack(Array.from({ length: n }, () => ({ worker: 0, stream: false, e2eMs })));
  s.ingest(batch(10, 100)); // epoch 0, minute 0
  clock.now = 30_000;
  s.ingest(batch(5, 200)); // epoch 3
  clock.now = 65_000; // epoch 6, minute 1: the 1m window is epochs 1..6
  let w = s.snapshot(MEMBERS).windows;
  t.equal(w['1m'].requests.total, 5, '1m holds only the last 6 slices');
  t.equal(w['5m'].requests.total, 15);
  t.equal(w.cumulative.requests.total, 15);
  t.ok(near(w['1m'].latency.e2e_ms.p50, 200));

  s.ingest(batch(7, 300)); // epoch 6 reuses slot 0: epoch 0 is folded into minute 0 and the cumulative
  w = s.snapshot(MEMBERS).windows;
  t.equal(w['1m'].requests.total, 12);
  t.equal(w['5m'].requests.total, 22, 'folded minute + live slices');
  t.equal(w['5m'].latency.e2e_ms.count, 22);
  t.ok(near(w['5m'].latency.e2e_ms.max, 300));
  t.equal(w.cumulative.requests.total, 22);
  t.equal(w.cumulative.latency.e2e_ms.count, 22);

  clock.now = 6 * 60_000 + 5_000; // minute 6: everything older than minute 2 left the 5m window
  w = s.snapshot(MEMBERS).windows;
  t.equal(w['1m'].requests.total, 0);
  t.equal(w['5m'].requests.total, 0);
  t.equal(w['1m'].latency.e2e_ms.p50, null);
  t.equal(w.cumulative.requests.total, 22, 'cumulative keeps everything');
  s.ingest(batch(1, 400)); // reuses slot 0 again (epoch 36): folds epoch 6 into the cumulative only
  w = s.snapshot(MEMBERS).windows;
  t.equal(w['5m'].requests.total, 1);
  t.equal(w.cumulative.requests.total, 23);
  t.equal(w.cumulative.latency.e2e_ms.count, 23);
  t.ok(near(w.cumulative.latency.e2e_ms.max, 400));
});

t.test('requests without a worker count in totals, not in any worker; statuses are split', async (t) => {
  const clock = { now: 0 };
  const s = makeStore(true, clock);
  t.teardown(() => s.destroy());
  s.ingest(pack([{ worker: -1, status: 1 }, { worker: 0, status: 2 }, { worker: 0, status: 0, e2eMs: 5 }, { worker: 7, status: 0, e2eMs: 5 }]));
  const cum = s.snapshot(MEMBERS).windows.cumulative;
  t.same(cum.requests, { total: 4, completed: 2, failed: 1, aborted: 1 });
  t.equal(cum.workers[A]?.requests.total, 2);
  t.equal(cum.workers['worker#7']?.requests.total, 1, 'an id whose definition was lost keeps its numbers');
  t.equal(Object.keys(cum.workers).includes(''), false);
});

t.test('balance figure', async (t) => {
  t.same(balanceOf([]), { cv: null, max_min_ratio: null, max_requests: 0, min_requests: 0, score: null, balanced: null, members: 0 });
  t.equal(balanceOf([0, 0]).cv, null);
  const even = balanceOf([10, 10, 10]);
  t.equal(even.cv, 0);
  t.equal(even.max_min_ratio, 1);
  t.equal(even.balanced, true);
  t.equal(even.score, 1);
  const skewed = balanceOf([10, 10, 0]);
  t.equal(skewed.cv, 0.7071);
  t.equal(skewed.max_min_ratio, null, 'min is zero');
  t.equal(skewed.balanced, false);
  t.equal(balanceOf([30, 10]).max_min_ratio, 3);

  const clock = { now: 0 };
  const s = makeStore(true, clock);
  t.teardown(() => s.destroy());
  s.ingest(pack([...Array.from({ length: 30 }, () => ({ worker: 0 })), ...Array.from({ length: 10 }, () => ({ worker: 1 }))]));
  const w = s.snapshot(MEMBERS).windows['1m'];
  t.equal(w.workers[A]?.share, 0.75);
  t.equal(w.workers[B]?.share, 0.25);
  t.equal(w.balance.members, 3);
  t.equal(w.balance.max_requests, 30);
  t.equal(w.balance.min_requests, 0);
});

t.test('checkpoint and restore keep the cumulative figures, windows start empty', async (t) => {
  const clock = { now: 0 };
  const s = makeStore(true, clock);
  s.ingest(pack(Array.from({ length: 100 }, (_, i) => ({ worker: 0, ttftMs: i + 1, e2eMs: 2 * (i + 1), output: 3, itlMs: [5, 6] }))));
  clock.now = 70_000;
  s.ingest(pack([{ worker: 1, stream: false, e2eMs: 42 }]));
  const before = s.snapshot(MEMBERS).windows.cumulative;
  const promBefore = s.renderPrometheus(MEMBERS);
  const cp = s.checkpoint();
  s.destroy();
  t.equal(cp.workers.length, 3);
  t.ok((cp.latency['0']?.[0] ?? '').length > 0, 'TTFT histogram encoded');
  t.equal(cp.latency['2']?.[0], '', 'empty histograms encode as empty strings');

  const clock2 = { now: 5 };
  const r = new StatsStore({ sliceMs: 10_000, useWasm: true, now: () => clock2.now });
  t.teardown(() => r.destroy());
  r.restore(JSON.parse(JSON.stringify(cp)));
  const after = r.snapshot(MEMBERS).windows;
  t.same(after.cumulative.requests, before.requests);
  t.same(after.cumulative.latency, before.latency);
  t.same(after.cumulative.workers[A]?.latency, before.workers[A]?.latency);
  t.equal(after['1m'].requests.total, 0);
  t.equal(r.renderPrometheus(MEMBERS), promBefore, 'Prometheus histograms survive too');
});

t.test('bad input: a malformed batch throws after keeping the records before it; values are clamped', async (t) => {
  const clock = { now: 0 };
  const s = makeStore(true, clock);
  t.teardown(() => s.destroy());
  const good = pack([{ worker: 0, e2eMs: 10 }]);
  const broken = new Float64Array(good.length + 5);
  broken.set(good);
  t.throws(() => s.ingest(broken), /truncated/);
  const lying = pack([{ worker: 0, e2eMs: 10, itlMs: [1] }]);
  lying[12] = 50; // claims 50 gaps
  t.throws(() => s.ingest(lying), /bad ITL count/);
  t.equal(s.snapshot(MEMBERS).windows.cumulative.requests.total, 1);
  s.ingest(pack([{ worker: 0, e2eMs: 1e12 }, { worker: 0, e2eMs: -5 }]));
  const e2e = s.snapshot(MEMBERS).windows.cumulative.workers[A]?.latency.e2e_ms;
  t.ok(near(e2e?.max, HIGHEST_US / 1000), 'clamped to one hour');
  t.equal(e2e?.count, 2, 'a negative stamp means "not measured"');
  t.throws(() => new StatsStore({ sliceMs: 0, useWasm: true, now: () => 0 }), /sliceMs/);
});

t.test('Prometheus histograms from the store: strict parse, exact bucket counts', async (t) => {
  const clock = { now: 0 };
  const s = makeStore(true, clock);
  t.teardown(() => s.destroy());
  s.ingest(pack([
    { worker: 0, route: 0, durationMs: 3, ttftMs: 4, e2eMs: 14, output: 6, itlMs: [2, 2, 2, 2, 2] },
    { worker: 0, route: 1, durationMs: 600, ttftMs: 500, e2eMs: 600, output: 2, itlMs: [100] },
    { worker: -1, route: OTHER_ROUTE, status: 1, durationMs: 0.5 },
  ]));
  const text = s.renderPrometheus(MEMBERS);
  const fams = parsePrometheusText(text);
  t.equal(fams.get('sgl_router_ttft_seconds')?.type, 'histogram');
  const w = { worker: A, gpu: '0' };
  t.equal(valueOf(fams, 'sgl_router_ttft_seconds_count', w), 2);
  t.equal(valueOf(fams, 'sgl_router_ttft_seconds_bucket', { ...w, le: '0.005' }), 1);
  t.equal(valueOf(fams, 'sgl_router_ttft_seconds_bucket', { ...w, le: '0.5' }), 2, 'le is inclusive');
  t.ok(near(valueOf(fams, 'sgl_router_ttft_seconds_sum', w), 0.504, 1e-9));
  t.equal(valueOf(fams, 'sgl_router_inter_token_latency_seconds_count', w), 6);
  t.equal(valueOf(fams, 'sgl_router_inter_token_latency_seconds_bucket', { ...w, le: '0.002' }), 5);
  t.equal(valueOf(fams, 'sgl_router_tpot_seconds_count', w), 2);
  t.equal(valueOf(fams, 'sgl_router_tpot_seconds_count', { worker: C, gpu: '2' }), 0, 'idle members are exported at zero');
  t.equal(valueOf(fams, 'sgl_router_request_duration_seconds_count', { route: '/generate' }), 1);
  t.equal(valueOf(fams, 'sgl_router_request_duration_seconds_count', { route: '/v1/chat/completions' }), 1);
  t.equal(valueOf(fams, 'sgl_router_request_duration_seconds_count', { route: 'other' }), 1);
  t.equal(valueOf(fams, 'sgl_router_request_duration_seconds_count', { route: '/v1/completions' }), 0);
});

t.test('former workers with nothing in the 5m window keep only their cumulative histograms', async (t) => {
  const clock = { now: 0 };
  const s = makeStore(true, clock);
  t.teardown(() => s.destroy());
  s.ingest(pack([{ worker: 2, e2eMs: 10 }, { worker: 2, e2eMs: 20 }, { worker: 0, e2eMs: 30 }]));
  const members = MEMBERS.slice(0, 2); // C was removed
  t.equal(s.releaseFormer(members, 0), 0, 'C still has data in the 5m window');
  clock.now = 10 * 60_000;
  const cum = s.snapshot(members).windows.cumulative;
  t.equal(cum.workers[C]?.requests.total, 2, 'folded into the cumulative, still reported');
  t.equal(cum.workers[C]?.latency.e2e_ms.count, 2);
  t.equal(cum.latency.e2e_ms.count, 3);
  t.equal(s.releaseFormer(members, s.epochOf(clock.now)), 0, 'released once, nothing left to release');
  s.ingest(pack([{ worker: 2, e2eMs: 40 }])); // it came back
  const w = s.snapshot(MEMBERS).windows;
  t.equal(w['1m'].workers[C]?.requests.total, 1);
  t.equal(w.cumulative.workers[C]?.requests.total, 3);
});
