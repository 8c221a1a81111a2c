/**
 * The traces API through a real router on port 0 in front of scripted backends: every request's trace
 * names the worker that served it, the node id agrees with /list_workers, statuses follow the request.
 */
import t, { type Test } from 'tap';
import http from 'node:http';
import net from 'node:net';
import { startFixtureBackend, type FixtureBackend } from '../helpers/fixture-backend.js';
import { startTestRouter } from '../helpers/router.js';
import { get, post, send, postAndAbort, waitFor, type RawResponse } from '../helpers/client.js';
import type { StartedRouter } from '../../src/router.js';
import { RequestTracker, handoverFor } from '../../src/tracking/tracker.js';
import { EV_FINISHED, EventReader, type EventBatch, type EventWriter } from '../../src/tracking/events.js';
import type { CompletionRecord } from '../../src/proxy/completion.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function json(r: RawResponse): Json {
  return JSON.parse(r.body) as Json;
}

async function fleet(t: Test, extra: string[] = []): Promise<{ a: FixtureBackend; b: FixtureBackend; r: StartedRouter }> {
  const a = await startFixtureBackend(0, 'a');
  const b = await startFixtureBackend(0, 'b');
  const r = await startTestRouter(['--worker-urls', a.url, b.url, '--policy', 'round_robin', ...extra]);
  t.teardown(async () => {
    await r.close(0);
    await a.close();
    await b.close();
  });
  return { a, b, r };
}

async function nodeIdsByUrl(r: StartedRouter): Promise<Map<string, number>> {
  const lw = json(await get(`${r.url}/list_workers`));
  return new Map((lw['workers'] as Json[]).map((w) => [w['url'] as string, w['node_id'] as number]));
}

t.test('every request answers with the worker that served it, node ids as /list_workers says', async (t) => {
  const { r } = await fleet(t);
  const nodes = await nodeIdsByUrl(r);
  const served = new Map<string, string>();
  const perNode = new Map<string, number>();
  const N = 24;
  for (let i = 0; i < N; i++) {
    const stream = i % 3 === 0;
    const headers: Record<string, string> = i % 2 === 0 ? { 'x-request-id': `trace-test-${i}` } : {};
    const path = i % 4 === 1 ? '/v1/chat/completions' : '/generate';
    const body = path === '/generate' ? { text: `prompt ${i}`, stream } : { messages: [{ role: 'user', content: `p${i}` }], stream };
    const res = await post(`${r.url}${path}`, body, headers);
    t.equal(res.status, 200);
    const id = res.headers['x-request-id'] as string;
    const worker = res.headers['x-sglang-worker'] as string;
    if (i % 2 === 0) t.equal(id, `trace-test-${i}`);
    served.set(id, worker);
    const node = String(nodes.get(worker));
    perNode.set(node, (perNode.get(node) ?? 0) + 1);
    // Asked right after the response, with no wait: the trace is already final.
    const tr = await get(`${r.url}/v1/traces/${id}`);
    t.equal(tr.status, 200, `trace of ${id}`);
    const trace = json(tr);
    t.equal(trace['request_id'], id);
    t.equal(trace['status'], 'completed', `${id} completed as soon as its response ended`);
    t.equal(trace['worker_url'], worker, 'the X-SGLang-Worker of the response');
    t.equal(trace['node_id'], nodes.get(worker), 'the node id /list_workers reports');
    t.equal(trace['routing_policy'], 'round_robin');
    t.equal(trace['stream'], stream);
    t.equal(trace['route'], path === '/generate' ? 'generate' : 'chat');
    t.equal(trace['http_status'], 200);
    t.equal(trace['attempts'], 1);
    t.match(trace['reason'], /round_robin/);
    t.equal(new Date(trace['timestamp'] as string).toISOString(), trace['timestamp'], 'ISO 8601 timestamp');
    t.ok(Math.abs((trace['timestamp_ms'] as number) - Date.now()) < 60_000);
    t.ok(trace['queue_ms'] >= 0 && trace['ttft_ms'] >= trace['queue_ms'] && trace['e2e_ms'] >= trace['ttft_ms'], 'queue <= ttft <= e2e');
    if (path === '/generate') {
      t.equal(trace['input_tokens'], 10, 'from meta_info');
      t.equal(trace['cached_tokens'], 3);
      t.equal(trace['output_tokens'], stream ? 5 : 2);
    }
    t.equal(trace['error_code'], null);
  }

  // batch: request order, unknown ids skipped, duplicates once
  const ids = [...served.keys()];
  const batch = await post(`${r.url}/v1/traces/batch`, { request_ids: [ids[3], 'unknown-id', ...ids, ids[0]] });
  t.equal(batch.status, 200);
  const traces = json(batch) as unknown as Json[];
  t.same(
    traces.map((x) => x['request_id']),
    [ids[3], ...ids.filter((x) => x !== ids[3])],
  );
  for (const x of traces) t.equal(x['worker_url'], served.get(x['request_id'] as string));
  t.same(json(await post(`${r.url}/v1/traces/batch`, { request_ids: [] })), []);

  // stats match the run
  const stats = json(await get(`${r.url}/v1/traces/stats`));
  t.equal(stats['total_requests'], N);
  t.equal(stats['active_traces'], 0);
  t.same(stats['requests_per_node'], Object.fromEntries([...perNode].sort()));
  t.same(stats['requests_per_status'], { pending: 0, streaming: 0, completed: N, failed: 0, aborted: 0 });
  t.equal(stats['recorded_total'], N);
  t.equal(stats['log'], null, 'no trace log unless --trace-log-dir');

  // list: newest first, filters
  const recent = json(await get(`${r.url}/v1/traces?limit=5`)) as unknown as Json[];
  t.same(
    recent.map((x) => x['request_id']),
    ids.slice(-5).reverse(),
  );
  t.equal((json(await get(`${r.url}/v1/traces`)) as unknown as Json[]).length, N, 'default limit covers the run');
  for (const [node, count] of perNode) {
    const list = json(await get(`${r.url}/v1/traces?node_id=${node}&limit=1000`)) as unknown as Json[];
    t.equal(list.length, count, `node ${node}`);
    t.ok(list.every((x) => String(x['node_id']) === node));
  }
  t.equal((json(await get(`${r.url}/v1/traces?status=completed&limit=1000`)) as unknown as Json[]).length, N);
  t.same(json(await get(`${r.url}/v1/traces?status=failed`)), []);
});

t.test('node ids from --worker-node-map show in traces and /list_workers alike', async (t) => {
  const a = await startFixtureBackend(0, 'a');
  const b = await startFixtureBackend(0, 'b');
  const r = await startTestRouter(['--worker-urls', a.url, b.url, '--policy', 'round_robin', '--worker-node-map', JSON.stringify({ [a.url]: 7, [b.url]: 3 })]);
  t.teardown(async () => {
    await r.close(0);
    await a.close();
    await b.close();
  });
  const nodes = await nodeIdsByUrl(r);
  t.same(Object.fromEntries(nodes), { [a.url]: 7, [b.url]: 3 });
  for (let i = 0; i < 4; i++) {
    const res = await post(`${r.url}/generate`, { text: 'x' }, { 'x-request-id': `map-${i}` });
    const trace = json(await get(`${r.url}/v1/traces/map-${i}`));
    t.equal(trace['node_id'], res.headers['x-sglang-worker'] === a.url ? 7 : 3);
  }
  t.same(json(await get(`${r.url}/v1/traces/stats`))['requests_per_node'], { 3: 2, 7: 2 });
});

t.test('pending while waiting for the worker, streaming once bytes flow, then completed', async (t) => {
  const { a, b, r } = await fleet(t);
  let release: (() => void) | undefined;
  for (const fb of [a, b]) {
    fb.handler = (req, res) => {
      // Hold the answer until the test has seen the pending trace; then stream slowly.
      release = () => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        let i = 0;
        const tick = setInterval(() => {
          i++;
          res.write(`data: ${JSON.stringify({ text: 'x'.repeat(i), meta_info: { id: req.json?.['rid'], prompt_tokens: 4, completion_tokens: i, cached_tokens: 0 } })}\n\n`);
          if (i === 30) {
            clearInterval(tick);
            res.end('data: [DONE]\n\n');
          }
        }, 20);
        res.on('close', () => clearInterval(tick));
      };
    };
  }
  let firstChunk: (() => void) | undefined;
  const sawChunk = new Promise<void>((resolve) => (firstChunk = resolve));
  const done = new Promise<string>((resolve, reject) => {
    const req = http.request(`${r.url}/generate`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': 'live-1' }, agent: false }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => {
        body += c.toString();
        firstChunk?.();
      });
      res.on('end', () => resolve(body));
    });
    req.on('error', reject);
    req.end(JSON.stringify({ text: 'hello', stream: true }));
  });
  await waitFor(() => release !== undefined, 5000, 'the backend to get the request');
  const pending = json(await get(`${r.url}/v1/traces/live-1`));
  t.equal(pending['status'], 'pending');
  t.ok(typeof pending['node_id'] === 'number' && typeof pending['worker_url'] === 'string', 'pending traces already name their worker');
  t.equal(pending['e2e_ms'], null);
  t.equal(json(await get(`${r.url}/v1/traces/stats`))['active_traces'], 1);
  release!();
  await sawChunk;
  const streaming = json(await get(`${r.url}/v1/traces/live-1`));
  t.equal(streaming['status'], 'streaming');
  t.ok(streaming['ttft_ms'] > 0);
  t.same((json(await get(`${r.url}/v1/traces?status=streaming`)) as unknown as Json[]).map((x) => x['request_id']), ['live-1']);
  await done;
  const final = json(await get(`${r.url}/v1/traces/live-1`));
  t.equal(final['status'], 'completed');
  t.equal(final['output_tokens'], 30);
});

t.test('aborted and failed requests carry the right status', async (t) => {
  const { a, b, r } = await fleet(t);
  for (const fb of [a, b]) {
    fb.streamChunks = 200;
    fb.chunkDelayMs = 5;
  }
  const aborted = await postAndAbort(`${r.url}/generate`, { text: 'abort me', stream: true, rid: 'abort-1' }, 2);
  t.equal(aborted.status, 200);
  await waitFor(async () => json(await get(`${r.url}/v1/traces/abort-1`))['status'] === 'aborted', 5000, 'the aborted trace');
  const ab = json(await get(`${r.url}/v1/traces/abort-1`));
  t.equal(typeof ab['worker_url'], 'string');
  t.equal(ab['http_status'], null, 'the client saw no complete answer');

  for (const fb of [a, b]) {
    fb.handler = (_req, res) => {
      res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":"boom"}');
    };
  }
  const failed = await post(`${r.url}/generate`, { text: 'fail me' }, { 'x-request-id': 'fail-1' });
  t.equal(failed.status, 500);
  const fl = json(await get(`${r.url}/v1/traces/fail-1`));
  t.equal(fl['status'], 'failed');
  t.equal(fl['http_status'], 500);
  t.equal(fl['error_code'], 'http_500');
  t.equal(fl['worker_url'], failed.headers['x-sglang-worker']);

  const stats = json(await get(`${r.url}/v1/traces/stats`));
  t.same(stats['requests_per_status'], { pending: 0, streaming: 0, completed: 0, failed: 1, aborted: 1 });
});

t.test('a request retried on another worker is traced on the worker that answered', async (t) => {
  const { a, b, r } = await fleet(t);
  const nodes = await nodeIdsByUrl(r);
  await a.kill(); // refuses connections now; the health checker has not noticed yet
  let retried: Json | undefined;
  for (let i = 0; i < 4 && retried === undefined; i++) {
    const res = await post(`${r.url}/generate`, { text: 'x' }, { 'x-request-id': `retry-${i}` });
    t.equal(res.status, 200);
    t.equal(res.headers['x-sglang-worker'], b.url, 'answered by the live worker');
    const trace = json(await get(`${r.url}/v1/traces/retry-${i}`));
    t.equal(trace['worker_url'], b.url);
    t.equal(trace['node_id'], nodes.get(b.url));
    if (trace['attempts'] === 2) retried = trace;
  }
  t.ok(retried !== undefined, 'one request was retried after a refused connection');
  t.match(retried, { status: 'completed', attempts: 2 }, 'the reason is the second decision');
  t.same(json(await get(`${r.url}/v1/traces/stats`))['requests_per_node'], { [String(nodes.get(b.url))]: json(await get(`${r.url}/v1/traces/stats`))['total_requests'] }, 'every trace on the live node');
});

t.test('a request no worker could take is traced as failed, with no node', async (t) => {
  const dead = await startFixtureBackend(0, 'dead');
  const deadUrl = dead.url;
  await dead.close();
  const records: CompletionRecord[] = [];
  const r = await startTestRouter(['--worker-urls', deadUrl, '--policy', 'random'], { sinks: [{ record: (x) => records.push(x) }] });
  t.teardown(() => r.close(0));
  const res = await post(`${r.url}/generate`, { text: 'x' }, { 'x-request-id': 'nobody-1' });
  t.equal(res.status, 503);
  const tr = json(await get(`${r.url}/v1/traces/nobody-1`));
  t.match(tr, { status: 'failed', node_id: null, worker_url: null, http_status: 503, error_code: 'no_healthy_workers', attempts: 0 });
  t.same(json(await get(`${r.url}/v1/traces/stats`))['requests_per_node'], { none: 1 });
  t.equal(records.length, 1, 'the caller-supplied sink still gets every record beside the tracker');
});

t.test('bad input on every endpoint: JSON errors with stable codes', async (t) => {
  const { r } = await fleet(t);
  const cases: [string, Promise<RawResponse>, number, string][] = [
    ['id with a space', get(`${r.url}/v1/traces/bad%20id`), 400, 'invalid_request_id'],
    ['id too long', get(`${r.url}/v1/traces/${'x'.repeat(129)}`), 400, 'invalid_request_id'],
    ['broken percent-encoding', get(`${r.url}/v1/traces/%E0%A4%A`), 400, 'invalid_request_id'],
    ['unknown id', get(`${r.url}/v1/traces/never-seen`), 404, 'trace_not_found'],
    ['batch: not JSON', post(`${r.url}/v1/traces/batch`, '{"request_ids": ['), 400, 'invalid_json'],
    ['batch: empty body', send('POST', `${r.url}/v1/traces/batch`, '', { 'content-type': 'application/json' }), 400, 'invalid_json'],
    ['batch: array body', post(`${r.url}/v1/traces/batch`, ['a']), 400, 'invalid_request'],
    ['batch: no request_ids', post(`${r.url}/v1/traces/batch`, {}), 400, 'invalid_request'],
    ['batch: request_ids not a list', post(`${r.url}/v1/traces/batch`, { request_ids: 'a' }), 400, 'invalid_request'],
    ['batch: a number', post(`${r.url}/v1/traces/batch`, { request_ids: ['a', 5] }), 400, 'invalid_request_id'],
    ['batch: a bad id', post(`${r.url}/v1/traces/batch`, { request_ids: ['a b'] }), 400, 'invalid_request_id'],
    ['batch: too many ids', post(`${r.url}/v1/traces/batch`, { request_ids: Array.from({ length: 1001 }, (_, i) => `id-${i}`) }), 400, 'invalid_request'],
    ['batch: unknown field', post(`${r.url}/v1/traces/batch`, { request_ids: [], ids: [] }), 400, 'invalid_request'],
    ['batch: form body', send('POST', `${r.url}/v1/traces/batch`, 'request_ids=a', { 'content-type': 'application/x-www-form-urlencoded' }), 415, 'unsupported_media_type'],
    ['list: limit not a number', get(`${r.url}/v1/traces?limit=abc`), 400, 'invalid_request'],
    ['list: limit 0', get(`${r.url}/v1/traces?limit=0`), 400, 'invalid_request'],
    ['list: limit too large', get(`${r.url}/v1/traces?limit=1001`), 400, 'invalid_request'],
    ['list: negative limit', get(`${r.url}/v1/traces?limit=-1`), 400, 'invalid_request'],
    ['list: node_id not a number', get(`${r.url}/v1/traces?node_id=gpu0`), 400, 'invalid_request'],
    ['list: unknown status', get(`${r.url}/v1/traces?status=done`), 400, 'invalid_request'],
    ['list: unknown parameter', get(`${r.url}/v1/traces?nodeid=1`), 400, 'invalid_request'],
    ['list: repeated parameter', get(`${r.url}/v1/traces?limit=1&limit=2`), 400, 'invalid_request'],
    ['stats: POST', send('POST', `${r.url}/v1/traces/stats`, '{}'), 405, 'method_not_allowed'],
    ['batch: GET', get(`${r.url}/v1/traces/batch`), 405, 'method_not_allowed'],
    ['list: DELETE', send('DELETE', `${r.url}/v1/traces`, undefined), 405, 'method_not_allowed'],
    ['one: PUT', send('PUT', `${r.url}/v1/traces/abc`, '{}'), 405, 'method_not_allowed'],
  ];
  for (const [what, p, status, code] of cases) {
    const res = await p;
    t.equal(res.status, status, `${what}: status`);
    t.match(res.headers['content-type'], /application\/json/, `${what}: JSON`);
    t.equal(json(res)['error']?.['code'], code, `${what}: code`);
  }
  // An oversized batch body (declared and chunked) is refused before it is read.
  for (const framing of ['declared', 'chunked'] as const) {
    const reply = await rawPost(r.port, '/v1/traces/batch', 300 * 1024, framing);
    t.match(reply, /^HTTP\/1\.1 413/, `oversized ${framing} body`);
    t.match(reply, /payload_too_large/);
  }
  const wrong = await send('POST', `${r.url}/v1/traces/stats`, '{}');
  t.equal(wrong.headers['allow'], 'GET');
  t.equal(json(await get(`${r.url}/v1/traces/stats`))['total_requests'], 0, 'none of that created a trace');
  t.same(json(await get(`${r.url}/v1/traces?node_id=none`)), [], 'node_id=none is a valid filter');
});

t.test('with --api-key the traces API needs the key', async (t) => {
  const { r } = await fleet(t, ['--api-key', 'sekret']);
  const auth = { authorization: 'Bearer sekret' };
  await post(`${r.url}/generate`, { text: 'x' }, { ...auth, 'x-request-id': 'k-1' });
  for (const [method, path, body] of [
    ['GET', '/v1/traces/k-1', undefined],
    ['GET', '/v1/traces', undefined],
    ['GET', '/v1/traces/stats', undefined],
    ['POST', '/v1/traces/batch', '{"request_ids":["k-1"]}'],
  ] as const) {
    const denied = await send(method, `${r.url}${path}`, body, { 'content-type': 'application/json' });
    t.equal(denied.status, 401, `${method} ${path} without the key`);
    t.equal(json(denied)['error']['code'], 'unauthorized');
    const ok = await send(method, `${r.url}${path}`, body, { 'content-type': 'application/json', ...auth });
    t.equal(ok.status, 200, `${method} ${path} with the key`);
  }
});

t.test('--no-enable-request-tracking: no tracker, no hook, no sink; the API says so', async (t) => {
  const b = await startFixtureBackend();
  const r = await startTestRouter(['--worker-urls', b.url, '--policy', 'random', '--no-enable-request-tracking']);
  t.teardown(async () => {
    await r.close(0);
    await b.close();
  });
  t.equal(r.ctx.progress, undefined, 'no progress hook on the hot path');
  t.notOk(
    r.ctx.sinks.some((x) => x instanceof RequestTracker),
    'no tracker among the completion sinks',
  );
  const res = await post(`${r.url}/generate`, { text: 'x' }, { 'x-request-id': 'off-1' });
  t.equal(res.status, 200);
  for (const path of ['/v1/traces/off-1', '/v1/traces', '/v1/traces/stats']) {
    const g = await get(`${r.url}${path}`);
    t.equal(g.status, 404);
    t.equal(json(g)['error']['code'], 'tracking_disabled');
  }
  const bt = await post(`${r.url}/v1/traces/batch`, { request_ids: ['off-1'] });
  t.equal(json(bt)['error']['code'], 'tracking_disabled');
});

t.test('LRU and TTL bounds through the router', async (t) => {
  const { r } = await fleet(t, ['--max-trace-entries', '3', '--trace-ttl-seconds', '0.3']);
  for (let i = 0; i < 5; i++) await post(`${r.url}/generate`, { text: 'x' }, { 'x-request-id': `lru-${i}` });
  const stats = json(await get(`${r.url}/v1/traces/stats`));
  t.equal(stats['total_requests'], 3);
  t.equal(stats['evicted_lru'], 2);
  t.equal(stats['max_entries'], 3);
  t.equal((await get(`${r.url}/v1/traces/lru-0`)).status, 404, 'evicted');
  t.equal((await get(`${r.url}/v1/traces/lru-4`)).status, 200);
  await new Promise((resolve) => setTimeout(resolve, 450));
  t.equal((await get(`${r.url}/v1/traces/lru-4`)).status, 404, 'expired after the ttl');
  const after = json(await get(`${r.url}/v1/traces/stats`));
  t.equal(after['total_requests'], 0);
  t.equal(after['expired_ttl'], 3);
});

t.test('events wait at most half of the log flush interval before crossing; an explicit interval wins', async (t) => {
  t.equal(handoverFor(100), 50, 'the default flush (100 ms): 50 ms batches, the log flushes every 50 ms');
  t.equal(handoverFor(1000), 50, 'a longer flush interval does not lengthen the batches');
  t.equal(handoverFor(40), 20, 'a short flush interval shortens the batches');
  t.equal(handoverFor(1), 0, 'a very short one crosses every event-loop turn');
  t.equal(handoverFor(100, 5), 5);
  t.equal(handoverFor(100, 0), 0);
});

type TestWorker = NonNullable<Parameters<RequestTracker['decided']>[0]['worker']>;
const testWorker = { url: 'http://w0:1', nodeId: 0, slot: 0 } as unknown as TestWorker;

function decidedView(requestId: string, arrivedAt: number, attempts = 1, worker: TestWorker = testWorker): Parameters<RequestTracker['decided']>[0] {
  return {
    requestId, route: 'generate', features: { requestId, route: 'generate', text: 'x', inputTokens: 3, maxNewTokens: 4, stream: false, model: undefined },
    timestamp: 1_700_000_000_000 + arrivedAt, arrivedAt, decidedAt: arrivedAt + 0.25, attempts, decision: { reason: `because ${requestId}`, scores: { load: arrivedAt } } as never, worker,
    traceHold: 0, // as the router's request state: the tracker may hold its decision
  };
}

/** The record of the request whose state is `view` (finish.ts copies the state's hold mark). */
function completion(view: Parameters<RequestTracker['decided']>[0], attempts = 1, worker: TestWorker = testWorker): CompletionRecord {
  const { requestId, arrivedAt } = view;
  return {
    traceHold: view.traceHold,
    requestId, route: 'generate', stream: false, workerUrl: worker.url, slot: worker.slot, nodeId: worker.nodeId, policy: 'random', reason: `because ${requestId}`, scores: { load: arrivedAt },
    status: 'completed', httpStatus: 200, errorCode: undefined, errorMessage: undefined, timestamp: 1_700_000_000_000 + arrivedAt, arrivedAt, decidedAt: arrivedAt + 0.25, sentAt: arrivedAt + 0.5,
    firstTokenAt: 0, finishedAt: arrivedAt + 4, inputTokens: 3, outputTokens: 4, cachedTokens: 0, queueTime: undefined, itl: undefined, attempts,
  };
}

function quietTracker(t: Test): RequestTracker {
  // A 60 s hand-over: only the size bounds and the queries make events cross.
  const tracker = new RequestTracker({ policy: 'random', maxEntries: 10_000, ttlSeconds: 60, logDir: undefined, logMaxBytes: 1 << 20, logMaxFiles: 2, flushMs: 100, handoverMs: 60_000 });
  t.teardown(() => tracker.close());
  return tracker;
}

t.test('a burst crosses to the tracker thread before the hand-over timer, in bounded batches', async (t) => {
  const tracker = quietTracker(t);
  await tracker.ready();
  for (let i = 0; i < 6000; i++) {
    const v = decidedView(`burst-${i}`, i);
    tracker.decided(v);
    tracker.record(completion(v));
  }
  await new Promise((resolve) => setImmediate(resolve));
  await new Promise((resolve) => setImmediate(resolve));
  const sent = tracker.actor.stats().callsSent;
  t.ok(sent >= 2, `${sent} crossings already, with a 60 s hand-over timer (6,000 requests, ~1,500 per crossing)`);
  t.ok(sent <= 8, 'each crossing carries many requests');
  const stats = await tracker.stats();
  t.equal(stats.total_requests, 6000, 'every request arrived');
});

t.test('decisions held back for the hand-over are bounded too: requests still in flight cross as pending', async (t) => {
  const tracker = quietTracker(t);
  await tracker.ready();
  for (let i = 0; i < 3000; i++) tracker.decided(decidedView(`flight-${i}`, i));
  await new Promise((resolve) => setImmediate(resolve));
  await new Promise((resolve) => setImmediate(resolve));
  t.ok(tracker.actor.stats().callsSent >= 2, 'held decisions crossed before the timer');
  const stats = await tracker.stats();
  t.equal(stats.total_requests, 3000);
  t.match(stats.requests_per_status, { pending: 3000, completed: 0 });
});

t.test('a decision and its outcome in one hand-over make the same trace as when they cross apart', async (t) => {
  const tracker = quietTracker(t);
  await tracker.ready();
  const other = { url: 'http://w1:2', nodeId: 1, slot: 1 } as unknown as TestWorker;
  // Together: decided and finished before any hand-over (one FINISHED event).
  const together = decidedView('together', 10);
  const writer = (tracker as unknown as { events: EventWriter }).events;
  tracker.decided(together);
  t.equal(writer.numbers, 0, 'the decision is held, nothing written yet');
  tracker.record(completion(together));
  const batch = writer.take();
  t.equal(batch?.nums[0], EV_FINISHED, 'one FINISHED event carries decision and outcome');
  t.equal(new EventReader([...writer.dictionary]).apply(batch as EventBatch, { decided: () => t.fail('no DECIDED'), firstByte: () => t.fail('no FIRST_BYTE'), finished: () => {} } as never), 1, 'and nothing else');
  (tracker as unknown as { actor: { tell(m: unknown): void } }).actor.tell({ t: 'events', e: batch });
  // Apart: a query between them hands the decision over first (DECIDED, then OUTCOME).
  const apart = decidedView('apart', 10);
  tracker.decided(apart);
  t.equal(JSON.parse((await tracker.get('apart')) as string).status, 'pending', 'read-your-writes: a held decision is handed over before a query');
  tracker.record(completion(apart));
  // A retry on another worker, both decisions while held: the trace follows the request.
  const retried = decidedView('retried', 10);
  tracker.decided(retried);
  Object.assign(retried, { attempts: 2, worker: other });
  tracker.decided(retried);
  tracker.record(completion(retried, 2, other));
  // Views made per event (front-end threads) carry no mark: written at once, completed apart.
  const { traceHold: _unused, ...perEvent } = decidedView('per-event', 10);
  tracker.decided(perEvent);
  const { traceHold: _unused2, ...perEventRec } = completion(decidedView('per-event', 10));
  tracker.record(perEventRec);
  const tTogether = JSON.parse((await tracker.get('together')) as string) as Json;
  const tApart = JSON.parse((await tracker.get('apart')) as string) as Json;
  const tRetried = JSON.parse((await tracker.get('retried')) as string) as Json;
  const tPerEvent = JSON.parse((await tracker.get('per-event')) as string) as Json;
  for (const k of Object.keys(tApart)) if (k !== 'request_id' && k !== 'reason') t.same(tTogether[k], tApart[k], `field ${k}`);
  for (const k of Object.keys(tApart)) if (k !== 'request_id' && k !== 'reason') t.same(tPerEvent[k], tApart[k], `per-event field ${k}`);
  t.equal(tTogether['routing_policy'], 'random');
  t.equal(tTogether['reason'], 'because together');
  t.same(tTogether['scores'], { load: 10 });
  t.equal(tTogether['status'], 'completed');
  t.equal(tTogether['queue_ms'], 0.25);
  t.equal(tRetried['worker_url'], 'http://w1:2');
  t.equal(tRetried['node_id'], 1);
  t.equal(tRetried['attempts'], 2);
  const stats = await tracker.stats();
  t.equal(stats.total_requests, 4);
  t.match(stats.requests_per_status, { pending: 0, completed: 4 });
});

t.test('two requests with the same id in flight at once: each decision lands, the later request owns the trace', async (t) => {
  const tracker = quietTracker(t);
  await tracker.ready();
  const first = decidedView('dup', 10);
  const second = decidedView('dup', 20); // another request, same id, while the first is in flight
  tracker.decided(first);
  tracker.decided(second);
  tracker.record(completion(first));
  const t1 = JSON.parse((await tracker.get('dup')) as string) as Json;
  t.equal(t1['status'], 'pending', 'the first ended; the second, still in flight, owns the id now');
  t.equal(t1['timestamp_ms'], 1_700_000_000_020);
  tracker.record(completion(second));
  const t2 = JSON.parse((await tracker.get('dup')) as string) as Json;
  t.equal(t2['status'], 'completed');
  t.equal(t2['timestamp_ms'], 1_700_000_000_020, "the later request's decision and outcome");
  t.equal(t2['reason'], 'because dup');
});

t.test('a stream: its held decision crosses before its first byte, so it shows as streaming', async (t) => {
  const tracker = quietTracker(t);
  await tracker.ready();
  const v = decidedView('streamed', 10);
  tracker.decided(v);
  tracker.firstByte(v, 12);
  const tr = JSON.parse((await tracker.get('streamed')) as string) as Json;
  t.equal(tr['status'], 'streaming');
  t.equal(tr['ttft_ms'], 2);
  tracker.record({ ...completion(v), firstTokenAt: 12 });
  t.equal((JSON.parse((await tracker.get('streamed')) as string) as Json)['status'], 'completed');
});

/** A POST of `bytes` body bytes over a raw socket (a refused body may close the socket mid-write). */
function rawPost(port: number, path: string, bytes: number, framing: 'declared' | 'chunked'): Promise<string> {
  return new Promise<string>((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => {
      const head = framing === 'declared' ? `Content-Length: ${bytes}` : 'Transfer-Encoding: chunked';
      s.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n${head}\r\n\r\n`);
      const chunk = 'x'.repeat(16 * 1024);
      for (let sent = 0; sent < bytes && !s.destroyed; sent += chunk.length) {
        s.write(framing === 'declared' ? chunk : `${chunk.length.toString(16)}\r\n${chunk}\r\n`);
      }
      if (framing === 'chunked' && !s.destroyed) s.write('0\r\n\r\n');
    });
    let data = '';
    s.on('data', (d) => (data += d.toString()));
    s.on('close', () => resolve(data));
    s.on('error', () => resolve(data));
    setTimeout(() => s.destroy(), 3000);
  });
}
