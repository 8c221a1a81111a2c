/**
 * sgl-router's circuit-breaker counters on GET /metrics: sgl_router_cb_state_transitions_total{worker,from,to}
 * follows a failing worker through closed -> open -> half_open -> closed, sgl_router_cb_outcomes_total counts
 * the attempts the breaker judged, and a healthy worker's series stay at 0.
 */
import t from 'tap';
import { startSimFleet } from '../../src/sim/fleet.js';
import { startTestRouter } from '../helpers/router.js';
import { get, post, waitFor } from '../helpers/client.js';
import { BreakerState, Field } from '../../src/actors/worker-table.js';
import type { StartedRouter } from '../../src/router.js';
import { parsePrometheusText, valueOf } from '../metrics/prom-parser.js';

const body = (i: number) => ({ text: `breaker metric ${i} `.repeat(5), sampling_params: { max_new_tokens: 2 } });

async function scrape(r: StartedRouter) {
  const res = await get(r.observability.prometheus!.url);
  t.equal(res.status, 200);
  return parsePrometheusText(res.body);
}

t.test('breaker transitions and outcomes are exported per worker', async (t) => {
  const fleet = await startSimFleet({ count: 2, timeScale: 0.01 });
  fleet.servers[0]!.setFaults({ failRate: 1, statusCode: 503 });
  const r = await startTestRouter(['--worker-urls', ...fleet.urls, '--policy', 'round_robin', '--retry-initial-backoff-ms', '1', '--cb-failure-threshold', '3', '--cb-success-threshold', '1', '--cb-timeout-duration-secs', '0.3']);
  t.teardown(async () => {
    await r.close(0);
    await fleet.close();
  });
  const [bad, good] = fleet.urls as [string, string];
  const badEntry = r.ctx.registry.list().find((w) => w.url === bad)!;

  let fams = await scrape(r);
  t.equal(fams.get('sgl_router_cb_state_transitions_total')?.type, 'counter');
  t.equal(fams.get('sgl_router_cb_outcomes_total')?.type, 'counter');
  for (const [from, to] of [['closed', 'open'], ['open', 'half_open'], ['half_open', 'closed'], ['half_open', 'open']]) {
    t.equal(valueOf(fams, 'sgl_router_cb_state_transitions_total', { worker: bad, from: from!, to: to! }), 0, `${from} -> ${to} exported at 0 before anything happened`);
  }

  let i = 0;
  while (r.ctx.table.get(badEntry.slot, Field.Breaker) !== BreakerState.Open) {
    t.equal((await post(`${r.url}/generate`, body(i++))).status, 200, 'retried on the good worker');
    if (i > 50) throw new Error('breaker never opened');
  }
  fams = await scrape(r);
  t.equal(valueOf(fams, 'sgl_router_cb_state_transitions_total', { worker: bad, from: 'closed', to: 'open' }), 1);
  t.equal(valueOf(fams, 'sgl_router_cb_state', { worker: bad }), 1, 'the state gauge says open');
  t.equal(valueOf(fams, 'sgl_router_cb_outcomes_total', { worker: bad, outcome: 'failure' }), 3, 'three failed attempts opened it');
  t.ok((valueOf(fams, 'sgl_router_cb_outcomes_total', { worker: good, outcome: 'success' }) ?? 0) >= 3, 'the good worker counted successes');

  // Recovery: the worker heals, the breaker goes half-open after its timeout and closes after one probe.
  fleet.servers[0]!.setFaults({ failRate: 0 });
  await waitFor(() => r.ctx.table.get(badEntry.slot, Field.Breaker) === BreakerState.HalfOpen, 5000, 'half-open');
  await waitFor(async () => {
    t.equal((await post(`${r.url}/generate`, body(i++))).status, 200);
    return r.ctx.table.get(badEntry.slot, Field.Breaker) === BreakerState.Closed;
  }, 10_000, 'closed again');
  fams = await scrape(r);
  t.equal(valueOf(fams, 'sgl_router_cb_state_transitions_total', { worker: bad, from: 'open', to: 'half_open' }), 1);
  t.equal(valueOf(fams, 'sgl_router_cb_state_transitions_total', { worker: bad, from: 'half_open', to: 'closed' }), 1);
  t.equal(valueOf(fams, 'sgl_router_cb_state_transitions_total', { worker: bad, from: 'half_open', to: 'open' }), 0);
  t.equal(valueOf(fams, 'sgl_router_cb_state', { worker: bad }), 0);
  for (const [from, to] of [['closed', 'open'], ['open', 'half_open'], ['half_open', 'closed']]) {
    t.equal(valueOf(fams, 'sgl_router_cb_state_transitions_total', { worker: good, from: from!, to: to! }), 0, `healthy worker: ${from} -> ${to} stays 0`);
  }
});

t.test('--disable-circuit-breaker: the families are still exported, at 0', async (t) => {
  const fleet = await startSimFleet({ count: 1, timeScale: 0.01 });
  const r = await startTestRouter(['--worker-urls', ...fleet.urls, '--disable-circuit-breaker']);
  t.teardown(async () => {
    await r.close(0);
    await fleet.close();
  });
  t.equal((await post(`${r.url}/generate`, body(1))).status, 200);
  const fams = await scrape(r);
  t.equal(valueOf(fams, 'sgl_router_cb_state_transitions_total', { worker: fleet.urls[0]!, from: 'closed', to: 'open' }), 0);
  t.equal(valueOf(fams, 'sgl_router_cb_outcomes_total', { worker: fleet.urls[0]!, outcome: 'success' }), 0);
});
