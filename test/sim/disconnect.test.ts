/** Client disconnects remove requests from the queue and the running batch and free their KV. */
import t from 'tap';
import { startSimFleet } from '../../src/sim/fleet.js';
import { getJson, metric, metrics, promptOf, rawRequest, waitFor } from './helpers.js';

t.test('disconnected clients leave the queue and the running batch; counters return to zero', async (t) => {
  const fleet = await startSimFleet({ port: 0, timeScale: 0.05, maxRunningRequests: 3 });
  t.teardown(() => fleet.close());
  const url = fleet.urls[0] as string;
  const server = fleet.servers[0]!;
  const clients = Array.from({ length: 8 }, (_, i) =>
    rawRequest(
      `${url}/${i % 2 === 0 ? 'generate' : 'v1/chat/completions'}`,
      'POST',
      JSON.stringify(
        i % 2 === 0
          ? { text: promptOf(200, i), stream: i % 4 === 0, sampling_params: { max_new_tokens: 100000, ignore_eos: true } }
          : { messages: [{ role: 'user', content: promptOf(200, i) }], stream: true, max_tokens: 100000, ignore_eos: true },
      ),
    ),
  );
  await waitFor(() => server.stats().running === 3 && server.stats().waiting === 5, 5000, '3 running and 5 waiting');
  const held = server.stats().kvUsedTokens;
  t.ok(held >= 600, `running requests hold KV (${held} tokens)`);
  t.equal((await getJson(`${url}/get_load`)).body[0].num_reqs, 8);

  // Queued ones first, then the running ones.
  for (const c of clients.slice(3)) c.abort();
  for (const c of clients.slice(0, 3)) c.abort();
  await waitFor(() => server.stats().running === 0 && server.stats().waiting === 0, 5000, 'an empty server');
  const s = server.stats();
  t.equal(s.kvUsedTokens, 0, 'no KV held');
  t.equal(s.privateTokens, 0);
  t.equal(s.cacheLockedTokens, 0, 'no cache entry is locked');
  t.equal(s.totals.aborted, 8);
  t.same((await getJson(`${url}/get_load`)).body, [{ dp_rank: 0, num_reqs: 0, num_waiting_reqs: 0, num_tokens: 0 }]);
  const m = await metrics(url);
  t.equal(metric(m, 'sglang:num_running_reqs'), 0);
  t.equal(metric(m, 'sglang:num_queue_reqs'), 0);
  t.equal(metric(m, 'sglang:num_aborted_requests_total'), 8);
  t.equal(metric(m, 'sglang:token_usage'), 0);
  // The freed cache is reusable and the server still serves.
  const ok = await rawRequest(`${url}/generate`, 'POST', JSON.stringify({ text: promptOf(200, 0), sampling_params: { max_new_tokens: 2 } })).promise;
  t.equal(ok.status, 200);
  t.equal(JSON.parse(ok.body).meta_info.cached_tokens, 199, 'the aborted request’s prompt stayed cached (unlocked)');
});

t.test('a client that disconnects during a chunked prefill frees its chunks', async (t) => {
  const fleet = await startSimFleet({ port: 0, timeScale: 0.5, chunkedPrefillSize: 512 });
  t.teardown(() => fleet.close());
  const server = fleet.servers[0]!;
  const c = rawRequest(`${fleet.urls[0]}/generate`, 'POST', JSON.stringify({ text: promptOf(8000, 99), sampling_params: { max_new_tokens: 5 } }));
  await waitFor(() => server.stats().totals.prefillSteps >= 2, 5000, 'chunked prefill to start');
  t.ok(server.stats().running === 1 && server.stats().kvUsedTokens > 0);
  c.abort();
  await waitFor(() => server.stats().running === 0, 5000, 'the request to go');
  t.equal(server.stats().kvUsedTokens, 0);
  t.equal(server.stats().totals.aborted, 1);
});
