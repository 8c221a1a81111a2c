/** The fleet hosted in a worker thread, as the router embeds it. */
import t from 'tap';
import { startSimFleetInThread } from '../../src/sim/fleet.js';
import { postJson, rawRequest, waitFor } from './helpers.js';

t.test('startSimFleetInThread serves, reports stats, takes faults and closes cleanly', async (t) => {
  let crashes = 0;
  const fleet = await startSimFleetInThread({ count: 2, port: 0, timeScale: 0.05, modelPath: 'thread/model', onCrash: () => void crashes++ });
  t.teardown(() => fleet.close());
  t.equal(fleet.urls.length, 2);
  t.same(
    fleet.servers.map((s) => s.gpuId),
    [0, 1],
  );
  for (const [i, url] of fleet.urls.entries()) {
    const r = await postJson(`${url}/generate`, { text: 'in a thread', sampling_params: { max_new_tokens: 3 } });
    t.equal(r.status, 200);
    t.equal(r.headers.get('x-sim-gpu-id'), String(i));
  }
  const stats = await fleet.servers[1]!.stats();
  t.equal(stats.totals.finished, 1);
  t.equal(stats.port, fleet.ports[1]);
  const faults = await fleet.servers[0]!.setFaults({ failRate: 1, statusCode: 502 });
  t.equal(faults.failRate, 1);
  t.equal((await postJson(`${fleet.urls[0]}/generate`, { text: 'x' })).status, 502);
  await t.rejects(Promise.resolve(fleet.servers[0]!.setFaults({ failRate: 3 })), /fail-rate/, 'invalid faults are refused across the thread');
  // crash-mode process inside a thread: the hook runs in the caller's thread.
  await fleet.servers[1]!.setFaults({ crashAfter: 0 });
  const r = rawRequest(`${fleet.urls[1]}/generate`, 'POST', JSON.stringify({ text: 'x' }));
  await waitFor(() => crashes === 1, 3000, 'the crash hook');
  r.abort();
  await fleet.close();
  await fleet.close();
  const refused = await rawRequest(`${fleet.urls[0]}/health`, 'GET', undefined).promise;
  t.equal(refused.error, 'ECONNREFUSED', 'closed inside the thread before it ended');
  await t.rejects(Promise.resolve(fleet.servers[0]!.stats()), /exited/);
});

t.test('thread fleet start errors surface in the caller', async (t) => {
  await t.rejects(startSimFleetInThread({ timeScale: -1 }), /time-scale/);
  const first = await startSimFleetInThread({ port: 0 });
  t.teardown(() => first.close());
  await t.rejects(startSimFleetInThread({ port: first.ports[0]! }), /cannot listen/);
});
