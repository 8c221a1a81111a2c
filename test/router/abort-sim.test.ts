/**
 * 1,000 streams aborted mid-flight through the router to simulated SGLang workers: every router counter and
 * every worker's queue/batch return to zero (the request is cancelled upstream, not left running).
 */
import t from 'tap';
import { startSimFleet } from '../../src/sim/fleet.js';
import { startTestRouter } from '../helpers/router.js';
import { postAndAbort, waitFor } from '../helpers/client.js';
import type { CompletionRecord } from '../../src/proxy/completion.js';

t.test('aborting 1,000 streams leaves every in-flight counter at 0', async (t) => {
  const fleet = await startSimFleet({ count: 2, timeScale: 0.05 });
  const records: CompletionRecord[] = [];
  const r = await startTestRouter(['--worker-urls', ...fleet.urls, '--policy', 'round_robin'], { sinks: [{ record: (x) => records.push(x) }] });
  t.teardown(async () => {
    await r.close(0);
    await fleet.close();
  });
  const total = 1000;
  const concurrency = 100;
  let next = 0;
  const worker = async () => {
    while (next < total) {
      const i = next++;
      const res = await postAndAbort(`${r.url}/generate`, { text: `request ${i} `.repeat(20), stream: true, sampling_params: { max_new_tokens: 2000, ignore_eos: true } }, 1);
      if (res.status !== 200) throw new Error(`status ${res.status}`);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  await waitFor(() => records.length === total, 30_000, 'a record per request');
  t.equal(records.filter((x) => x.status === 'aborted').length, total, 'all recorded as aborted');
  for (const w of r.ctx.registry.list()) {
    t.equal(r.ctx.table.inFlight(w.slot), 0, `${w.url}: in-flight requests 0`);
    t.equal(r.ctx.table.inFlightTokens(w.slot), 0, `${w.url}: in-flight tokens 0`);
  }
  // (a front-end thread counts a request finished just after its response left)
  await waitFor(() => r.ctx.counters.active === 0, 5000, 'no active request in the front end');
  await waitFor(
    () => fleet.servers.every((s) => {
      const st = s.stats();
      return st.running === 0 && st.waiting === 0;
    }),
    10_000,
    'workers drained',
  );
  for (const s of fleet.servers) {
    const st = s.stats();
    t.equal(st.running + st.waiting, 0, `${st.url}: no request left running or queued`);
    t.ok(st.totals.aborted > 0, `${st.url}: requests were aborted upstream`);
  }
});
