import t from 'tap';
import { startFixtureBackend } from '../helpers/fixture-backend.js';
import { startTestRouter } from '../helpers/router.js';
import { post, waitFor } from '../helpers/client.js';

t.test('probes that time out while the worker keeps serving do not eject it; a silent worker is ejected', async (t) => {
  const b = await startFixtureBackend();
  // Probes every second (not the helpers' 0.2 s): a request must complete between two probes for a timed-out
  // probe to be ignored, and on a loaded machine one can take longer than 0.2 s.
  const r = await startTestRouter(['--worker-urls', b.url, '--policy', 'round_robin', '--health-check-interval-secs', '1', '--health-check-timeout-secs', '0.1', '--health-failure-threshold', '2']);
  t.teardown(async () => {
    await r.close(0);
    await b.close();
  });
  // The start-up probe may itself exceed 0.1 s on a loaded machine: the recovery probes then admit it.
  await waitFor(() => r.ctx.registry.healthyCount() === 1, 15_000, 'the worker admitted');
  const worker = r.ctx.registry.list()[0]!;
  // A completed request before the probes slow down: the first slow probe already finds the worker serving.
  t.equal((await post(`${r.url}/generate`, { text: 'warm up' })).status, 200, 'served before the probes slow down');
  b.healthDelayMs = 500; // every probe now times out
  // Keep serving until three timed-out probes were seen and ignored (a condition, not a fixed time).
  const ignored = new Set<number>();
  const until = Date.now() + 30_000;
  const done = (): boolean => ignored.size >= 3 || Date.now() > until || r.ctx.registry.healthyCount() === 0;
  let served = 0;
  const traffic = async (): Promise<void> => {
    while (!done()) if ((await post(`${r.url}/generate`, { text: 'keep serving' })).status === 200) served++;
  };
  const watch = async (): Promise<void> => {
    while (!done()) {
      const h = r.ctx.monitor.healthOf(worker);
      if (h.lastError?.includes('ignored') === true) ignored.add(h.lastCheckedAt);
      await new Promise((res) => setTimeout(res, 5));
    }
  };
  await Promise.all([traffic(), traffic(), watch()]);
  t.ok(ignored.size >= 3, `${ignored.size} timed-out probes ignored while the worker served ${served} requests`);
  t.equal(r.ctx.registry.healthyCount(), 1, 'still healthy');
  // No traffic: timed-out probes now count and the worker is ejected.
  await waitFor(() => r.ctx.registry.healthyCount() === 0, 15_000, 'ejected when idle and not answering probes');
  b.healthDelayMs = 0;
  await waitFor(() => r.ctx.registry.healthyCount() === 1, 15_000, 'readmitted when probes answer again');
});
