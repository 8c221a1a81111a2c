import t from 'tap';
import { startFixtureBackend } from '../helpers/fixture-backend.js';
import { startTestRouter } from '../helpers/router.js';
import { post, get, send, postAndAbort, waitFor } from '../helpers/client.js';
import type { CompletionRecord } from '../../src/proxy/completion.js';

t.test('non-streaming /generate: body relayed, ids and worker header, rid injected', async (t) => {
  const b = await startFixtureBackend();
  const records: CompletionRecord[] = [];
  const r = await startTestRouter(['--worker-urls', b.url, '--policy', 'round_robin'], { sinks: [{ record: (x) => records.push(x) }] });
  t.teardown(async () => {
    await r.close(0);
    await b.close();
  });
  const res = await post(`${r.url}/generate`, { text: 'hello world', sampling_params: { max_new_tokens: 2 } });
  t.equal(res.status, 200);
  const body = JSON.parse(res.body);
  t.equal(body.text, 'hello');
  t.equal(res.headers['x-sglang-worker'], b.url);
  const rid = res.headers['x-request-id'] as string;
  t.ok(rid && rid.length > 0, 'x-request-id set');
  t.equal(b.received[0]?.json?.['rid'], rid, 'rid injected into the upstream body');
  t.equal(body.meta_info.id, rid);
  t.same(b.received[0]?.json?.['sampling_params'], { max_new_tokens: 2 }, 'rest of the body intact');
  // client-chosen id via header wins and is echoed
  const res2 = await post(`${r.url}/generate`, { text: 'x' }, { 'x-request-id': 'my-id-1' });
  t.equal(res2.headers['x-request-id'], 'my-id-1');
  t.equal(b.received[1]?.json?.['rid'], 'my-id-1');
  // body rid kept
  const res3 = await post(`${r.url}/generate`, { text: 'x', rid: 'body-rid' });
  t.equal(res3.headers['x-request-id'], 'body-rid');
  await waitFor(() => records.length === 3);
  t.equal(records[0]!.status, 'completed');
  t.equal(records[0]!.workerUrl, b.url);
  t.equal(records[0]!.outputTokens, 2);
  t.equal(records[0]!.cachedTokens, 3);
  t.equal(r.ctx.table.inFlight(0), 0);
});

t.test('round_robin alternates across two workers', async (t) => {
  const a = await startFixtureBackend(0, 'a');
  const b = await startFixtureBackend(0, 'b');
  const r = await startTestRouter(['--worker-urls', a.url, b.url, '--policy', 'round_robin']);
  t.teardown(async () => {
    await r.close(0);
    await a.close();
    await b.close();
  });
  const seen: string[] = [];
  for (let i = 0; i < 6; i++) {
    const res = await post(`${r.url}/v1/completions`, { prompt: `p${i}`, max_tokens: 1 });
    t.equal(res.status, 200);
    seen.push(res.headers['x-sglang-worker'] as string);
  }
  for (let i = 1; i < seen.length; i++) t.not(seen[i], seen[i - 1], `request ${i} alternates`);
  t.equal(a.received.length, 3);
  t.equal(b.received.length, 3);
});

t.test('streaming is relayed byte for byte and timed', async (t) => {
  const b = await startFixtureBackend();
  b.streamChunks = 20;
  b.chunkDelayMs = 1;
  const records: CompletionRecord[] = [];
  const r = await startTestRouter(['--worker-urls', b.url, '--policy', 'random'], { sinks: [{ record: (x) => records.push(x) }] });
  t.teardown(async () => {
    await r.close(0);
    await b.close();
  });
  const direct = await post(`${b.url}/generate`, { text: 'hi', stream: true, rid: 'fixed' });
  const via = await post(`${r.url}/generate`, { text: 'hi', stream: true, rid: 'fixed' });
  t.equal(via.status, 200);
  t.match(via.headers['content-type'], /text\/event-stream/);
  t.equal(via.body, direct.body, 'identical bytes');
  t.match(via.body, /data: \[DONE\]\n\n$/);
  await waitFor(() => records.length === 1);
  const rec = records[0]!;
  t.equal(rec.outputTokens, 20, 'completion tokens from the last meta_info');
  t.equal(rec.itl?.length, 19, 'one gap per content chunk after the first');
  t.ok(rec.firstTokenAt > rec.sentAt, 'first token after sent');
  t.ok(rec.finishedAt >= rec.firstTokenAt);
});

t.test('client abort mid-stream aborts upstream and counters return to zero', async (t) => {
  const b = await startFixtureBackend();
  b.streamChunks = 1000;
  b.chunkDelayMs = 5;
  const records: CompletionRecord[] = [];
  const r = await startTestRouter(['--worker-urls', b.url, '--policy', 'round_robin'], { sinks: [{ record: (x) => records.push(x) }] });
  t.teardown(async () => {
    await r.close(0);
    await b.close();
  });
  const n = 50;
  await Promise.all(Array.from({ length: n }, (_, i) => postAndAbort(`${r.url}/generate`, { text: `abort ${i}`, stream: true }, 2)));
  await waitFor(() => records.length === n, 10_000, 'all records');
  t.ok(records.every((x) => x.status === 'aborted'), 'all aborted');
  await waitFor(() => b.open === 0, 5000, 'upstream streams closed');
  t.equal(b.closedEarly, n, 'every upstream request was cancelled');
  t.equal(r.ctx.table.inFlight(0), 0, 'in-flight requests back to 0');
  t.equal(r.ctx.table.inFlightTokens(0), 0, 'in-flight tokens back to 0');
  // (a front-end thread counts a request finished just after its response left)
  await waitFor(() => r.ctx.counters.active === 0, 5000, 'no active request');
});

t.test('a worker down at start; a worker dying mid-run is retried on another', async (t) => {
  const a = await startFixtureBackend(0, 'a');
  const dead = await startFixtureBackend(0, 'dead');
  await dead.kill();
  const r = await startTestRouter(['--worker-urls', a.url, dead.url, '--policy', 'round_robin']);
  t.teardown(async () => {
    await r.close(0);
    await a.close();
  });
  const ready = await get(`${r.url}/readiness`);
  t.equal(ready.status, 200);
  t.same(JSON.parse(ready.body), { status: 'ready', healthy_workers: 1, total_workers: 2 });
  for (let i = 0; i < 4; i++) {
    const res = await post(`${r.url}/generate`, { text: 'x' });
    t.equal(res.status, 200);
    t.equal(res.headers['x-sglang-worker'], a.url);
  }
  // now a second live worker joins, then dies without the health checker noticing first
  const c = await startFixtureBackend(0, 'c');
  const added = await send('POST', `${r.url}/add_worker?url=${encodeURIComponent(c.url)}`, undefined);
  t.equal(added.status, 200);
  t.equal(JSON.parse(added.body).healthy, true);
  await c.kill();
  const results = await Promise.all(Array.from({ length: 10 }, () => post(`${r.url}/generate`, { text: 'y' })));
  t.ok(results.every((x) => x.status === 200), 'no request failed');
  t.ok(results.every((x) => x.headers['x-sglang-worker'] === a.url), 'all served by the live worker');
  t.ok(r.ctx.counters.retries >= 1, 'at least one retry happened');
});

t.test('add and remove workers while traffic flows', async (t) => {
  const a = await startFixtureBackend(0, 'a');
  const b = await startFixtureBackend(0, 'b');
  const r = await startTestRouter(['--worker-urls', a.url, '--policy', 'round_robin']);
  t.teardown(async () => {
    await r.close(0);
    await a.close();
    await b.close();
  });
  let stop = false;
  let failures = 0;
  let total = 0;
  const loop = async () => {
    while (!stop) {
      const res = await post(`${r.url}/generate`, { text: 'z' });
      total++;
      if (res.status !== 200) failures++;
    }
  };
  const loops = [loop(), loop(), loop()];
  // Each phase lasts until its traffic happened (not a fixed time: requests are slow on a loaded machine).
  await waitFor(() => total >= 6, 15_000, 'traffic flowing to a');
  t.equal((await send('POST', `${r.url}/add_worker?url=${encodeURIComponent(b.url)}`, undefined)).status, 200);
  await waitFor(() => b.received.length >= 3, 15_000, 'b admitted and taking traffic');
  t.equal((await send('POST', `${r.url}/remove_worker?url=${encodeURIComponent(a.url)}`, undefined)).status, 200);
  const afterRemoval = total;
  await waitFor(() => total >= afterRemoval + 6, 15_000, 'traffic after a was removed');
  stop = true;
  await Promise.all(loops);
  t.equal(failures, 0, `0 of ${total} failed`);
  t.ok(b.received.length > 0, 'new worker got traffic');
  const list = JSON.parse((await get(`${r.url}/list_workers`)).body);
  t.same(list.urls, [b.url]);
  const dup = await send('POST', `${r.url}/add_worker?url=${encodeURIComponent(b.url)}`, undefined);
  t.equal(dup.status, 409);
  t.equal(JSON.parse(dup.body).error.code, 'worker_exists');
  const missing = await send('POST', `${r.url}/remove_worker?url=${encodeURIComponent(a.url)}`, undefined);
  t.equal(missing.status, 404);
  const ssrf = await send('POST', `${r.url}/add_worker?url=${encodeURIComponent('http://169.254.169.254')}`, undefined);
  t.equal(ssrf.status, 403, 'hosts outside the allowlist are refused');
  t.equal(r.ctx.table.inFlight(b.url === r.ctx.registry.list()[0]!.url ? r.ctx.registry.list()[0]!.slot : 0), 0);
});

t.test('no healthy workers: 503 JSON; info routes forwarded', async (t) => {
  const b = await startFixtureBackend();
  const r = await startTestRouter(['--worker-urls', b.url, '--policy', 'round_robin']);
  t.teardown(async () => {
    await r.close(0);
    await b.close();
  });
  const info = await get(`${r.url}/get_model_info`);
  t.equal(info.status, 200);
  t.equal(JSON.parse(info.body).path, '/get_model_info');
  t.equal(info.headers['x-sglang-worker'], b.url);
  const flush = await send('POST', `${r.url}/flush_cache`, undefined);
  t.equal(flush.status, 200);
  t.equal(JSON.parse(flush.body).workers[0].ok, true);
  const loads = JSON.parse((await get(`${r.url}/get_loads`)).body);
  t.equal(loads.workers[0].worker, b.url);
  b.healthy = false;
  await waitFor(() => r.ctx.registry.healthyCount() === 0, 5000, 'worker marked unhealthy');
  const res = await post(`${r.url}/generate`, { text: 'x' });
  t.equal(res.status, 503);
  t.equal(JSON.parse(res.body).error.code, 'no_healthy_workers');
  t.equal((await get(`${r.url}/readiness`)).status, 503);
  t.equal((await get(`${r.url}/get_model_info`)).status, 503);
  b.healthy = true;
  await waitFor(() => r.ctx.registry.healthyCount() === 1, 5000, 'worker readmitted');
  t.equal((await post(`${r.url}/generate`, { text: 'x' })).status, 200);
});
