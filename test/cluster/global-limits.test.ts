/**
 * The global --max-concurrent-requests across three router replicas behind the L4 balancer (one of them
 * with two front-end threads sharing its share through shared memory), with a real redis-server: load
 * well above the limit, the simulated fleet's running + waiting requests sampled all along never exceed
 * 12 * 1.05; Redis SIGKILLed mid-run: no request fails, every replica falls back to ceil(12 / 3) (metric
 * and one log line), and when Redis is back every replica holds a lease again.
 */
import t from 'tap';
import type { StartedRouter } from '../../src/router.js';
import { post, waitFor } from '../helpers/client.js';
import { findRedisServer, REDIS_SKIP_MESSAGE, RedisServer, startTestCluster } from '../helpers/cluster.js';

const bin = findRedisServer();
const LIMIT = 12;

const metric = (r: StartedRouter, name: string): number => {
  const m = new RegExp(`^${name} ([0-9.e+-]+)$`, 'm').exec(r.cluster!.metricsText());
  return m === null ? Number.NaN : Number(m[1]);
};

t.test('global concurrency limit across replicas', { skip: bin === undefined ? REDIS_SKIP_MESSAGE : false }, async (t) => {
  const redis = await RedisServer.start(bin!);
  t.teardown(() => redis.stop());
  const c = await startTestCluster({
    replicas: 3,
    workers: 4,
    redis,
    sim: { timeScale: 0.2 },
    args: ['--max-concurrent-requests', String(LIMIT), '--queue-size', '1000', '--queue-timeout-secs', '60'],
    replicaArgs: (i) => (i === 1 ? ['--frontend-threads', '2'] : []),
  });
  t.teardown(() => c.close());
  await waitFor(() => c.routers.every((r) => metric(r, 'switchyard_cluster_admission_fallback') === 0), 5000, 'every replica leased');

  let stop = false;
  let ok = 0;
  const failures: string[] = [];
  const client = async (k: number): Promise<void> => {
    for (let i = 0; !stop; i++) {
      try {
        const res = await post(`${c.url}/generate`, { text: `client ${k} request ${i}: count the tides`, sampling_params: { max_new_tokens: 24 } });
        if (res.status === 200) ok++;
        else failures.push(`HTTP ${res.status}: ${res.body.slice(0, 200)}`);
      } catch (err) {
        failures.push((err as Error).message);
      }
    }
  };
  const samples: number[] = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const stats = await Promise.all(c.fleet.servers.map((s) => s.stats()));
      samples.push(stats.reduce((acc, s) => acc + s.running + s.waiting, 0));
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  const clients = Array.from({ length: 48 }, (_, k) => client(k));
  const phase = async (ms: number): Promise<number[]> => {
    const from = samples.length;
    await new Promise((r) => setTimeout(r, ms));
    return samples.slice(from);
  };

  const steady = await phase(3000);
  await redis.kill9();
  await waitFor(() => c.routers.every((r) => metric(r, 'switchyard_cluster_admission_fallback') === 1), 5000, 'every replica in fallback');
  for (const r of c.routers) t.equal(metric(r, 'switchyard_cluster_admission_share'), Math.ceil(LIMIT / 3), 'fallback share ceil(12 / 3)');
  const outage = await phase(1500);
  await redis.launch();
  await waitFor(() => c.routers.every((r) => metric(r, 'switchyard_cluster_admission_fallback') === 0), 10_000, 'every replica leased again');
  const after = await phase(1500);
  stop = true;
  await Promise.all(clients);
  sampling = false;
  await sampler;

  const max = (xs: number[]): number => xs.reduce((m, x) => Math.max(m, x), 0);
  t.ok(steady.length > 50, `${steady.length} samples in the steady phase`);
  t.ok(max(steady) <= LIMIT * 1.05, `steady: fleet running + waiting max ${max(steady)} <= ${LIMIT * 1.05}`);
  t.ok(max(steady) >= LIMIT - 2, `steady: the limit is used (max ${max(steady)})`);
  t.ok(max(outage) <= LIMIT * 1.05, `Redis down: max ${max(outage)}`);
  t.ok(max(after) <= LIMIT * 1.05, `Redis back: max ${max(after)}`);
  t.same(failures, [], 'no request failed');
  t.ok(ok > 100, `${ok} requests completed`);
  for (const r of c.routers) {
    // one for the kill; a renewal timing out on a loaded machine is one more (the lease is then not trusted)
    const fallbacks = metric(r, 'switchyard_cluster_admission_fallbacks_total');
    t.ok(fallbacks >= 1 && fallbacks <= 3, `fallbacks counted (${fallbacks})`);
    t.ok(metric(r, 'switchyard_cluster_admission_lease_renewals_total') > 10, 'renewals counted');
  }
});
