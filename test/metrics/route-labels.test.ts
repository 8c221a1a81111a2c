/**
 * The `route` label: pass-through data routes are labelled by their own path, "other" only for paths
 * that are not known SGLang data routes (never a raw unknown path: bounded cardinality).
 */
import t from 'tap';
import { OTHER_ROUTE, PASSTHROUGH_PATHS, ROUTE_LABELS, routeLabelIndex } from '../../src/metrics/route-labels.js';
import { DATA_ROUTES } from '../../src/frontend/router-app.js';
import { RouterMetrics } from '../../src/metrics/counters.js';
import { startTestRouter } from '../helpers/router.js';
import { startFixtureBackend } from '../helpers/fixture-backend.js';
import { get, post, send, waitFor } from '../helpers/client.js';
import { parsePrometheusText, valueOf } from './prom-parser.js';

t.test('every data route the router forwards has its own label', async (t) => {
  for (const [path, kind] of DATA_ROUTES) {
    const i = routeLabelIndex(kind, path);
    t.not(i, OTHER_ROUTE, `${path} is not "other"`);
    if (kind === 'other') t.equal(ROUTE_LABELS[i], path, `${path} is labelled by its path`);
  }
  t.equal(ROUTE_LABELS[routeLabelIndex('generate', '/generate')], '/generate');
  t.equal(ROUTE_LABELS[routeLabelIndex('chat', '/v1/chat/completions')], '/v1/chat/completions');
  t.equal(ROUTE_LABELS[routeLabelIndex('completions', '/v1/completions')], '/v1/completions');
  t.equal(new Set(ROUTE_LABELS).size, ROUTE_LABELS.length, 'labels are distinct');
});

t.test('unknown paths are "other", never their raw path', async (t) => {
  for (const path of ['/v1/secret/abc123', '/v1/embeddings/extra', '/V1/EMBEDDINGS', '', undefined]) {
    t.equal(routeLabelIndex('other', path), OTHER_ROUTE, String(path));
  }
  t.equal(ROUTE_LABELS[routeLabelIndex('other', '/v1/rerank?x=1')], '/v1/rerank', 'a query string is ignored');
  const m = new RouterMetrics(4);
  for (let i = 0; i < 1000; i++) m.accepted('other', `/unknown/${i}`);
  t.equal(m.requests.length, ROUTE_LABELS.length, 'a fixed set of counters whatever the paths');
  t.equal(m.requests[OTHER_ROUTE], 1000);
  t.equal(ROUTE_LABELS.length, 3 + PASSTHROUGH_PATHS.length + 1);
});

t.test('through the router: pass-through requests, errors and durations by their real path', async (t) => {
  const fb = await startFixtureBackend();
  t.teardown(() => fb.close());
  fb.handler = (rec, res) => {
    if (rec.path === '/v1/rerank') {
      res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":"boom"}');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"object":"list","data":[]}');
  };
  const r = await startTestRouter(['--worker-urls', fb.url, '--policy', 'round_robin', '--prometheus-port', '0', '--disable-retries'], {
    observability: { stats: { checkpointIntervalMs: 0, askTimeoutMs: 60_000, actor: { execArgv: [] } } },
  });
  t.teardown(() => r.close(2000));
  await waitFor(() => r.ctx.registry.healthyCount() === 1, 10_000, 'a healthy worker');

  for (let i = 0; i < 3; i++) t.equal((await post(`${r.url}/v1/embeddings`, { input: `x${i}`, model: 'm' })).status, 200);
  t.equal((await post(`${r.url}/v1/score`, { text_1: 'a', text_2: 'b' })).status, 200);
  t.equal((await post(`${r.url}/v1/rerank`, { query: 'q', documents: ['d'] })).status, 500);
  t.equal((await send('POST', `${r.url}/v1/tokenize`, '{bad', { 'content-type': 'application/json' })).status, 400);
  t.equal((await post(`${r.url}/v1/not-a-route`, {})).status, 404, 'unknown paths are not forwarded at all');
  await waitFor(() => r.ctx.counters.active === 0, 10_000, 'requests to finish');

  const url = r.observability.prometheus?.url as string;
  const fams = parsePrometheusText((await get(url)).body);
  t.equal(valueOf(fams, 'sgl_router_requests_total', { route: '/v1/embeddings' }), 3);
  t.equal(valueOf(fams, 'sgl_router_requests_total', { route: '/v1/score' }), 1);
  t.equal(valueOf(fams, 'sgl_router_requests_total', { route: '/v1/rerank' }), 1);
  t.equal(valueOf(fams, 'sgl_router_requests_total', { route: '/v1/tokenize' }), 1);
  t.equal(valueOf(fams, 'sgl_router_requests_total', { route: '/classify' }), 0, 'known routes exist at 0 before use');
  t.equal(valueOf(fams, 'sgl_router_requests_total', { route: 'other' }), 0);
  t.equal(valueOf(fams, 'sgl_router_request_errors_total', { route: '/v1/rerank', error_type: 'http_500' }), 1);
  t.equal(valueOf(fams, 'sgl_router_request_errors_total', { route: '/v1/tokenize', error_type: 'invalid_json' }), 1);
  t.equal(valueOf(fams, 'sgl_router_request_duration_seconds_count', { route: '/v1/embeddings' }), 3);
  t.equal(valueOf(fams, 'sgl_router_request_duration_seconds_count', { route: '/v1/rerank' }), 1);
  t.equal(valueOf(fams, 'sgl_router_request_duration_seconds_count', { route: 'other' }), 0);
  const routes = new Set(fams.get('sgl_router_requests_total')?.samples.map((s) => s.labels['route']));
  t.same([...routes].sort(), [...ROUTE_LABELS].sort(), 'exactly the known labels');

  const stats = JSON.parse((await get(`${r.url}/stats`)).body) as { requests: { by_route: Record<string, number> } };
  t.equal(stats.requests.by_route['/v1/embeddings'], 3);
  t.equal(stats.requests.by_route['other'], 0);
});
