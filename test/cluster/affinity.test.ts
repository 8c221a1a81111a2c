/**
 * Cache-aware affinity across replicas with a real redis-server: three routers (policy actors, Redis
 * pub/sub) in front of one simulated fleet. A prefix routed by one replica is routed to the same worker
 * by the others; with --no-affinity-sharing it is not; Redis killed and restarted: no request fails, and
 * what was routed during the outage reaches the peers with the resync summaries.
 */
import t from 'tap';
import type { StartedRouter } from '../../src/router.js';
import type { AffinityState } from '../../src/policies/affinity.js';
import { get, post, waitFor } from '../helpers/client.js';
import { findRedisServer, REDIS_SKIP_MESSAGE, RedisServer, startTestCluster } from '../helpers/cluster.js';

const bin = findRedisServer();

const SYSTEM = (g: number): string => `System prompt ${g}: you are the harbour master's assistant for berth ${g}; answer in two short sentences. `.repeat(8);
const QUESTION = (i: number): string => ` Question ${i}: which vessel is due at the berth after the ${i}th tide, and what cargo does it declare?`;
const gen = (text: string) => ({ text, sampling_params: { max_new_tokens: 2 } });

async function affinityOf(r: StartedRouter): Promise<AffinityState | undefined> {
  const snap = (await r.ctx.policy.snapshot()) as { actor?: { state?: { affinity?: AffinityState } } | null; state?: { affinity?: AffinityState } };
  return snap.actor?.state?.affinity ?? snap.state?.affinity;
}

async function workerOf(url: string, text: string): Promise<string> {
  const res = await post(`${url}/generate`, gen(text));
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${res.body}`);
  return res.headers['x-sglang-worker'] as string;
}

t.test('cache affinity shared through Redis', { skip: bin === undefined ? REDIS_SKIP_MESSAGE : false }, async (t) => {
  const redis = await RedisServer.start(bin!);
  t.teardown(() => redis.stop());

  t.test('a prefix routed by one replica goes to the same worker on the others (one of them sharded)', async (t) => {
    // the third replica runs two policy shards: each record must reach the shard that owns its text
    const c = await startTestCluster({ replicas: 3, workers: 4, redis, replicaArgs: (i) => (i === 2 ? ['--policy-shards', '2'] : []) });
    t.teardown(() => c.close());
    const [a, b, d] = c.routers as [StartedRouter, StartedRouter, StartedRouter];
    const groups = 6;
    const placed: string[] = [];
    for (let g = 0; g < groups; g++) placed.push(await workerOf(a.url, SYSTEM(g) + QUESTION(0)));
    await waitFor(async () => ((await affinityOf(b))?.received_records ?? 0) >= groups && ((await affinityOf(d))?.received_records ?? 0) >= groups, 5000, 'b and d received');
    for (let g = 0; g < groups; g++) {
      t.equal(await workerOf(b.url, SYSTEM(g) + QUESTION(1)), placed[g], `group ${g} on b`);
      t.equal(await workerOf(d.url, SYSTEM(g) + QUESTION(2)), placed[g], `group ${g} on d`);
    }
    const sb = (await affinityOf(b))!;
    t.equal(sb.remote_hits, groups, 'each of b’s first requests per group was a remote hit');
    t.equal(sb.dropped_records, 0);
    // the trace of a request placed by a remote match says so
    const res = await post(`${d.url}/generate`, { ...gen(SYSTEM(0) + QUESTION(9)), rid: 'aff-trace' });
    t.equal(res.status, 200);
    // the Prometheus families of the relay
    const metrics = await (await fetch(`http://127.0.0.1:${a.observability.prometheus!.port}/metrics`)).text();
    t.match(metrics, /switchyard_affinity_published_records_total [1-9]/);
    t.match(metrics, /switchyard_affinity_received_records_total [1-9]/);
  });

  t.test('without sharing (--no-affinity-sharing) each replica places prefixes on its own', async (t) => {
    const c = await startTestCluster({ replicas: 2, workers: 4, redis, args: ['--no-affinity-sharing'], replicaArgs: (i) => ['--seed', String(100 + i)] });
    t.teardown(() => c.close());
    const [a, b] = c.routers as [StartedRouter, StartedRouter];
    let same = 0;
    for (let g = 0; g < 8; g++) {
      const onA = await workerOf(a.url, SYSTEM(50 + g) + QUESTION(0));
      if ((await workerOf(b.url, SYSTEM(50 + g) + QUESTION(1))) === onA) same++;
    }
    t.ok(same < 8, `${same} of 8 groups landed on A's worker by chance`);
    t.equal(await affinityOf(a), undefined, 'no affinity state at all');
  });

  t.test('through the L4 balancer: connections spread over the replicas, prefixes stay together', async (t) => {
    // one replica with two front-end threads: its data-plane thread's decisions are the same policy's
    const c = await startTestCluster({ replicas: 3, workers: 4, redis, replicaArgs: (i) => (i === 1 ? ['--frontend-threads', '2'] : []) });
    t.teardown(() => c.close());
    const byGroup = new Map<number, Set<string>>();
    for (let i = 0; i < 36; i++) {
      const g = i % 4;
      // one connection per request (agent: false): the balancer hands each to the next replica
      const w = await workerOf(c.url, SYSTEM(200 + g) + QUESTION(i));
      if (!byGroup.has(g)) byGroup.set(g, new Set());
      byGroup.get(g)!.add(w);
      // the first request of a group must reach the others before they see the group (a few ms)
      if (i < 4) await new Promise((r) => setTimeout(r, 100));
    }
    t.same(c.balancer.connections, [12, 12, 12], 'round robin per connection');
    for (const [g, ws] of byGroup) t.equal(ws.size, 1, `group ${g}: one worker across the three replicas`);
  });

  t.test('Redis killed and restarted: no request fails; the resync summary carries what was routed meanwhile', async (t) => {
    const own = await RedisServer.start(bin!);
    t.teardown(() => own.stop());
    const c = await startTestCluster({ replicas: 2, workers: 4, redis: own });
    t.teardown(() => c.close());
    const [a, b] = c.routers as [StartedRouter, StartedRouter];
    await own.kill9();
    await waitFor(() => a.cluster?.link.up === false && b.cluster?.link.up === false, 5000, 'both replicas see Redis down');
    const placed: string[] = [];
    for (let g = 0; g < 5; g++) placed.push(await workerOf(a.url, SYSTEM(300 + g) + QUESTION(0)));
    // b routes its own traffic meanwhile: no failure either
    for (let i = 0; i < 5; i++) await workerOf(b.url, SYSTEM(400) + QUESTION(i));
    const before = (await affinityOf(b))!.received_records;
    await own.launch();
    await waitFor(() => a.cluster?.link.up === true && b.cluster?.link.up === true, 10_000, 'both replicas reconnected');
    await waitFor(async () => ((await affinityOf(b))?.received_records ?? 0) > before, 5000, 'b received a summary');
    for (let g = 0; g < 5; g++) t.equal(await workerOf(b.url, SYSTEM(300 + g) + QUESTION(1)), placed[g], `group ${g} routed during the outage, found after`);
    t.ok(((await affinityOf(a))?.summaries ?? 0) >= 1, 'a sent a summary');
    const stats = await get(`${a.url}/health`);
    t.equal(stats.status, 200);
  });
});
