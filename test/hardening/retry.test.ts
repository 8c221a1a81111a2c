/**
 * Retries and circuit breakers through real sockets: simulated workers answering 5xx or refusing
 * connections; the router retries elsewhere while nothing reached the client, opens the failing worker's
 * breaker, and gives up after --retry-max-retries with the worker's own answer.
 */
import t from 'tap';
import { startSimFleet } from '../../src/sim/fleet.js';
import { startTestRouter } from '../helpers/router.js';
import { post, get, waitFor } from '../helpers/client.js';
import { BreakerState, Field } from '../../src/actors/worker-table.js';
import type { CompletionRecord } from '../../src/proxy/completion.js';

const body = (i: number) => ({ text: `retry test ${i} `.repeat(10), sampling_params: { max_new_tokens: 4 } });

t.test('a worker answering 503 is retried elsewhere and its breaker opens', async (t) => {
  const fleet = await startSimFleet({ count: 3, timeScale: 0.01 });
  fleet.servers[0]!.setFaults({ failRate: 1, statusCode: 503 });
  const records: CompletionRecord[] = [];
  const r = await startTestRouter(['--prometheus-port', '0', '--worker-urls', ...fleet.urls, '--policy', 'round_robin', '--retry-initial-backoff-ms', '1', '--cb-failure-threshold', '3', '--cb-timeout-duration-secs', '600'], {
    sinks: [{ record: (x) => records.push(x) }],
  });
  t.teardown(async () => {
    await r.close(0);
    await fleet.close();
  });
  const results = await Promise.all(Array.from({ length: 60 }, (_, i) => post(`${r.url}/generate`, body(i))));
  t.same(results.filter((x) => x.status !== 200).map((x) => x.body), [], 'every request succeeded');
  t.ok(r.ctx.counters.retries >= 3, `retries counted (${r.ctx.counters.retries})`);
  const bad = r.ctx.registry.list().find((w) => w.url === fleet.urls[0])!;
  t.equal(r.ctx.table.get(bad.slot, Field.Breaker), BreakerState.Open, 'the failing worker breaker is open');
  t.equal(r.ctx.breakers?.transitions.opened, 1);
  const retried = records.filter((x) => x.attempts > 1);
  t.ok(retried.length >= 3 && retried.every((x) => x.status === 'completed' && x.workerUrl !== fleet.urls[0]), 'retried requests completed elsewhere');
  // Once open, the worker gets no more traffic: later requests need no retry.
  const before = fleet.servers[0]!.stats().dataRequests;
  const more = await Promise.all(Array.from({ length: 20 }, (_, i) => post(`${r.url}/generate`, body(100 + i))));
  t.ok(more.every((x) => x.status === 200));
  t.equal(fleet.servers[0]!.stats().dataRequests, before, 'no request reached the open worker');
  const metrics = await get(`http://127.0.0.1:${r.observability.prometheus?.port ?? 0}/metrics`).catch(() => undefined);
  if (metrics !== undefined && metrics.status === 200) {
    t.match(metrics.body, /sgl_router_retries_total \d+/);
    t.match(metrics.body, new RegExp(`sgl_router_cb_state\\{worker="${fleet.urls[0]!.replace(/[.]/g, '\\.')}"\\} 1`));
  }
  for (const w of r.ctx.registry.list()) t.equal(r.ctx.table.inFlight(w.slot), 0, 'in-flight back to 0');
  // (a front-end thread counts a request finished just after its response left)
  await waitFor(() => r.ctx.counters.active === 0, 5000, 'no active request');
});

t.test('half-open probes readmit a recovered worker', async (t) => {
  const fleet = await startSimFleet({ count: 2, timeScale: 0.01 });
  fleet.servers[0]!.setFaults({ failRate: 1, statusCode: 500 });
  const r = await startTestRouter(['--prometheus-port', '0', '--worker-urls', ...fleet.urls, '--policy', 'round_robin', '--retry-initial-backoff-ms', '1', '--cb-failure-threshold', '2', '--cb-success-threshold', '2', '--cb-timeout-duration-secs', '1']);
  t.teardown(async () => {
    await r.close(0);
    await fleet.close();
  });
  const bad = r.ctx.registry.list().find((w) => w.url === fleet.urls[0])!;
  // Until the breaker opens (stop there: on a loaded machine it could already turn half-open and be probed
  // while the worker still fails, which would count a second opening).
  for (let i = 0; r.ctx.table.get(bad.slot, Field.Breaker) !== BreakerState.Open; i++) {
    t.equal((await post(`${r.url}/generate`, body(i))).status, 200);
    if (i > 20) throw new Error('the breaker never opened');
  }
  fleet.servers[0]!.setFaults({ failRate: 0 });
  await waitFor(() => r.ctx.table.get(bad.slot, Field.Breaker) === BreakerState.HalfOpen, 5000, 'half-open');
  let i = 10;
  await waitFor(async () => {
    t.equal((await post(`${r.url}/generate`, body(i++))).status, 200);
    return r.ctx.table.get(bad.slot, Field.Breaker) === BreakerState.Closed;
  }, 10_000, 'closed again');
  t.same(r.ctx.breakers?.transitions, { opened: 1, halfOpened: 1, closed: 1 });
});

t.test('retries exhausted: the last worker answer reaches the client; attempts = 1 + max retries', async (t) => {
  const fleet = await startSimFleet({ count: 2, timeScale: 0.01, failRate: 1, statusCode: 502 });
  const records: CompletionRecord[] = [];
  const r = await startTestRouter(['--prometheus-port', '0', '--worker-urls', ...fleet.urls, '--retry-max-retries', '2', '--retry-initial-backoff-ms', '1', '--disable-circuit-breaker'], { sinks: [{ record: (x) => records.push(x) }] });
  t.teardown(async () => {
    await r.close(0);
    await fleet.close();
  });
  const res = await post(`${r.url}/generate`, body(1));
  t.equal(res.status, 502);
  t.match(JSON.parse(res.body), { error: { code: String } }, 'a JSON error');
  await waitFor(() => records.length === 1);
  t.equal(records[0]!.attempts, 3);
  t.equal(r.ctx.counters.retries, 2);
  t.equal(fleet.servers[0]!.stats().dataRequests + fleet.servers[1]!.stats().dataRequests, 3);
});

t.test('--disable-retries: a 503 goes straight to the client', async (t) => {
  const fleet = await startSimFleet({ count: 1, timeScale: 0.01, failRate: 1, statusCode: 503 });
  const r = await startTestRouter(['--prometheus-port', '0', '--worker-urls', ...fleet.urls, '--disable-retries']);
  t.teardown(async () => {
    await r.close(0);
    await fleet.close();
  });
  t.equal((await post(`${r.url}/generate`, body(1))).status, 503);
  t.equal(r.ctx.counters.retries, 0);
  t.equal(fleet.servers[0]!.stats().dataRequests, 1);
});

t.test('non-retryable statuses (400) are not retried', async (t) => {
  const fleet = await startSimFleet({ count: 2, timeScale: 0.01, failRate: 1, statusCode: 400 });
  const r = await startTestRouter(['--prometheus-port', '0', '--worker-urls', ...fleet.urls, '--retry-initial-backoff-ms', '1']);
  t.teardown(async () => {
    await r.close(0);
    await fleet.close();
  });
  t.equal((await post(`${r.url}/generate`, body(1))).status, 400);
  t.equal(r.ctx.counters.retries, 0);
});

t.test('a refused connection is retried on another worker and the dead worker ejected', async (t) => {
  const fleet = await startSimFleet({ count: 3, timeScale: 0.01 });
  const r = await startTestRouter(['--prometheus-port', '0', '--worker-urls', ...fleet.urls, '--policy', 'round_robin', '--retry-initial-backoff-ms', '1']);
  t.teardown(async () => {
    await r.close(0);
    await fleet.close();
  });
  await fleet.servers[1]!.close();
  const results = await Promise.all(Array.from({ length: 30 }, (_, i) => post(`${r.url}/generate`, body(i))));
  t.same(results.filter((x) => x.status !== 200).length, 0, 'no request failed');
  const dead = r.ctx.registry.list().find((w) => w.url === fleet.urls[1])!;
  t.equal(r.ctx.table.get(dead.slot, Field.Healthy), 0, 'ejected');
  const ready = await get(`${r.url}/readiness`);
  t.match(JSON.parse(ready.body), { healthy_workers: 2, total_workers: 3 });
});
