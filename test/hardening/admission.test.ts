/**
 * Admission limits through real sockets: --max-concurrent-requests with a FIFO queue (429 queue_full,
 * 408 queue_timeout, a client leaving the queue), --rate-limit-tokens-per-second (requests over the rate
 * wait in the same queue, as in sgl-router).
 */
import http from 'node:http';
import t from 'tap';
import { startSimFleet } from '../../src/sim/fleet.js';
import { startTestRouter } from '../helpers/router.js';
import { post, waitFor } from '../helpers/client.js';

const body = (i: number) => ({ text: `admission ${i} `.repeat(10), sampling_params: { max_new_tokens: 4 } });

t.test('concurrency limit: 2 run, 2 wait then run, the rest get 429 queue_full', async (t) => {
  const fleet = await startSimFleet({ count: 1, timeScale: 0.01, latencyMs: 400 });
  const r = await startTestRouter(['--prometheus-port', '0', '--worker-urls', ...fleet.urls, '--max-concurrent-requests', '2', '--queue-size', '2', '--queue-timeout-secs', '30']);
  t.teardown(async () => {
    await r.close(0);
    await fleet.close();
  });
  const results = await Promise.all(Array.from({ length: 6 }, (_, i) => post(`${r.url}/generate`, body(i))));
  const statuses = results.map((x) => x.status).sort();
  t.same(statuses, [200, 200, 200, 200, 429, 429]);
  for (const x of results.filter((y) => y.status === 429)) t.equal(JSON.parse(x.body).error.code, 'queue_full');
  t.equal(r.ctx.limits?.active, 0, 'every slot released');
  // (a front-end thread counts a request finished just after its response left)
  await waitFor(() => r.ctx.counters.active === 0, 5000, 'no active request');
});

t.test('queue timeout: 408 queue_timeout', async (t) => {
  const fleet = await startSimFleet({ count: 1, timeScale: 0.01, latencyMs: 600 });
  const r = await startTestRouter(['--prometheus-port', '0', '--worker-urls', ...fleet.urls, '--max-concurrent-requests', '1', '--queue-size', '10', '--queue-timeout-secs', '0.1']);
  t.teardown(async () => {
    await r.close(0);
    await fleet.close();
  });
  const results = await Promise.all(Array.from({ length: 3 }, (_, i) => post(`${r.url}/generate`, body(i))));
  t.same(results.map((x) => x.status).sort(), [200, 408, 408]);
  for (const x of results.filter((y) => y.status === 408)) t.equal(JSON.parse(x.body).error.code, 'queue_timeout');
  // (a front-end thread counts a request finished just after its response left)
  await waitFor(() => r.ctx.counters.active === 0, 5000, 'no active request');
  t.equal(r.ctx.limits?.queued, 0);
});

t.test('a client that disconnects while queued leaves the queue', async (t) => {
  const fleet = await startSimFleet({ count: 1, timeScale: 0.01, latencyMs: 800 });
  const r = await startTestRouter(['--prometheus-port', '0', '--worker-urls', ...fleet.urls, '--max-concurrent-requests', '1', '--queue-size', '10', '--queue-timeout-secs', '30']);
  t.teardown(async () => {
    await r.close(0);
    await fleet.close();
  });
  const first = post(`${r.url}/generate`, body(0));
  await waitFor(() => r.ctx.limits?.active === 1);
  const req = http.request(`${r.url}/generate`, { method: 'POST', headers: { 'content-type': 'application/json' }, agent: false });
  req.on('error', () => undefined);
  req.end(JSON.stringify(body(1)));
  await waitFor(() => r.ctx.limits?.queued === 1, 5000, 'queued');
  req.destroy();
  await waitFor(() => r.ctx.limits?.queued === 0, 5000, 'left the queue');
  t.equal((await first).status, 200);
  // (a front-end thread counts a request finished just after its response left)
  await waitFor(() => r.ctx.counters.active === 0, 5000, 'no active request');
  t.equal(r.ctx.counters.aborted, 1);
  t.equal(r.ctx.limits?.stats.cancelled, 1);
  t.equal(fleet.servers[0]!.stats().dataRequests, 1, 'the abandoned request never reached a worker');
});

t.test('rate limit: requests over the rate wait in the queue and are served as tokens refill', async (t) => {
  const fleet = await startSimFleet({ count: 1, timeScale: 0.01 });
  const r = await startTestRouter(['--prometheus-port', '0', '--worker-urls', ...fleet.urls, '--rate-limit-tokens-per-second', '10']);
  t.teardown(async () => {
    await r.close(0);
    await fleet.close();
  });
  const started = Date.now();
  const results = await Promise.all(Array.from({ length: 16 }, (_, i) => post(`${r.url}/generate`, body(i))));
  const elapsedMs = Date.now() - started;
  t.same(results.filter((x) => x.status !== 200).map((x) => x.body), [], 'every request served (none refused)');
  t.ok(elapsedMs >= 450, `the 6 beyond the burst of 10 waited for tokens at 10/s (${elapsedMs} ms)`);
  t.ok((r.ctx.limits?.stats.queued ?? 0) >= 1, `requests waited in the queue (${r.ctx.limits?.stats.queued})`);
  t.equal(r.ctx.limits?.stats.rateLimited, 0);
  // (a front-end thread counts a request finished just after its response left)
  await waitFor(() => r.ctx.counters.active === 0, 5000, 'no active request');
  t.equal(r.ctx.limits?.queued, 0);
});

t.test('rate limit: 429 queue_full beyond the queue, 408 queue_timeout after waiting, 429 rate_limited without a queue', async (t) => {
  const fleet = await startSimFleet({ count: 1, timeScale: 0.01 });
  const full = await startTestRouter(['--prometheus-port', '0', '--worker-urls', ...fleet.urls, '--rate-limit-tokens-per-second', '4', '--queue-size', '2', '--queue-timeout-secs', '30']);
  const slow = await startTestRouter(['--prometheus-port', '0', '--worker-urls', ...fleet.urls, '--rate-limit-tokens-per-second', '1', '--queue-timeout-secs', '0.2']);
  const none = await startTestRouter(['--prometheus-port', '0', '--worker-urls', ...fleet.urls, '--rate-limit-tokens-per-second', '3', '--queue-size', '0']);
  t.teardown(async () => {
    await Promise.all([full.close(0), slow.close(0), none.close(0)]);
    await fleet.close();
  });
  const a = await Promise.all(Array.from({ length: 10 }, (_, i) => post(`${full.url}/generate`, body(i))));
  const codes = a.map((x) => (x.status === 200 ? 'ok' : `${x.status} ${JSON.parse(x.body).error.code}`)).sort();
  t.same(codes, ['429 queue_full', '429 queue_full', '429 queue_full', '429 queue_full', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok'], 'burst of 4 + 2 queued served; the rest 429');
  const b = await Promise.all(Array.from({ length: 3 }, (_, i) => post(`${slow.url}/generate`, body(i))));
  t.same(b.map((x) => (x.status === 200 ? 'ok' : `${x.status} ${JSON.parse(x.body).error.code}`)).sort(), ['408 queue_timeout', '408 queue_timeout', 'ok']);
  const c = await Promise.all(Array.from({ length: 5 }, (_, i) => post(`${none.url}/generate`, body(i))));
  t.same(c.map((x) => (x.status === 200 ? 'ok' : `${x.status} ${JSON.parse(x.body).error.code}`)).sort(), ['429 rate_limited', '429 rate_limited', 'ok', 'ok', 'ok']);
  for (const x of [full, slow, none]) {
    // (a front-end thread counts a request finished just after its response left)
    await waitFor(() => x.ctx.counters.active === 0, 5000, 'no active request');
    t.equal(x.ctx.limits?.queued, 0);
  }
});
