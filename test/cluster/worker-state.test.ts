/**
 * Worker health and circuit breakers shared through a real redis-server (src/cluster/worker-state.ts):
 * three routers in front of one simulated fleet. Replica A alone checks health often and has a short
 * breaker timeout; B and C check every minute and keep a breaker open for a minute, so whatever they
 * show came from A: a breaker A opens is open on B and C within a second (and closes when A's closes);
 * a worker A's health checks eject is ejected on B and C, and readmitted with A's readmission; with Redis
 * killed, a transition is kept and reaches the others when Redis is back (resync).
 */
import t from 'tap';
import type { StartedRouter } from '../../src/router.js';
import { BreakerState, Field } from '../../src/actors/worker-table.js';
import { post, waitFor } from '../helpers/client.js';
import { RedisLink } from '../../src/cluster/redis-link.js';
import type { WorkerStateMessage } from '../../src/cluster/worker-state.js';
import { captureLog } from './log-capture.js';
import { findRedisServer, REDIS_SKIP_MESSAGE, RedisServer, startTestCluster } from '../helpers/cluster.js';

const bin = findRedisServer();

const breakerOf = (r: StartedRouter, url: string): BreakerState => r.ctx.table.get(r.ctx.registry.get(url)!.slot, Field.Breaker) as BreakerState;
const healthyOn = (r: StartedRouter, url: string): boolean => r.ctx.table.get(r.ctx.registry.get(url)!.slot, Field.Healthy) === 1;
const metric = (r: StartedRouter, name: string, kind: string): number => {
  const m = new RegExp(`^${name}\\{kind="${kind}"\\} ([0-9.e+-]+)$`, 'm').exec(r.cluster!.metricsText());
  return m === null ? Number.NaN : Number(m[1]);
};

t.test('worker health and breakers shared through Redis', { skip: bin === undefined ? REDIS_SKIP_MESSAGE : false }, async (t) => {
  const redis = await RedisServer.start(bin!);
  t.teardown(() => redis.stop());
  const c = await startTestCluster({
    replicas: 3,
    workers: 3,
    redis,
    args: ['--policy', 'round_robin', '--cb-failure-threshold', '2', '--cb-success-threshold', '1', '--disable-retries'],
    replicaArgs: (i) =>
      i === 0
        ? ['--health-check-interval-secs', '0.2', '--health-failure-threshold', '1', '--health-success-threshold', '1', '--cb-timeout-duration-secs', '1']
        : ['--health-check-interval-secs', '60', '--cb-timeout-duration-secs', '60'],
  });
  t.teardown(() => c.close());
  const [a, b, d] = c.routers as [StartedRouter, StartedRouter, StartedRouter];
  const urls = c.fleet.urls;

  t.test("a breaker A opens is open on B and C within a second; A's close closes theirs", async (t) => {
    const w = urls[0]!;
    await c.fleet.servers[0]!.setFaults({ failRate: 1, statusCode: 500 });
    // round robin over 3 workers: 6 requests give worker 0 two failures on A
    for (let i = 0; i < 6 && breakerOf(a, w) !== BreakerState.Open; i++) await post(`${a.url}/generate`, { text: `req ${i}`, sampling_params: { max_new_tokens: 1 } });
    t.equal(breakerOf(a, w), BreakerState.Open, 'open on A');
    const opened = performance.now();
    await waitFor(() => breakerOf(b, w) === BreakerState.Open && breakerOf(d, w) === BreakerState.Open, 3000, 'open on B and C');
    const ms = performance.now() - opened;
    t.ok(ms < 1000, `seen by B and C after ${ms.toFixed(0)} ms`);
    t.ok(metric(b, 'switchyard_cluster_worker_state_applied_total', 'breaker') >= 1, 'applied counted on B');
    t.ok(metric(a, 'switchyard_cluster_worker_state_published_total', 'breaker') >= 1, 'published counted on A');
    // A half-opens after its own 1 s; B and C keep theirs open (their own timers: 60 s)
    await waitFor(() => breakerOf(a, w) === BreakerState.HalfOpen, 3000, 'A half-open');
    await new Promise((r) => setTimeout(r, 100));
    t.equal(breakerOf(b, w), BreakerState.Open, "A's half-open is not applied on B");
    // the worker heals; A's probe succeeds and closes A's breaker: B's and C's close with it
    await c.fleet.servers[0]!.setFaults({ failRate: 0 });
    for (let i = 0; i < 6 && breakerOf(a, w) !== BreakerState.Closed; i++) await post(`${a.url}/generate`, { text: `heal ${i}`, sampling_params: { max_new_tokens: 1 } });
    t.equal(breakerOf(a, w), BreakerState.Closed, 'closed on A');
    await waitFor(() => breakerOf(b, w) === BreakerState.Closed && breakerOf(d, w) === BreakerState.Closed, 3000, 'closed on B and C');
  });

  t.test("a worker A's health checks eject is ejected on B and C, and readmitted with A's readmission", async (t) => {
    const w = urls[1]!;
    await c.fleet.servers[1]!.setFaults({ healthFailAfterMs: 0 });
    await waitFor(() => !healthyOn(a, w), 3000, 'A ejects');
    await waitFor(() => !healthyOn(b, w) && !healthyOn(d, w), 2000, 'B and C eject');
    t.ok(metric(d, 'switchyard_cluster_worker_state_applied_total', 'health') >= 1, 'applied counted on C');
    // requests through B avoid the worker
    for (let i = 0; i < 6; i++) {
      const res = await post(`${b.url}/generate`, { text: `avoid ${i}`, sampling_params: { max_new_tokens: 1 } });
      t.not(res.headers['x-sglang-worker'], w, 'B does not route to the ejected worker');
    }
    await c.fleet.servers[1]!.setFaults({ healthFailAfterMs: -1 });
    await waitFor(() => healthyOn(a, w), 3000, 'A readmits');
    await waitFor(() => healthyOn(b, w) && healthyOn(d, w), 2000, 'B and C readmit');
  });

  t.test('a passive ejection (a connection failure seen by B) is published and applied on the others', async (t) => {
    const w = urls[0]!;
    await waitFor(() => c.routers.every((r) => healthyOn(r, w)), 5000, 'healthy everywhere');
    // a client of the channel, to see what B publishes
    const seen: WorkerStateMessage[] = [];
    const spy = new RedisLink({ url: redis.url, keyPrefix: b.cluster!.link.prefix, replicaId: 'spy', logger: captureLog().logger });
    t.teardown(() => spy.close());
    spy.subscribe('workers', (data) => seen.push(data as WorkerStateMessage));
    await spy.start();
    const appliedBefore = metric(d, 'switchyard_cluster_worker_state_applied_total', 'health');
    // what the proxy calls when a connection to the worker is refused or reset before any response
    b.ctx.monitor.reportConnectionFailure(b.ctx.registry.get(w)!, 'test: connection refused');
    t.notOk(healthyOn(b, w), 'B ejected it');
    await waitFor(() => seen.some((m) => m.k === 'h' && m.u === w && m.s === 0 && m.o === 'r1' && m.r.startsWith('ejected: test')), 2000, 'the ejection published');
    await waitFor(() => metric(d, 'switchyard_cluster_worker_state_applied_total', 'health') > appliedBefore, 2000, 'applied on C');
    // the worker is fine: A's own probes readmit it within a check or two, and that is shared too
    await waitFor(() => c.routers.every((r) => healthyOn(r, w)), 5000, 'readmitted everywhere');
    t.ok(seen.some((m) => m.k === 'h' && m.u === w && m.s === 1 && m.o === 'r0'), "A's readmission published");
  });

  t.test('Redis killed: a transition made meanwhile reaches the others when Redis is back', async (t) => {
    const w = urls[2]!;
    await redis.kill9();
    await waitFor(() => c.routers.every((r) => r.cluster!.link.up === false), 5000, 'every replica sees Redis down');
    await c.fleet.servers[2]!.setFaults({ healthFailAfterMs: 0 });
    await waitFor(() => !healthyOn(a, w), 3000, 'A ejects');
    await new Promise((r) => setTimeout(r, 300));
    t.ok(healthyOn(b, w), 'B does not know while Redis is down');
    await redis.launch();
    await waitFor(() => !healthyOn(b, w) && !healthyOn(d, w), 10_000, 'B and C eject after the resync');
    await c.fleet.servers[2]!.setFaults({ healthFailAfterMs: -1 });
    await waitFor(() => healthyOn(a, w) && healthyOn(b, w) && healthyOn(d, w), 5000, 'readmitted everywhere');
  });
});
