/**
 * 10,000 streams aborted mid-flight with retries, breakers and admission limits on: every router counter,
 * every worker's in-flight count, the limiter's slots and every simulated worker's queue return to zero.
 */
import t from 'tap';
import { startSimFleet } from '../../src/sim/fleet.js';
import { startTestRouter } from '../helpers/router.js';
import { postAndAbort, waitFor } from '../helpers/client.js';
import { BreakerState, Field } from '../../src/actors/worker-table.js';

t.test('aborting 10,000 streams leaves every counter at 0', async (t) => {
  const fleet = await startSimFleet({ count: 2, timeScale: 0.05 });
  const r = await startTestRouter(['--prometheus-port', '0', '--worker-urls', ...fleet.urls, '--policy', 'round_robin', '--max-concurrent-requests', '64', '--queue-size', '256', '--no-enable-request-tracking']);
  t.teardown(async () => {
    await r.close(0);
    await fleet.close();
  });
  const total = 10_000;
  let next = 0;
  const lane = async () => {
    while (next < total) {
      const i = next++;
      const res = await postAndAbort(`${r.url}/generate`, { text: `abort ${i} `.repeat(20), stream: true, sampling_params: { max_new_tokens: 2000, ignore_eos: true } }, 1);
      if (res.status !== 200) throw new Error(`status ${res.status}`);
    }
  };
  await Promise.all(Array.from({ length: 100 }, lane));
  await waitFor(() => r.ctx.counters.active === 0, 60_000, 'router drained');
  t.equal(r.ctx.counters.aborted, total, 'every stream recorded as aborted');
  t.equal(r.ctx.limits?.active, 0, 'no admission slot held');
  t.equal(r.ctx.limits?.queued, 0);
  for (const w of r.ctx.registry.list()) {
    t.equal(r.ctx.table.inFlight(w.slot), 0, `${w.url}: in-flight requests 0`);
    t.equal(r.ctx.table.inFlightTokens(w.slot), 0, `${w.url}: in-flight tokens 0`);
    t.equal(r.ctx.table.get(w.slot, Field.Breaker), BreakerState.Closed, 'client aborts never open a breaker');
  }
  await waitFor(() => fleet.servers.every((s) => s.stats().running + s.stats().waiting === 0), 30_000, 'workers drained');
  t.equal(r.ctx.counters.failed, 0);
});
