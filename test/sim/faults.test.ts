/** Failure injection: every flag, the runtime admin endpoint, and the crash modes. */
import t from 'tap';
import { startSimFleet } from '../../src/sim/fleet.js';
import { getJson, postJson, promptOf, rawRequest, sleep, waitFor } from './helpers.js';

const GEN = { text: 'hello there', sampling_params: { max_new_tokens: 2 } };

t.test('fail-rate 1 answers every data request with the injected status; control routes keep working', async (t) => {
  const fleet = await startSimFleet({ port: 0, timeScale: 0.02, failRate: 1, statusCode: 503 });
  t.teardown(() => fleet.close());
  const url = fleet.urls[0] as string;
  for (const path of ['/generate', '/v1/completions']) {
    const r = await postJson(`${url}${path}`, path === '/generate' ? GEN : { prompt: 'x', max_tokens: 1 });
    t.equal(r.status, 503, path);
    t.equal(r.body.error.code, 'injected_failure');
    t.equal(r.headers.get('x-sim-gpu-id'), '0');
  }
  const stream = await postJson(`${url}/v1/chat/completions`, { messages: [{ role: 'user', content: 'x' }], stream: true });
  t.equal(stream.status, 503, 'streaming requests fail before the stream starts');
  t.equal((await fetch(`${url}/health`)).status, 200);
  t.equal((await getJson(`${url}/get_load`)).status, 200);
  t.equal(fleet.servers[0]!.stats().injectedFailures, 3);
});

t.test('fail-rate 0.5 fails about half (seeded)', async (t) => {
  const fleet = await startSimFleet({ port: 0, timeScale: 0.02, failRate: 0.5, seed: 7 });
  t.teardown(() => fleet.close());
  const statuses = [];
  for (let i = 0; i < 40; i++) statuses.push((await postJson(`${fleet.urls[0]}/generate`, GEN)).status);
  const failed = statuses.filter((s) => s === 500).length;
  t.ok(failed >= 8 && failed <= 32, `${failed}/40 failed`);
  t.equal(statuses.filter((s) => s !== 500 && s !== 200).length, 0);
});

t.test('fail-first-n fails exactly the first N data requests', async (t) => {
  const fleet = await startSimFleet({ port: 0, timeScale: 0.02, failFirstN: 2 });
  t.teardown(() => fleet.close());
  const url = fleet.urls[0] as string;
  const statuses = [];
  for (let i = 0; i < 4; i++) statuses.push((await postJson(`${url}/generate`, GEN)).status);
  t.same(statuses, [500, 500, 200, 200]);
});

t.test('latency-ms delays admission (counted in e2e_latency, not in queue_time)', async (t) => {
  const fleet = await startSimFleet({ port: 0, timeScale: 0.02, latencyMs: 150 });
  t.teardown(() => fleet.close());
  const url = fleet.urls[0] as string;
  const t0 = performance.now();
  const results = await Promise.all([0, 1, 2].map(() => postJson(`${url}/generate`, GEN)));
  const elapsed = performance.now() - t0;
  t.ok(elapsed >= 150, `the requests took ${elapsed.toFixed(0)} ms >= 150 ms`);
  for (const r of results) {
    t.equal(r.status, 200);
    t.ok(r.body.meta_info.e2e_latency >= 0.15, `e2e_latency ${r.body.meta_info.e2e_latency} includes the delay`);
    t.ok(r.body.meta_info.queue_time < 0.15, 'queue_time does not');
  }
  // A client that leaves during the delay is dropped before it reaches the scheduler.
  fleet.servers[0]!.setFaults({ latencyMs: 5000 });
  const gone = rawRequest(`${url}/generate`, 'POST', JSON.stringify(GEN));
  await waitFor(() => fleet.servers[0]!.stats().delayed === 1, 2000, 'the request to be delayed');
  gone.abort();
  await waitFor(() => fleet.servers[0]!.stats().delayed === 0, 2000, 'the delayed request to go');
  t.equal(fleet.servers[0]!.stats().totals.submitted, 3, 'it never reached the engine');
});

t.test('hang accepts and never answers; a disconnect releases it', async (t) => {
  const fleet = await startSimFleet({ port: 0, timeScale: 0.02, hang: true });
  t.teardown(() => fleet.close());
  const url = fleet.urls[0] as string;
  const hung = rawRequest(`${url}/generate`, 'POST', JSON.stringify(GEN));
  let answered = false;
  void hung.promise.then((r) => {
    answered = r.status !== 0;
  });
  await waitFor(() => fleet.servers[0]!.stats().hanging === 1, 2000, 'the request to hang');
  await sleep(300);
  t.notOk(answered, 'no answer after 300 ms');
  t.equal((await fetch(`${url}/health`)).status, 200, 'the server itself is alive');
  hung.abort();
  await waitFor(() => fleet.servers[0]!.stats().hanging === 0, 2000, 'the hang to be released');
  t.pass('released');
});

t.test('hang-rate hangs a fraction', async (t) => {
  const fleet = await startSimFleet({ port: 0, timeScale: 0.02, hangRate: 0.5, seed: 3 });
  t.teardown(() => fleet.close());
  const url = fleet.urls[0] as string;
  const reqs = Array.from({ length: 20 }, () => rawRequest(`${url}/generate`, 'POST', JSON.stringify(GEN)));
  await waitFor(() => fleet.servers[0]!.stats().dataRequests === 20, 3000, 'all requests to arrive');
  // Every request either hangs or is served: wait for the served ones to finish (not a fixed time).
  await waitFor(() => {
    const s = fleet.servers[0]!.stats();
    return s.totals.finished + s.hanging >= 20;
  }, 10_000, 'the requests that do not hang to finish');
  const st = fleet.servers[0]!.stats();
  t.ok(st.hanging >= 3 && st.hanging <= 17, `${st.hanging}/20 hang`);
  t.equal(st.totals.finished, 20 - st.hanging, 'the others were served');
  for (const r of reqs) r.abort();
  await waitFor(() => fleet.servers[0]!.stats().hanging === 0, 2000, 'hangs released');
});

t.test('health-fail-after-ms turns /health and /health_generate into 503 after T ms', async (t) => {
  const fleet = await startSimFleet({ port: 0, timeScale: 0.02, healthFailAfterMs: 300 });
  t.teardown(() => fleet.close());
  const url = fleet.urls[0] as string;
  t.equal((await fetch(`${url}/health`)).status, 200);
  t.equal((await fetch(`${url}/health_generate`)).status, 200);
  await sleep(350);
  const h = await getJson(`${url}/health`);
  t.equal(h.status, 503);
  t.equal(h.body.error.code, 'service_unavailable');
  t.equal((await fetch(`${url}/health_generate`)).status, 503);
  t.equal((await postJson(`${url}/generate`, GEN)).status, 200, 'data requests are still served');
});

t.test('crash-after in server mode: that server closes its socket and connections; the others live', async (t) => {
  const fleet = await startSimFleet({ port: 0, count: 2, timeScale: 0.02, crashAfter: 2, crashMode: 'server' });
  t.teardown(() => fleet.close());
  const [u0, u1] = fleet.urls as [string, string];
  // A long stream in flight on server 0 is cut when it crashes.
  const streaming = rawRequest(`${u0}/generate`, 'POST', JSON.stringify({ text: 'x', stream: true, sampling_params: { max_new_tokens: 100000, ignore_eos: true } }));
  await streaming.firstByte;
  t.equal((await postJson(`${u0}/generate`, GEN)).status, 200, 'the second data request is served');
  const third = await rawRequest(`${u0}/generate`, 'POST', JSON.stringify(GEN)).promise;
  t.equal(third.status, 0, `the third gets no answer (${third.error})`);
  const cut = await streaming.promise;
  t.ok(cut.error !== undefined, `the stream in flight was cut (${cut.error})`);
  t.notOk(cut.body.includes('[DONE]'));
  const refused = await rawRequest(`${u0}/health`, 'GET', undefined).promise;
  t.equal(refused.error, 'ECONNREFUSED', 'the port is closed');
  t.equal((await postJson(`${u1}/generate`, GEN)).status, 200, 'server 1 is unaffected');
  t.equal(fleet.servers[0]!.stats().crashed, true);
  t.equal(fleet.servers[0]!.stats().running, 0);
});

t.test('crash-after in process mode calls the crash hook (exit 1 by default; see cli.test)', async (t) => {
  let crashes = 0;
  const fleet = await startSimFleet({ port: 0, timeScale: 0.02, crashAfter: 0, onCrash: () => void crashes++ });
  t.teardown(() => fleet.close());
  const r = rawRequest(`${fleet.urls[0]}/generate`, 'POST', JSON.stringify(GEN));
  await waitFor(() => crashes === 1, 2000, 'the crash hook');
  r.abort();
  t.equal(crashes, 1);
});

t.test('POST /sim/faults flips a running server into failure and back', async (t) => {
  const fleet = await startSimFleet({ port: 0, timeScale: 0.02 });
  t.teardown(() => fleet.close());
  const url = fleet.urls[0] as string;
  t.equal((await postJson(`${url}/generate`, GEN)).status, 200);
  const set = await postJson(`${url}/sim/faults`, { fail_rate: 1, status_code: 429 });
  t.equal(set.status, 200);
  t.equal(set.body.faults.failRate, 1);
  t.equal(set.body.faults.statusCode, 429);
  t.equal((await postJson(`${url}/generate`, GEN)).status, 429);
  t.same((await getJson(`${url}/sim/faults`)).body.faults.failRate, 1, 'GET shows the current settings');
  t.equal((await postJson(`${url}/sim/faults`, { failRate: 0 })).status, 200, 'camelCase keys work too');
  t.equal((await postJson(`${url}/generate`, GEN)).status, 200);
  // fail-first-n counts from the moment it is set.
  await postJson(`${url}/sim/faults`, { 'fail-first-n': 1 });
  t.equal((await postJson(`${url}/generate`, GEN)).status, 429, 'with the status code set earlier');
  t.equal((await postJson(`${url}/generate`, GEN)).status, 200);
  // health can be failed immediately.
  await postJson(`${url}/sim/faults`, { health_fail_after_ms: 0 });
  t.equal((await fetch(`${url}/health`)).status, 503);
  await postJson(`${url}/sim/faults`, { health_fail_after_ms: -1 });
  t.equal((await fetch(`${url}/health`)).status, 200);
  // Invalid settings are refused with a JSON error and change nothing.
  for (const bad of [{ fail_rate: 2 }, { nope: 1 }, { status_code: 200 }, { crash_mode: 'sometimes' }, { hang: 'yes' }]) {
    const r = await postJson(`${url}/sim/faults`, bad);
    t.equal(r.status, 400, JSON.stringify(bad));
    t.equal(r.body.error.code, 'invalid_request');
  }
  t.equal((await postJson(`${url}/sim/faults`, '{not json')).body.error.code, 'invalid_json');
  t.equal(fleet.servers[0]!.stats().faults.failRate, 0);
  // The programmatic twin.
  fleet.servers[0]!.setFaults({ hang: true });
  const hung = rawRequest(`${url}/generate`, 'POST', JSON.stringify(GEN));
  await waitFor(() => fleet.servers[0]!.stats().hanging === 1, 2000, 'setFaults to take effect');
  hung.abort();
  t.throws(() => fleet.servers[0]!.setFaults({ hangRate: -1 }), /hang-rate/);
});

t.test('GET /sim/stats', async (t) => {
  const fleet = await startSimFleet({ port: 0, timeScale: 0.02 });
  t.teardown(() => fleet.close());
  await postJson(`${fleet.urls[0]}/generate`, { text: promptOf(10, 1), sampling_params: { max_new_tokens: 3 } });
  const s = (await getJson(`${fleet.urls[0]}/sim/stats`)).body;
  t.equal(s.gpuId, 0);
  t.equal(s.totals.finished, 1);
  t.equal(s.totals.promptTokens, 10);
  t.ok(s.cacheTokens > 0);
  t.type(s.eventLoop.utilization, 'number');
});
