import t from 'tap';
import { startSimFleet } from '../../src/sim/fleet.js';
import { startTestRouter } from '../helpers/router.js';
import { post, waitFor } from '../helpers/client.js';
import { Field } from '../../src/actors/worker-table.js';

t.test('polled /get_load fills reported queue and token usage (from /get_server_info capacity)', async (t) => {
  const fleet = await startSimFleet({ count: 1, timeScale: 0.5, maxTotalTokens: 4096, maxRunningRequests: 2 });
  const r = await startTestRouter(['--worker-urls', ...fleet.urls, '--policy', 'round_robin', '--load-poll-interval-secs', '0.05']);
  t.teardown(async () => {
    await r.close(0);
    await fleet.close();
  });
  const inflight = Array.from({ length: 6 }, (_, i) => post(`${r.url}/generate`, { text: `long prompt ${i} `.repeat(40), sampling_params: { max_new_tokens: 200, ignore_eos: true } }));
  await waitFor(() => r.ctx.table.get(0, Field.ReportedQueue) > 0, 10_000, 'a reported queue');
  await waitFor(() => r.ctx.table.get(0, Field.TokenUsagePermille) > 0, 10_000, 'a reported token usage');
  const usage = r.ctx.table.get(0, Field.TokenUsagePermille) / 1000;
  t.ok(usage > 0 && usage <= 1, `token usage ${usage}`);
  await Promise.all(inflight);
});
