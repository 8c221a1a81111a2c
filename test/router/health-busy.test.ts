import t from 'tap';
import { startFixtureBackend } from '../helpers/fixture-backend.js';
import { startTestRouter } from '../helpers/router.js';
import { post, waitFor } from '../helpers/client.js';

t.test('probes that time out while the worker keeps serving do not eject it; a silent worker is ejected', async (t) => {
  const b = await startFixtureBackend();
  const r = await startTestRouter(['--worker-urls', b.url, '--policy', 'round_robin', '--health-check-timeout-secs', '0.1', '--health-failure-threshold', '2']);
  t.teardown(async () => {
    await r.close(0);
    await b.close();
  });
  b.healthDelayMs = 500; // every probe now times out
  const until = Date.now() + 1500;
  let served = 0;
  while (Date.now() < until) {
    if ((await post(`${r.url}/generate`, { text: 'keep serving' })).status === 200) served++;
    await new Promise((res) => setTimeout(res, 20));
  }
  t.ok(served > 10, `served ${served} requests while probes timed out`);
  t.equal(r.ctx.registry.healthyCount(), 1, 'still healthy');
  // No traffic: timed-out probes now count and the worker is ejected.
  await waitFor(() => r.ctx.registry.healthyCount() === 0, 5000, 'ejected when idle and not answering probes');
  b.healthDelayMs = 0;
  await waitFor(() => r.ctx.registry.healthyCount() === 1, 5000, 'readmitted when probes answer again');
});
