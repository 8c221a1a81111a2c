/**
 * The router with its observability wired in, over real sockets: GET /metrics on the Prometheus port
 * (strictly parsed), GET /stats and GET /admin/debug/bundle on the main port.
 */
import t, { type Test } from 'tap';
import net from 'node:net';
import { execFileSync, spawnSync } from 'node:child_process';
import { startTestRouter } from '../helpers/router.js';
import { startFixtureBackend, type FixtureBackend } from '../helpers/fixture-backend.js';
import { get, post, postAndAbort, send, waitFor } from '../helpers/client.js';
import type { StartedRouter } from '../../src/router.js';
import { registerPolicy, unregisterPolicy } from '../../src/policies/registry.js';
import { collectAvailable, decisionFor } from '../../src/policies/common.js';
import type { Policy, WorkerInfo } from '../../src/policies/types.js';
import { parsePrometheusText, valueOf, type Family } from './prom-parser.js';

/** Every family sgl-router exports (sgl-router.md "Metrics"), ours for admission, and the latency histograms. */
const REQUIRED: [string, Family['type']][] = [
  ['sgl_router_requests_total', 'counter'],
  ['sgl_router_request_duration_seconds', 'histogram'],
  ['sgl_router_request_errors_total', 'counter'],
  ['sgl_router_retries_total', 'counter'],
  ['sgl_router_retries_exhausted_total', 'counter'],
  ['sgl_router_cb_state', 'gauge'],
  ['sgl_router_active_workers', 'gauge'],
  ['sgl_router_worker_health', 'gauge'],
  ['sgl_router_worker_load', 'gauge'],
  ['sgl_router_running_requests', 'gauge'],
  ['sgl_router_processed_requests_total', 'counter'],
  ['sgl_router_policy_decisions_total', 'counter'],
  ['sgl_router_cache_hits_total', 'counter'],
  ['sgl_router_cache_misses_total', 'counter'],
  ['sgl_router_tree_size', 'gauge'],
  ['sgl_router_load_balancing_events_total', 'counter'],
  ['sgl_router_max_load', 'gauge'],
  ['sgl_router_min_load', 'gauge'],
  ['sgl_router_ttft_seconds', 'histogram'],
  ['sgl_router_inter_token_latency_seconds', 'histogram'],
  ['sgl_router_tpot_seconds', 'histogram'],
  ['sgl_router_admission_total', 'counter'],
];

const TEST_STATS = { checkpointIntervalMs: 0, askTimeoutMs: 60_000, actor: { execArgv: [] } };

async function routerFor(t: Test, fb: FixtureBackend, args: string[] = []): Promise<StartedRouter> {
  const r = await startTestRouter(['--worker-urls', fb.url, '--policy', 'round_robin', '--prometheus-port', '0', ...args], { observability: { stats: TEST_STATS } });
  t.teardown(() => r.close(2000));
  await waitFor(() => r.ctx.registry.healthyCount() === 1, 10_000, 'a healthy worker');
  return r;
}

async function scrape(r: StartedRouter): Promise<{ text: string; contentType: string | undefined; fams: Map<string, Family> }> {
  const url = r.observability.prometheus?.url;
  if (url === undefined) throw new Error('no Prometheus listener');
  const res = await get(url);
  if (res.status !== 200) throw new Error(`GET /metrics: ${res.status} ${res.body}`);
  return { text: res.body, contentType: res.headers['content-type'], fams: parsePrometheusText(res.body) };
}

function promtool(): string | undefined {
  const r = spawnSync('sh', ['-c', 'command -v promtool'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

t.test('/metrics: every sgl-router family, strictly parsed, counting the traffic sent', async (t) => {
  const fb = await startFixtureBackend();
  t.teardown(() => fb.close());
  const failing = new Set<string>();
  fb.handler = (rec, res) => {
    const text = String(rec.json?.['text'] ?? '');
    if (failing.has(text)) {
      res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":"boom"}');
      return;
    }
    if (rec.json?.['stream'] !== true) {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ text: 'hi', meta_info: { prompt_tokens: 10, completion_tokens: 2 } }));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    if (text === 'slow stream') {
      res.write(`data: ${JSON.stringify({ text: 'a', meta_info: { completion_tokens: 1 } })}\n\n`);
      return; // never ends: the client aborts
    }
    let i = 0;
    const next = (): void => {
      i++;
      res.write(`data: ${JSON.stringify({ text: 'x'.repeat(i), meta_info: { prompt_tokens: 10, completion_tokens: i, cached_tokens: 3, queue_time: 0.004 } })}\n\n`);
      if (i === 5) res.end('data: [DONE]\n\n');
      else setTimeout(next, 2);
    };
    setTimeout(next, 2);
  };
  const r = await routerFor(t, fb, ['--retry-max-retries', '2', '--retry-initial-backoff-ms', '1', '--retry-max-backoff-ms', '2', '--cb-failure-threshold', '100']);

  // Before any traffic every family exists (zeros, HELP and TYPE included).
  const empty = await scrape(r);
  for (const [name, type] of REQUIRED) {
    t.equal(empty.fams.get(name)?.type, type, `${name} is a ${type}`);
    t.ok((empty.fams.get(name)?.help ?? '').length > 0, `${name} has HELP`);
  }
  t.equal(valueOf(empty.fams, 'sgl_router_cache_hits_total'), 0);
  t.equal(valueOf(empty.fams, 'sgl_router_admission_total', { action: 'multi', trigger: 'large_kv' }), 0);
  t.equal(valueOf(empty.fams, 'sgl_router_ttft_seconds_count', { worker: fb.url, gpu: '0' }), 0);
  t.equal(empty.contentType, 'text/plain; version=0.0.4; charset=utf-8');

  for (let i = 0; i < 3; i++) {
    const res = await post(`${r.url}/generate`, { text: `stream ${i}`, stream: true });
    t.equal(res.status, 200);
  }
  for (let i = 0; i < 2; i++) t.equal((await post(`${r.url}/v1/chat/completions`, { messages: [{ role: 'user', content: 'hi' }] })).status, 200);
  t.equal((await send('POST', `${r.url}/v1/completions`, '{not json', { 'content-type': 'application/json' })).status, 400);
  failing.add('fail me');
  t.equal((await post(`${r.url}/generate`, { text: 'fail me' })).status, 500);
  await postAndAbort(`${r.url}/generate`, { text: 'slow stream', stream: true }, 1);
  await waitFor(() => r.ctx.counters.active === 0, 10_000, 'requests to finish');

  const { fams, text } = await scrape(r);
  const w = { worker: fb.url };
  t.equal(valueOf(fams, 'sgl_router_requests_total', { route: '/generate' }), 5);
  t.equal(valueOf(fams, 'sgl_router_requests_total', { route: '/v1/chat/completions' }), 2);
  t.equal(valueOf(fams, 'sgl_router_requests_total', { route: '/v1/completions' }), 1);
  t.equal(valueOf(fams, 'sgl_router_requests_total', { route: 'other' }), 0);
  t.equal(valueOf(fams, 'sgl_router_request_errors_total', { route: '/v1/completions', error_type: 'invalid_json' }), 1);
  t.equal(valueOf(fams, 'sgl_router_request_errors_total', { route: '/generate', error_type: 'http_500' }), 1);
  t.equal(valueOf(fams, 'sgl_router_request_errors_total', { route: '/generate', error_type: 'client_closed' }), 1);
  // 3 streams + 2 chats + the failing request's 3 attempts (2 retries) + the aborted stream
  t.equal(valueOf(fams, 'sgl_router_policy_decisions_total', { policy: 'round_robin', ...w }), 9);
  t.equal(valueOf(fams, 'sgl_router_processed_requests_total', w), 5);
  t.equal(valueOf(fams, 'sgl_router_worker_health', w), 1);
  t.equal(valueOf(fams, 'sgl_router_cb_state', w), 0);
  t.equal(valueOf(fams, 'sgl_router_running_requests', w), 0);
  t.equal(valueOf(fams, 'sgl_router_active_workers'), 1);
  t.equal(valueOf(fams, 'sgl_router_retries_total'), 2);
  t.equal(valueOf(fams, 'sgl_router_retries_exhausted_total'), 1, 'the 500 failed on its last allowed attempt');
  t.equal(valueOf(fams, 'sgl_router_request_duration_seconds_count', { route: '/generate' }), 5);
  t.equal(valueOf(fams, 'sgl_router_request_duration_seconds_count', { route: '/v1/chat/completions' }), 2);
  const g = { ...w, gpu: '0' };
  t.equal(valueOf(fams, 'sgl_router_ttft_seconds_count', g), 3, 'TTFT of the completed streams');
  t.equal(valueOf(fams, 'sgl_router_inter_token_latency_seconds_count', g), 12, '4 gaps per 5-chunk stream');
  t.equal(valueOf(fams, 'sgl_router_tpot_seconds_count', g), 3);
  t.ok((valueOf(fams, 'sgl_router_ttft_seconds_sum', g) ?? 0) > 0);

  const tool = promtool();
  if (tool === undefined) t.comment('promtool not installed: the strict parser above is the only format check');
  else {
    const out = spawnSync(tool, ['check', 'metrics'], { input: text, encoding: 'utf8' });
    t.equal(out.status, 0, `promtool check metrics: ${out.stdout}${out.stderr}`);
  }

  // the Prometheus port serves only GET /metrics
  const url = new URL(r.observability.prometheus?.url ?? '');
  t.equal((await get(`${url.origin}/nope`)).status, 404);
  const wrong = await send('POST', url.href, '');
  t.equal(wrong.status, 405);
  t.equal(wrong.headers['allow'], 'GET');
});

t.test('/stats: counters, routing section, percentile windows per worker; admission counters show up', async (t) => {
  const fb = await startFixtureBackend();
  t.teardown(() => fb.close());
  const r = await routerFor(t, fb);
  for (let i = 0; i < 4; i++) t.equal((await post(`${r.url}/generate`, { text: `s ${i}`, stream: true })).status, 200);
  t.equal((await post(`${r.url}/generate`, { text: 'plain' })).status, 200);
  r.observability.admission.record('multi', 'large_input');
  r.observability.admission.record('single', 'none');
  r.observability.admission.record('Bad Name!', 'none');

  const res = await get(`${r.url}/stats`);
  t.equal(res.status, 200);
  const body = JSON.parse(res.body) as Record<string, any>;
  t.equal(body['policy'], 'round_robin');
  t.match(body['requests'], { total: 5, completed: 5, failed: 0, aborted: 0, active: 0, retries: 0, by_route: { '/generate': 5 } });
  const routing = body['routing'];
  t.equal(routing.total_requests, 3);
  t.same(routing.actions, { single: 1, multi: 1, other: 1 });
  t.equal(routing.triggers.large_input, 1);
  t.equal(routing.triggers.none, 2);
  t.equal(routing.triggers.large_kv, 0);
  t.equal(routing.action_percentages.multi, 33.33);
  t.match(routing.decisions, { total: 5, cache_hits: 0, cache_misses: 0, load_balancing_events: 0 });
  t.match(routing.balance, { window: '1m', members: 1, cv: 0, balanced: true });
  for (const name of ['1m', '5m', 'cumulative']) {
    const w = body['windows'][name];
    t.equal(w.requests.total, 5, `${name}: requests`);
    t.equal(w.latency.ttft_ms.count, 4, `${name}: TTFT of streams`);
    t.equal(w.latency.e2e_ms.count, 5);
    t.ok(w.latency.e2e_ms.p99 >= w.latency.e2e_ms.p50 && w.latency.e2e_ms.p50 > 0, `${name}: p50 <= p99`);
    t.equal(w.workers[fb.url].requests.total, 5);
    t.equal(w.workers[fb.url].share, 1);
    t.equal(w.workers[fb.url].node_id, 0);
  }
  t.match(body['stats'], { enabled: true, available: true, slice_seconds: 10, hdr: { significant_digits: 2, wasm: true } });

  const m = await scrape(r);
  t.equal(valueOf(m.fams, 'sgl_router_admission_total', { action: 'multi', trigger: 'large_input' }), 1);
  t.equal(valueOf(m.fams, 'sgl_router_admission_total', { action: 'other', trigger: 'none' }), 1);
});

t.test('the API key guards /stats and the bundle; the bundle redacts secrets and says everything else', async (t) => {
  const fb = await startFixtureBackend();
  t.teardown(() => fb.close());
  const secret = 'sekrit-key-123';
  const r = await routerFor(t, fb, ['--api-key', secret]);
  const auth = { authorization: `Bearer ${secret}` };
  t.equal((await post(`${r.url}/generate`, { text: 'x' }, auth)).status, 200);
  t.equal((await get(`${r.url}/stats`)).status, 401);
  t.equal((await get(`${r.url}/admin/debug/bundle`, { authorization: 'Bearer wrong' })).status, 401);
  t.equal((await send('POST', `${r.url}/stats`, '', auth)).status, 405);
  const res = await get(`${r.url}/admin/debug/bundle`, auth);
  t.equal(res.status, 200);
  t.notOk(res.body.includes(secret), 'the key appears nowhere in the bundle');
  const b = JSON.parse(res.body) as Record<string, any>;
  t.equal(b['config'].apiKey, '[redacted]');
  t.equal(b['config'].policy, 'round_robin');
  t.equal(b['versions'].node, process.version);
  t.equal(b['versions'].switchyard, '0.1.0');
  t.type(b['versions'].dependencies['hdr-histogram-js'], 'string');
  t.equal(b['workers'][0].url, fb.url);
  t.equal(b['workers'][0].healthy, true);
  t.equal(b['workers'][0].decisions, 1);
  t.equal(b['counters'].requests, 1);
  t.equal(b['stats'].windows.cumulative.requests.total, 1);
  t.equal(b['policy'].policy, 'round_robin');
  t.equal(b['hdr_checkpoint'].workers[0].url, fb.url);
  t.type(b['hdr_checkpoint'].latency['0'][3], 'string', 'E2E histogram, compressed base64');
  t.ok(b['uptime_s'] >= 0);
  t.equal(b['prometheus'].listening, true);
  t.equal(b['opentelemetry'].enabled, false);
  t.equal(b['actors'].stats.name, 'stats');
});

t.test('--disable-stats: no actor, /stats without windows, /metrics still complete (zero histograms)', async (t) => {
  const fb = await startFixtureBackend();
  t.teardown(() => fb.close());
  const r = await routerFor(t, fb, ['--disable-stats']);
  t.equal(r.observability.stats, undefined);
  t.equal((await post(`${r.url}/generate`, { text: 'x', stream: true })).status, 200);
  const body = JSON.parse((await get(`${r.url}/stats`)).body) as Record<string, any>;
  t.equal(body['windows'], null);
  t.same(body['stats'], { enabled: false, available: false });
  t.equal(body['requests'].completed, 1);
  t.equal(body['routing'].balance, null);
  const { fams } = await scrape(r);
  t.equal(valueOf(fams, 'sgl_router_requests_total', { route: '/generate' }), 1);
  t.equal(valueOf(fams, 'sgl_router_ttft_seconds_count', { worker: fb.url, gpu: '0' }), 0);
  t.equal(valueOf(fams, 'sgl_router_request_duration_seconds_count', { route: '/generate' }), 0);
});

t.test('a busy Prometheus port does not stop the router', async (t) => {
  const fb = await startFixtureBackend();
  t.teardown(() => fb.close());
  const blocker = net.createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', () => resolve()));
  t.teardown(() => blocker.close());
  const port = (blocker.address() as net.AddressInfo).port;
  const r = await startTestRouter(['--worker-urls', fb.url, '--prometheus-port', String(port), '--policy', 'random'], { observability: { stats: TEST_STATS } });
  t.teardown(() => r.close(2000));
  t.equal(r.observability.prometheus, undefined);
  const b = JSON.parse((await get(`${r.url}/admin/debug/bundle`)).body) as Record<string, any>;
  t.same(b['prometheus'], { listening: false, configured: `127.0.0.1:${port}` });
});

t.test('cache hits, misses and load-balancing events follow the decision scores convention', async (t) => {
  const fb = await startFixtureBackend();
  t.teardown(() => fb.close());
  let n = 0;
  const candidates: WorkerInfo[] = [];
  const policy = (): Policy => ({
    name: 'obs_scores',
    stateful: false,
    select(_req, ctx) {
      const k = collectAvailable(ctx.table, ctx.workers, candidates);
      if (k === 0) return null;
      n++;
      return decisionFor(candidates[0] as WorkerInfo, n % 3 === 0 ? 'balance: imbalanced' : 'cache_hit: match', { cache_hit: n % 3 === 0 ? 0 : 1, imbalanced: n % 3 === 0 ? 1 : 0, predicted_kv_mb: 7500 });
    },
  });
  registerPolicy('obs_scores', policy);
  t.teardown(() => unregisterPolicy('obs_scores'));
  const r = await startTestRouter(['--worker-urls', fb.url, '--policy', 'obs_scores', '--prometheus-port', '0'], { observability: { stats: TEST_STATS } });
  t.teardown(() => r.close(2000));
  await waitFor(() => r.ctx.registry.healthyCount() === 1, 10_000, 'a healthy worker');
  for (let i = 0; i < 6; i++) t.equal((await post(`${r.url}/generate`, { text: `q${i}` })).status, 200);
  const { fams } = await scrape(r);
  t.equal(valueOf(fams, 'sgl_router_cache_hits_total'), 4);
  t.equal(valueOf(fams, 'sgl_router_cache_misses_total'), 2);
  t.equal(valueOf(fams, 'sgl_router_load_balancing_events_total'), 2);
  t.equal(valueOf(fams, 'sgl_router_policy_decisions_total', { policy: 'obs_scores', worker: fb.url }), 6);
  r.observability.metrics.setTreeSize(fb.url, 1234);
  t.equal(valueOf((await scrape(r)).fams, 'sgl_router_tree_size', { worker: fb.url }), 1234);
});

t.test('serve --help lists the observability flags', async (t) => {
  const out = execFileSync(process.execPath, [new URL('../../../bin/switchyard.js', import.meta.url).pathname, 'serve', '--help'], { encoding: 'utf8' });
  for (const flag of ['--prometheus-port', '--disable-stats', '--otlp-endpoint', '--otlp-protocol']) t.match(out, flag);
});

t.test('config redaction: secrets by key, credentials in URLs, everything else kept', async (t) => {
  const { redactConfig } = await import('../../src/metrics/routes.js');
  t.same(
    redactConfig({
      apiKey: 'k',
      adminApiKey: undefined,
      'api-key': 'k2',
      hfAccessToken: 't',
      dbPassword: 'p',
      kvBytesPerToken: 131072,
      maxNewTokens: 5,
      rateLimitTokensPerSecond: 10,
      workerUrls: ['http://user:pw@h:1', 'http://h:2'],
      nested: { clientSecret: 'x', url: 'https://a:b@c/d' },
    }),
    {
      apiKey: '[redacted]',
      adminApiKey: undefined,
      'api-key': '[redacted]',
      hfAccessToken: '[redacted]',
      dbPassword: '[redacted]',
      kvBytesPerToken: 131072,
      maxNewTokens: 5,
      rateLimitTokensPerSecond: 10,
      workerUrls: ['http://[redacted]@h:1', 'http://h:2'],
      nested: { clientSecret: '[redacted]', url: 'https://[redacted]@c/d' },
    },
  );
});

t.test('size-aware admission reports into /stats and sgl_router_admission_total', async (t) => {
  const single = await startFixtureBackend();
  const multi = await startFixtureBackend();
  t.teardown(() => Promise.all([single.close(), multi.close()]));
  const r = await startTestRouter(['--worker-urls', single.url, multi.url, '--worker-groups', `${multi.url}=multi`, '--large-input-tokens', '10', '--policy', 'round_robin', '--prometheus-port', '0'], {
    observability: { stats: TEST_STATS },
  });
  t.teardown(() => r.close(2000));
  await waitFor(() => r.ctx.registry.healthyCount() === 2, 10_000, 'two healthy workers');
  t.equal((await post(`${r.url}/generate`, { text: 'short' })).status, 200);
  t.equal((await post(`${r.url}/generate`, { text: 'a long prompt '.repeat(20) })).status, 200);
  t.equal((await post(`${r.url}/generate`, { text: 'tiny' })).status, 200);
  const routing = (JSON.parse((await get(`${r.url}/stats`)).body) as Record<string, any>)['routing'];
  t.equal(routing.total_requests, 3);
  t.same(routing.actions, { single: 2, multi: 1 });
  t.match(routing.triggers, { none: 2, large_input: 1, large_kv: 0, memory_pressure: 0 });
  const { fams } = await scrape(r);
  t.equal(valueOf(fams, 'sgl_router_admission_total', { action: 'multi', trigger: 'large_input' }), 1);
  t.equal(valueOf(fams, 'sgl_router_admission_total', { action: 'single', trigger: 'none' }), 2);
});

t.test('cache_aware: tree sizes from the policy snapshot, hits and misses from its decision scores', async (t) => {
  const fb = await startFixtureBackend();
  t.teardown(() => fb.close());
  const r = await startTestRouter(['--worker-urls', fb.url, '--policy', 'cache_aware', '--prometheus-port', '0'], { observability: { stats: TEST_STATS } });
  t.teardown(() => r.close(2000));
  await waitFor(() => r.ctx.registry.healthyCount() === 1, 10_000, 'a healthy worker');
  await r.ctx.policy.ready();
  const prompt = 'You are a helpful assistant. Answer briefly. ';
  for (let i = 0; i < 4; i++) t.equal((await post(`${r.url}/generate`, { text: `${prompt}question ${i}` })).status, 200);
  const { fams } = await scrape(r);
  const hits = valueOf(fams, 'sgl_router_cache_hits_total') ?? 0;
  const misses = valueOf(fams, 'sgl_router_cache_misses_total') ?? 0;
  t.equal(hits + misses, 4, 'every cache-aware decision is a hit or a miss');
  t.ok(hits >= 3, `the shared prefix is followed after the first request (${hits} hits)`);
  t.ok((valueOf(fams, 'sgl_router_tree_size', { worker: fb.url }) ?? 0) >= prompt.length, 'the tree holds at least the shared prefix');
});

t.test('tree sizes are found in inline, actor and sharded snapshots', async (t) => {
  const { treeSizesOf } = await import('../../src/metrics/observability.js');
  t.same(treeSizesOf({ state: { tree_size: { a: 1 } } }), { a: 1 });
  t.same(treeSizesOf({ actor: { state: { tree_size: { b: 2 } } } }), { b: 2 });
  t.equal(treeSizesOf({ actor: null }), undefined);
  t.equal(treeSizesOf({ state: { counter: 3 } }), undefined);
  t.equal(treeSizesOf(null), undefined);
});
