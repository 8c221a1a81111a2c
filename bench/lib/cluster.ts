/**
 * Several router replicas behind an L4 balancer, as a deployment runs them (issue 9, docs/deployment.md):
 * a redis-server on a free loopback port, one simulated fleet (its own thread), N `switchyard serve`
 * child processes with the same --worker-urls and --redis-url, and a TCP balancer that hands each new
 * client connection to the next replica in turn (round robin per connection, bytes piped untouched).
 * Used by bench/scenarios/cluster-replicas.ts and, through test/helpers/cluster.ts, by the tests.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createServer, connect, type Server, type Socket, type AddressInfo } from 'node:net';
import { startFleet, startRouterProcess, type RouterProcess } from '../../src/load/harness.js';
import type { SimFleet } from '../../src/sim/fleet.js';
import type { SimOptions } from '../../src/sim/options.js';
import { request } from 'undici';
import { findRedisServer, RedisServer } from '../../test/cluster/redis-server.js';

export { findRedisServer, RedisServer };

export interface L4Balancer {
  readonly url: string;
  readonly port: number;
  /** Connections handed to each backend so far. */
  readonly connections: number[];
  /** Failed upstream connects and upstream errors after connecting, by message (diagnostics). */
  readonly errors: Map<string, number>;
  close(): Promise<void>;
}

/** Upstream connects tried per client connection before giving up on it (haproxy's `retries 3`). */
const CONNECT_ATTEMPTS = 3;

/**
 * A round-robin TCP balancer on a free loopback port: connection i goes to backend i mod n. A connect that
 * fails is retried on the next backend in turn (up to CONNECT_ATTEMPTS times), as L4 balancers do.
 */
export async function startL4Balancer(backends: readonly { readonly host: string; readonly port: number }[]): Promise<L4Balancer> {
  if (backends.length === 0) throw new Error('an L4 balancer needs at least one backend');
  const connections = backends.map(() => 0);
  const errors = new Map<string, number>();
  const count = (what: string): void => {
    errors.set(what, (errors.get(what) ?? 0) + 1);
  };
  const sockets = new Set<Socket>();
  let next = 0;
  const track = (s: Socket): void => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  };
  const server: Server = createServer({ noDelay: true }, (client) => {
    track(client);
    client.pause();
    let tries = 0;
    const attempt = (): void => {
      const i = next++ % backends.length;
      const b = backends[i]!;
      const upstream = connect({ host: b.host, port: b.port, noDelay: true });
      track(upstream);
      let connected = false;
      upstream.once('connect', () => {
        connected = true;
        connections[i] = (connections[i] ?? 0) + 1;
        client.pipe(upstream);
        upstream.pipe(client);
        client.resume();
        client.once('close', () => upstream.destroy());
        upstream.once('close', () => {
          if (!client.destroyed) count('upstream closed first');
          client.destroy();
        });
      });
      upstream.on('error', (err: NodeJS.ErrnoException) => {
        count(`${connected ? 'upstream' : 'connect'}: ${err.code ?? err.message}`);
        if (connected) client.destroy();
        else if (++tries < CONNECT_ATTEMPTS && !client.destroyed) setTimeout(attempt, 10 * tries);
        else client.destroy();
      });
    };
    client.on('error', (err: NodeJS.ErrnoException) => count(`client: ${err.code ?? err.message}`));
    attempt();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    connections,
    errors,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

const liveRedis = new Set<RedisServer>();
let exitHook = false;

/** A bench process that dies leaves no redis-server behind (routers and fleets have their own hooks). */
function killOnExit(r: RedisServer): void {
  liveRedis.add(r);
  if (exitHook) return;
  exitHook = true;
  process.on('exit', () => {
    // kill9 sends SIGKILL synchronously; its promise never settles here, which is fine at exit
    for (const x of liveRedis) void x.kill9();
  });
}

export interface ClusterLaunch {
  /** Router replicas (child processes). */
  readonly replicas: number;
  /** Simulated workers (one fleet in a thread of this process). */
  readonly workers: number;
  readonly sim: Partial<SimOptions>;
  readonly policy: string;
  readonly seed: number;
  /** Start redis-server and pass --redis-url (false: replicas share nothing, the baseline). */
  readonly redis: boolean;
  /** More `serve` flags for every replica. */
  readonly args?: readonly string[];
  /** Folder for the replicas' logs. */
  readonly logDir: string;
  /** redis-server binary (default: found on PATH; the caller checks findRedisServer() first). */
  readonly redisBin?: string;
}

export interface ClusterRun {
  readonly redis: RedisServer | undefined;
  readonly fleet: SimFleet;
  readonly replicas: RouterProcess[];
  /** The balancer's URL: what clients use. */
  readonly url: string;
  readonly balancer: L4Balancer;
  close(): Promise<void>;
}

/** Redis (optional), fleet, N replicas and the balancer in front of them; everything stopped by close(). */
export async function startCluster(o: ClusterLaunch): Promise<ClusterRun> {
  mkdirSync(o.logDir, { recursive: true });
  let redis: RedisServer | undefined;
  let fleet: SimFleet | undefined;
  const replicas: RouterProcess[] = [];
  let balancer: L4Balancer | undefined;
  const close = async (): Promise<void> => {
    await balancer?.close();
    await Promise.allSettled(replicas.map((r) => r.stop()));
    await fleet?.close();
    await redis?.stop();
    if (redis !== undefined) liveRedis.delete(redis);
  };
  try {
    if (o.redis) {
      const bin = o.redisBin ?? findRedisServer();
      if (bin === undefined) throw new Error('redis-server not found');
      redis = await RedisServer.start(bin);
      killOnExit(redis);
    }
    fleet = await startFleet(o.sim, o.workers);
    const prefix = `bench${process.pid}-${Date.now()}:`;
    const started = await Promise.all(
      Array.from({ length: o.replicas }, (_, i) =>
        startRouterProcess({
          workerUrls: fleet!.urls,
          policy: o.policy,
          seed: o.seed + i,
          extraArgs: [
            '--prometheus-port',
            '0',
            ...(redis === undefined ? [] : ['--redis-url', redis.url, '--redis-key-prefix', prefix, '--replica-id', `r${i}`]),
            ...(o.args ?? []),
          ],
          logPath: join(o.logDir, `replica-${i}.log`),
        }),
      ),
    );
    replicas.push(...started);
    // Decisions made before a policy actor is up are stateless fallbacks that nobody shares: wait.
    await Promise.all(replicas.map((r) => waitPolicyReady(r.url)));
    balancer = await startL4Balancer(replicas.map((r) => ({ host: '127.0.0.1', port: Number(new URL(r.url).port) })));
    return { redis, fleet, replicas, url: balancer.url, balancer, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** A replica's policy part of its debug bundle (/admin/debug/bundle). */
export async function policySnapshot(url: string): Promise<Record<string, unknown>> {
  const res = await request(`${url}/admin/debug/bundle`, { headersTimeout: 5000, bodyTimeout: 5000 });
  const body = (await res.body.json()) as { policy?: Record<string, unknown> };
  return body.policy ?? {};
}

/** Until the replica's policy actor(s) decide (not the stateless fallback), at most `timeoutMs`. */
export async function waitPolicyReady(url: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const p = await policySnapshot(url).catch(() => ({}) as Record<string, unknown>);
    const shards = p['shard'] as { available?: boolean }[] | undefined;
    const ready = p['placement'] === 'inline' || p['available'] === true || (Array.isArray(shards) && shards.length > 0 && shards.every((s) => s.available === true));
    if (ready) return;
    if (Date.now() > deadline) throw new Error(`policy of ${url} not ready within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** cache_aware's affinity counters on a replica (undefined without sharing). */
export async function affinityState(url: string): Promise<Record<string, unknown> | undefined> {
  const p = await policySnapshot(url);
  const actor = p['actor'] as { state?: { affinity?: Record<string, unknown> } } | null | undefined;
  const state = (p['state'] as { affinity?: Record<string, unknown> } | undefined) ?? actor?.state;
  return state?.affinity;
}
