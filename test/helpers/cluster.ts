/**
 * Router replicas sharing a Redis, for tests: a real redis-server on a free loopback port, one simulated
 * fleet (its own thread), N routers started in this process on ephemeral ports with the same
 * --worker-urls and --redis-url, and the L4 balancer of bench/lib/cluster.ts in front of them (round
 * robin per connection). `rr()` also hands out the replicas in turn, for tests that pick one per request.
 * The child-process variant (`switchyard serve` per replica) is bench/lib/cluster.ts's startCluster.
 */
import { startTestRouter } from './router.js';
import type { StartedRouter } from '../../src/router.js';
import { startFleet } from '../../src/load/harness.js';
import type { SimFleet } from '../../src/sim/fleet.js';
import type { SimOptions } from '../../src/sim/options.js';
import { findRedisServer, RedisServer, startL4Balancer, type L4Balancer } from '../../bench/lib/cluster.js';

export { findRedisServer, RedisServer, startL4Balancer, startCluster, type L4Balancer } from '../../bench/lib/cluster.js';
export { REDIS_SKIP_MESSAGE } from '../cluster/redis-server.js';

export interface TestClusterOptions {
  readonly replicas: number;
  readonly workers: number;
  readonly sim?: Partial<SimOptions>;
  /** `serve` flags for every replica (besides the Redis ones). */
  readonly args?: readonly string[];
  /** Per-replica extra flags. */
  readonly replicaArgs?: (i: number) => readonly string[];
  /** Use this Redis instead of starting one (several clusters, or a Redis the test kills). */
  readonly redis?: RedisServer;
  /** No Redis at all: independent replicas (the baseline). */
  readonly noRedis?: boolean;
}

export interface TestCluster {
  readonly redis: RedisServer | undefined;
  readonly fleet: SimFleet;
  readonly routers: StartedRouter[];
  readonly balancer: L4Balancer;
  /** The balancer's URL. */
  readonly url: string;
  /** The replicas in turn. */
  rr(): StartedRouter;
  close(): Promise<void>;
}

/** Needs redis-server unless `noRedis` (tests check findRedisServer() first and skip without it). */
export async function startTestCluster(o: TestClusterOptions): Promise<TestCluster> {
  let redis = o.redis;
  const ownRedis = redis === undefined && o.noRedis !== true;
  let fleet: SimFleet | undefined;
  const routers: StartedRouter[] = [];
  let balancer: L4Balancer | undefined;
  const close = async (): Promise<void> => {
    await balancer?.close();
    await Promise.allSettled(routers.map((r) => r.close(1000)));
    await fleet?.close();
    if (ownRedis) await redis?.stop();
  };
  try {
    if (ownRedis) {
      const bin = findRedisServer();
      if (bin === undefined) throw new Error('redis-server not found');
      redis = await RedisServer.start(bin);
    }
    fleet = await startFleet({ timeScale: 0.05, ...o.sim }, o.workers);
    const prefix = `t${process.pid}-${Math.random().toString(36).slice(2, 8)}:`;
    for (let i = 0; i < o.replicas; i++) {
      const redisArgs = o.noRedis === true || redis === undefined ? [] : ['--redis-url', redis.url, '--redis-key-prefix', prefix, '--replica-id', `r${i}`];
      routers.push(await startTestRouter(['--worker-urls', ...fleet.urls, ...redisArgs, ...(o.args ?? []), ...(o.replicaArgs?.(i) ?? [])]));
    }
    // Decisions made before a policy actor is up are stateless fallbacks that nobody shares: wait.
    await Promise.all(routers.map((r) => r.ctx.policy.ready()));
    balancer = await startL4Balancer(routers.map((r) => ({ host: '127.0.0.1', port: r.port })));
  } catch (err) {
    await close();
    throw err;
  }
  let next = 0;
  return { redis, fleet, routers, balancer, url: balancer.url, rr: () => routers[next++ % routers.length]!, close };
}
