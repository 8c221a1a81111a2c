import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startSimFleetInThread } from '../../src/sim/fleet.js';
import { runLoad, LoadError, pacedWarmupCount } from '../../src/load/runner.js';
import { startTestRouter } from '../helpers/router.js';
import { column, loadOpts, npPercentile, readCsv, startFakeTarget, tempDir } from './helpers.js';

type Summary = Record<string, unknown> & { gpu_metrics: { gpu_id: number; share: number; worker_url: string; requests: number }[] };

function close(a: number, b: number, what: string, t: Test): void {
  t.ok(Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b)), `${what}: summary ${a} = csv ${b}`);
}

/** summary.json's percentiles equal numpy-style percentiles recomputed from requests.csv. */
function assertSummaryMatchesCsv(t: Test, dir: string): { rows: Record<string, string>[]; summary: Summary } {
  const rows = readCsv(join(dir, 'requests.csv'));
  const summary = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8')) as Summary;
  for (const [col, key] of [
    ['ttft_ms', 'ttft'],
    ['e2e_ms', 'e2e_latency'],
    ['tpot_ms', 'tpot'],
    ['total_latency_ms', 'total_latency'],
    ['queue_ms', 'queue'],
  ] as const) {
    const xs = column(rows, col);
    if (xs.length === 0) {
      t.equal(summary[`median_${key}_ms`], null, `${key}: no values, null in JSON`);
      continue;
    }
    close(summary[`median_${key}_ms`] as number, npPercentile(xs, 50), `median ${key}`, t);
    close(summary[`p99_${key}_ms`] as number, npPercentile(xs, 99), `p99 ${key}`, t);
    close(summary[`p90_${key}_ms`] as number, npPercentile(xs, 90), `p90 ${key}`, t);
    close(summary[`mean_${key}_ms`] as number, xs.reduce((a, b) => a + b, 0) / xs.length, `mean ${key}`, t);
  }
  const ok = rows.filter((r) => r['ok'] === '1');
  t.equal(summary['completed'], ok.length, 'completed = ok rows');
  t.equal(summary['total_input_tokens'], column(rows, 'input_tokens').reduce((a, b) => a + b, 0), 'total_input_tokens');
  t.equal(summary['total_output_tokens'], column(rows, 'output_tokens').reduce((a, b) => a + b, 0), 'total_output_tokens');
  t.equal(summary['itl_count'], column(rows, 'itl_count').reduce((a, b) => a + b, 0), 'pooled ITL count = sum of per-request counts');
  close(summary['request_throughput'] as number, ok.length / (summary['duration'] as number), 'request_throughput', t);
  const lag = summary['send_lag'] as { p99_ms: number };
  close(lag.p99_ms, npPercentile(column(rows, 'send_lag_ms', false), 99), 'send lag p99', t);
  return { rows, summary };
}

t.test('a single simulated server (node level): sglang streaming; every row gpu 0 single_server; summary = CSV', async (t) => {
  const fleet = await startSimFleetInThread({ count: 1, timeScale: 0.02, seed: 1 });
  t.teardown(() => fleet.close());
  const dir = tempDir();
  const r = await runLoad(loadOpts(fleet.urls[0]!, dir, { numPrompts: 30, seed: 3 }), { log: () => undefined });
  const { rows, summary } = assertSummaryMatchesCsv(t, dir);
  t.equal(rows.length, 30, 'one row per request');
  t.same(new Set(rows.map((x) => x['index'])).size, 30);
  t.ok(rows.every((x) => x['ok'] === '1' && x['status'] === '200'), 'all succeeded');
  t.ok(rows.every((x) => x['gpu_id'] === '0' && x['gpu_id_source'] === 'single_server'), 'gpu 0 from single_server');
  t.equal(summary['target'], 'server');
  t.equal(summary.gpu_metrics.length, 1);
  t.equal(summary.gpu_metrics[0]!.share, 1);
  t.ok(rows.every((x) => Number(x['output_tokens']) >= 1 && Number(x['ttft_ms']) > 0 && Number(x['e2e_ms']) >= Number(x['ttft_ms'])));
  t.ok(rows.every((x) => Math.abs(Number(x['total_latency_ms']) - Number(x['queue_ms']) - Number(x['e2e_ms'])) < 0.0021), 'total = queue + E2E');
  t.ok(rows.some((x) => Number(x['itl_count']) > 0), 'streamed: ITL recorded');
  t.ok(Number.isFinite(summary['cache_hit_rate'] as number));
  for (const k of ['completed', 'total_input_tokens', 'total_output_tokens', 'request_throughput', 'input_throughput', 'output_throughput', 'mean_ttft_ms', 'median_ttft_ms', 'std_ttft_ms', 'p99_ttft_ms', 'mean_tpot_ms', 'p95_itl_ms', 'p99_itl_ms', 'mean_e2e_latency_ms', 'concurrency', 'duration', 'definitions']) {
    t.ok(k in summary, `summary has ${k}`);
  }
  t.equal(r.ttftSortedMs.length, 30);
  // Same seed, same prompts: the request bodies are identical across runs (checked via input token counts).
  const dir2 = tempDir();
  await runLoad(loadOpts(fleet.urls[0]!, dir2, { numPrompts: 30, seed: 3 }), { log: () => undefined });
  const rows2 = readCsv(join(dir2, 'requests.csv'));
  const byIndex = (rs: Record<string, string>[]): string => rs.sort((a, b) => Number(a['index']) - Number(b['index'])).map((x) => x['input_tokens']).join(',');
  t.equal(byIndex(rows2), byIndex(rows), 'deterministic workload under --seed');
});

t.test('a router in front of 2 simulated workers: openai chat streaming; every gpu_id filled from X-SGLang-Worker', async (t) => {
  const fleet = await startSimFleetInThread({ count: 2, timeScale: 0.02, seed: 2 });
  const router = await startTestRouter(['--worker-urls', ...fleet.urls, '--policy', 'round_robin']);
  t.teardown(async () => {
    await router.close(0);
    await fleet.close();
  });
  const dir = tempDir();
  await runLoad(loadOpts(router.url, dir, { api: 'openai', openaiRoute: 'chat', numPrompts: 20, seed: 4 }), { log: () => undefined });
  const { rows, summary } = assertSummaryMatchesCsv(t, dir);
  t.equal(rows.length, 20);
  t.equal(summary['target'], 'router');
  t.ok(rows.every((x) => x['gpu_id'] === '0' || x['gpu_id'] === '1'), 'every gpu_id filled');
  t.ok(rows.every((x) => x['gpu_id_source'] === 'header'), 'from the header via /list_workers node_id');
  const nodeOf = new Map(router.ctx.registry.list().map((w) => [w.url, w.nodeId]));
  t.ok(rows.every((x) => String(nodeOf.get(x['worker_url']!)) === x['gpu_id']), 'gpu_id = the router\'s node_id of the worker that answered');
  t.equal(summary.gpu_metrics.length, 2);
  t.equal(summary.gpu_metrics[0]!.requests + summary.gpu_metrics[1]!.requests, 20);
  t.equal(summary.gpu_metrics[0]!.requests, 10, 'round robin splits evenly');
  t.equal(summary['model'], 'meta-llama/Llama-3.1-8B-Instruct', 'model from /v1/models');
  t.ok(rows.every((x) => Number(x['itl_count']) === Number(x['output_tokens']) - 1), 'one content chunk per token: ITL count = output - 1');
});

t.test('non-streaming: TTFT = E2E, no TPOT/ITL; sglang and openai completions', async (t) => {
  const fleet = await startSimFleetInThread({ count: 1, timeScale: 0.02, seed: 3 });
  t.teardown(() => fleet.close());
  for (const [api, route] of [
    ['sglang', 'chat'],
    ['openai', 'completions'],
  ] as const) {
    const dir = tempDir();
    await runLoad(loadOpts(fleet.urls[0]!, dir, { api, openaiRoute: route, disableStream: true, numPrompts: 10 }), { log: () => undefined });
    const { rows, summary } = assertSummaryMatchesCsv(t, dir);
    t.ok(rows.every((x) => x['ok'] === '1' && x['ttft_ms'] === x['e2e_ms'] && x['tpot_ms'] === '' && x['itl_count'] === '0'), `${api}: TTFT = E2E`);
    t.ok(rows.every((x) => Number(x['output_tokens']) >= 1), `${api}: output tokens from meta_info/usage`);
    t.equal(summary['stream'], false);
  }
});

t.test('error rows when the target fails (sim --fail-rate); unreachable target is a clear error', async (t) => {
  const fleet = await startSimFleetInThread({ count: 1, timeScale: 0.02, seed: 4, failRate: 0.5 });
  t.teardown(() => fleet.close());
  const dir = tempDir();
  await runLoad(loadOpts(fleet.urls[0]!, dir, { numPrompts: 40, warmupRequests: 0 }), { log: () => undefined });
  const { rows, summary } = assertSummaryMatchesCsv(t, dir);
  const failed = rows.filter((x) => x['ok'] === '0');
  t.ok(failed.length > 5 && failed.length < 35, `about half fail (${failed.length})`);
  t.ok(failed.every((x) => x['status'] === '500' && /injected/.test(x['error']!) && x['ttft_ms'] === '' && x['e2e_ms'] === ''), 'status, error text, no latency');
  t.equal(summary['failed'], failed.length);
  t.same(summary['errors'], { 'HTTP 500': failed.length });
  t.equal((summary['completed'] as number) + (summary['failed'] as number), 40);

  const closed = await startFakeTarget({});
  const deadUrl = closed.url;
  await closed.close();
  await t.rejects(runLoad(loadOpts(deadUrl, tempDir(), { numPrompts: 2 }), { log: () => undefined }), LoadError);
  await t.rejects(runLoad(loadOpts('not a url', tempDir(), { numPrompts: 2 }), { log: () => undefined }), /not a valid URL/);
});

t.test('GPU fallbacks: port order, router traces, policy estimate (marked estimated)', async (t) => {
  // 1. header without node ids: port order of the distinct worker URLs (lowest port = GPU 0)
  const a = await startFakeTarget({ listWorkers: { urls: ['http://127.0.0.1:30002', 'http://127.0.0.1:30001/'] }, workerHeader: (i) => (i % 3 === 0 ? 'http://127.0.0.1:30002' : 'http://127.0.0.1:30001') });
  t.teardown(() => a.close());
  const d1 = tempDir();
  await runLoad(loadOpts(a.url, d1, { numPrompts: 9 }), { log: () => undefined });
  const r1 = readCsv(join(d1, 'requests.csv'));
  t.ok(r1.every((x) => x['gpu_id_source'] === 'header_port_order'));
  t.ok(r1.every((x) => x['gpu_id'] === (Number(x['index']) % 3 === 0 ? '1' : '0')), '30001 -> GPU 0, 30002 -> GPU 1');

  // 2. no header, the router's traces answer
  const b = await startFakeTarget({
    listWorkers: { urls: ['http://127.0.0.1:30001', 'http://127.0.0.1:30002'] },
    traces: (ids) => ({ traces: ids.filter((id) => !id.endsWith('-5')).map((id) => ({ request_id: id, worker_url: Number(id.split('-').pop()) % 2 === 0 ? 'http://127.0.0.1:30002' : 'http://127.0.0.1:30001' })) }),
  });
  t.teardown(() => b.close());
  const d2 = tempDir();
  await runLoad(loadOpts(b.url, d2, { numPrompts: 8 }, { gpuFallbackPolicy: 'round_robin' }), { log: () => undefined });
  const r2 = readCsv(join(d2, 'requests.csv'));
  for (const x of r2) {
    const i = Number(x['index']);
    if (i === 5) t.same([x['gpu_id'], x['gpu_id_source']], [String((1 + i) % 2), 'estimated'], 'no trace for 5: round_robin estimate (warm-up counted)');
    else t.same([x['gpu_id'], x['gpu_id_source']], [i % 2 === 0 ? '1' : '0', 'traces'], `trace for ${i}`);
  }

  // 3. no header, traces 404: the estimate; without a policy: unknown (empty)
  const c = await startFakeTarget({ listWorkers: { urls: ['http://127.0.0.1:30001', 'http://127.0.0.1:30002', 'http://127.0.0.1:30003'] } });
  t.teardown(() => c.close());
  const d3 = tempDir();
  await runLoad(loadOpts(c.url, d3, { numPrompts: 6, warmupRequests: 0 }, { gpuFallbackPolicy: 'round_robin' }), { log: () => undefined });
  const r3 = readCsv(join(d3, 'requests.csv'));
  t.ok(r3.every((x) => x['gpu_id'] === String(Number(x['index']) % 3) && x['gpu_id_source'] === 'estimated'), 'counter mod N');
  const d4 = tempDir();
  await runLoad(loadOpts(c.url, d4, { numPrompts: 6 }, { gpuFallbackPolicy: 'random' }), { log: () => undefined });
  const r4 = readCsv(join(d4, 'requests.csv'));
  t.ok(r4.every((x) => ['0', '1', '2'].includes(x['gpu_id']!) && x['gpu_id_source'] === 'estimated'), 'hash of the request id mod N');
  const d5 = tempDir();
  await runLoad(loadOpts(c.url, d5, { numPrompts: 3 }), { log: () => undefined });
  t.ok(readCsv(join(d5, 'requests.csv')).every((x) => x['gpu_id'] === '' && x['gpu_id_source'] === 'unknown'), 'nothing tells: unknown');
  const s5 = JSON.parse(readFileSync(join(d5, 'summary.json'), 'utf8')) as Summary;
  t.same(s5['gpu_id_sources'], { unknown: 3 });
});

t.test('--warmup-seconds: one-token requests at the run rate before the run, not recorded; the GPU estimate counts them', async (t) => {
  t.equal(pacedWarmupCount({ requestRate: 2000, warmupSeconds: 0.25 }), 500);
  t.equal(pacedWarmupCount({ requestRate: 1e6, warmupSeconds: 1 }), 2000, 'capped');
  t.equal(pacedWarmupCount({ requestRate: 1, warmupSeconds: 0.25 }), 1, 'at least one');
  t.equal(pacedWarmupCount({ requestRate: 2000, warmupSeconds: 0 }), 0, '0: off');
  t.equal(pacedWarmupCount({ requestRate: Infinity, warmupSeconds: 1 }), 0, 'nothing to pace at rate inf');

  const f = await startFakeTarget({ listWorkers: { urls: ['http://127.0.0.1:30001', 'http://127.0.0.1:30002', 'http://127.0.0.1:30003'] } });
  t.teardown(() => f.close());
  const dir = tempDir();
  const r = await runLoad(loadOpts(f.url, dir, { numPrompts: 6, requestRate: 200, warmupRequests: 1, warmupSeconds: 0.05 }, { gpuFallbackPolicy: 'round_robin' }), { log: () => undefined });
  t.equal(r.summary['warmup_paced_requests'], 10, '200 req/s x 0.05 s');
  t.equal(r.summary['warmup_seconds'], 0.05);
  t.equal(r.summary['parallel_scavenge'], false, 'young-generation collections on the sending thread by default');
  const ids = f.received.map((x) => x.requestId);
  t.same(ids.slice(0, 1), ['test-warmup-0'], 'the concurrent warm-up first');
  t.same(ids.slice(1, 11).sort(), Array.from({ length: 10 }, (_, k) => `test-warm-${k}`).sort(), 'then the paced one');
  t.same(ids.slice(11), Array.from({ length: 6 }, (_, i) => `test-${i}`), 'then the run');
  const maxTokens = (k: number): unknown => (f.received[k]!.body['sampling_params'] as Record<string, unknown>)['max_new_tokens'];
  t.ok(f.received.slice(1, 11).every((_, k) => maxTokens(k + 1) === 1), 'paced warm-up requests ask for one token');
  t.ok(f.received.slice(11).every((_, k) => (maxTokens(k + 11) as number) >= 6), 'the run asks for its own lengths');
  const rows = readCsv(join(dir, 'requests.csv'));
  t.equal(rows.length, 6, 'only the run is recorded');
  t.ok(rows.every((x) => x['gpu_id'] === String((11 + Number(x['index'])) % 3) && x['gpu_id_source'] === 'estimated'), 'round_robin estimate after 11 warm-up requests');
});

t.test('--max-concurrency bounds requests in flight; the wait is client-side queueing, not send lag', async (t) => {
  const f = await startFakeTarget({ delayMs: 30 });
  t.teardown(() => f.close());
  const dir = tempDir();
  await runLoad(loadOpts(f.url, dir, { numPrompts: 12, requestRate: Infinity, maxConcurrency: 2, warmupRequests: 0 }), { log: () => undefined });
  t.equal(f.maxConcurrent, 2, 'never more than 2 in flight');
  const { rows } = assertSummaryMatchesCsv(t, dir);
  const byIndex = rows.sort((a, b) => Number(a['index']) - Number(b['index']));
  t.ok(Number(byIndex[11]!['queue_ms']) > 100, `the last request queued (${byIndex[11]!['queue_ms']} ms)`);
  t.ok(Number(byIndex[11]!['send_lag_ms']) < Number(byIndex[11]!['queue_ms']) / 2, 'the wait is not counted as generator lag');
  t.equal(f.received.length, 12);
  t.ok(f.received.every((r, i) => r.requestId === `test-${i}`), 'sent in order with x-request-id <run>-<index>');
});

t.test('stopping early (Ctrl-C): no new requests, those in flight finish, results written', async (t) => {
  const f = await startFakeTarget({ delayMs: 20 });
  t.teardown(() => f.close());
  const dir = tempDir();
  const controller = new AbortController();
  // Stop once a few requests have arrived (a fixed delay is too short when the machine is loaded).
  const poll = setInterval(() => {
    if (f.received.length >= 5) {
      clearInterval(poll);
      controller.abort();
    }
  }, 5);
  t.teardown(() => clearInterval(poll));
  const r = await runLoad(loadOpts(f.url, dir, { numPrompts: 1000, requestRate: 100, warmupRequests: 0 }), { log: () => undefined, signal: controller.signal });
  t.equal(r.summary['interrupted'], true);
  const rows = readCsv(join(dir, 'requests.csv'));
  t.ok(rows.length >= 5 && rows.length < 500, `stopped after ${rows.length} of 1000 requests`);
  t.equal(rows.length, f.received.length, 'every request sent has its row');
  t.equal(r.summary.completed, rows.length);
});

t.test('error text with commas, quotes and newlines survives the CSV; GPU columns rewritten after the run', async (t) => {
  const f = await startFakeTarget({
    listWorkers: { urls: ['http://127.0.0.1:30001', 'http://127.0.0.1:30002'] },
    workerHeader: (i) => (i % 2 === 0 ? 'http://127.0.0.1:30002' : 'http://127.0.0.1:30001'),
    failWith: (i) => (i === 3 ? { status: 503, message: 'overloaded, "try" later\nplease' } : undefined),
  });
  t.teardown(() => f.close());
  const dir = tempDir();
  await runLoad(loadOpts(f.url, dir, { numPrompts: 6 }), { log: () => undefined });
  const rows = readCsv(join(dir, 'requests.csv'));
  t.equal(rows.length, 6);
  const bad = rows.find((x) => x['index'] === '3')!;
  t.equal(bad['status'], '503');
  t.equal(bad['error'], 'HTTP 503: internal_error: overloaded, "try" later please', 'quoted; the line break became a space');
  t.same([bad['gpu_id'], bad['gpu_id_source']], ['', 'unknown'], 'no header, no trace, no estimate: unknown');
  t.ok(rows.filter((x) => x['index'] !== '3').every((x) => x['gpu_id'] === (Number(x['index']) % 2 === 0 ? '1' : '0') && x['gpu_id_source'] === 'header_port_order'));
  const text = readFileSync(join(dir, 'requests.csv'), 'utf8');
  t.notOk(text.includes(',,\n'), 'no row left with empty GPU columns');
  t.equal(text.trim().split('\n').length, 7, 'one line per row');
});
