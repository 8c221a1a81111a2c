/**
 * Router replicas sharing state through Redis (issue 9): three `switchyard serve` replicas behind a
 * round-robin L4 balancer (bench/lib/cluster.ts) in front of one simulated fleet, against the issue's
 * targets. The fleet and workload are quality-cache's (8 sim workers, llm-d profile, 170k-token KV each;
 * 80 groups x 16 prompts with 6000-token system prompts), offered at 80% of the closed-loop capacity.
 *
 *   cluster.affinity.hash_200kb_us          prefix chain of a 200 KB prompt (128-char blocks), nothing reused
 *   cluster.affinity.match_200kb_us         remote index walk over its 1,562 blocks, all present
 *   cluster.affinity.decide_200kb_overhead  CPU of a cache_aware decision on 200 KB prompts sharing 150 KB,
 *                                           with sharing / without (in-process, no Redis)
 *   cluster.affinity.decide_24kb_overhead   the same for the workload's shape (24 KB system prompt + question)
 *   cluster.hit_rate.{single,round_robin,shared,unshared}   prefix cache hit rate of each setup
 *   cluster.hit_rate_ratio.shared           3 replicas sharing / 1 replica              (target >= 0.9)
 *   cluster.hit_rate_ratio.unshared         3 replicas not sharing / 1 replica
 *   cluster.gain_share.{shared,unshared}    (hit - round_robin) / (single - round_robin): how much of
 *                                           cache_aware's gain over round_robin survives
 *   cluster.trace.visible_max_ms            a request sent to replica i, its trace asked of replica i+1:
 *                                           longest delay from the response's end     (target <= 1000)
 *   cluster.concurrency.max_over_limit      max of the fleet's running+waiting requests / the global
 *                                           --max-concurrent-requests, load above it  (target <= 1.05)
 *   cluster.redis_kill.failed               requests failed when redis-server is killed mid-run and
 *                                           restarted, global limit on (admission falls back to
 *                                           ceil(limit / 3) per replica, then leases again) (target 0)
 *
 * Needs redis-server (Debian `redis-server`); without it only the decision costs are measured.
 */
import { join } from 'node:path';
import { request } from 'undici';
import { CACHE_SETUP } from './quality-cache.js';
import { outputRoot, probeCapacity, ratio } from '../lib/quality.js';
import { affinityState, findRedisServer, startCluster, type ClusterRun } from '../lib/cluster.js';
import { reportSkip, type BenchContext, type Figure, type Scenario } from '../lib/scenario.js';
import { defaultWorkload, type WorkloadOptions } from '../../src/load/options.js';
import { runLoad } from '../../src/load/runner.js';
import type { LoadSummary } from '../../src/load/summary.js';
import { PrefixChainHasher } from '../../src/policies/prefix-chain.js';
import { createCacheAwarePolicy } from '../../src/policies/cache-aware.js';
import { WorkerTable } from '../../src/actors/worker-table.js';
import { Rng } from '../../src/util/rng.js';
import type { PolicyContext, RequestFeatures, WorkerInfo } from '../../src/policies/types.js';
import { AffinityShare } from '../../src/policies/affinity.js';
import { packWorker } from '../../src/policies/remote-prefix-index.js';

const REPLICAS = 3;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : (s[s.length >> 1] as number);
}

function randomText(rng: Rng, n: number): string {
  const parts: string[] = [];
  for (let i = 0; i < n; i += 8) parts.push(rng.int(0, 2 ** 31).toString(36).padStart(8, 'x').slice(0, 8));
  return JSON.parse(JSON.stringify(parts.join('').slice(0, n))) as string;
}

/**
 * Microseconds of CPU per call of `fn` (this process's user + system time, GC included): the median over
 * batches of 20 calls after a warm-up. CPU time stays meaningful on a loaded machine, wall time does not.
 */
function timeUs(reps: number, fn: () => void): number {
  for (let i = 0; i < Math.min(reps, 50); i++) fn();
  const batch = 20;
  const samples: number[] = [];
  for (let i = 0; i < reps; i += batch) {
    const c0 = process.cpuUsage();
    for (let j = 0; j < batch; j++) fn();
    const c = process.cpuUsage(c0);
    samples.push((c.user + c.system) / batch);
  }
  return median(samples);
}

/** What sharing costs a policy actor per decision (no Redis involved: the port discards). */
export function decisionCosts(ctx: BenchContext): Figure[] {
  const reps = ctx.quick ? 200 : 1000;
  const rng = new Rng(5);
  const prompt = randomText(rng, 200_000);
  // raw cost: no reuse of an earlier text's hashes (the same prompt again would be reused whole)
  const hasher = new PrefixChainHasher(128, 0);
  const hashUs = timeUs(reps, () => hasher.hash(prompt, undefined));

  // The remote index walk on a full hit: every block of the prompt known from another replica.
  const share = new AffinityShare({ channel: '', blockChars: 128, maxEntries: 1 << 20, ttlSecs: 600, flushMs: 5, summaryMaxEntries: 1 << 16 }, { index: 0, count: 1 });
  share.setWorkers([{ slot: 0, generation: 1, url: 'http://w0', nodeId: 0 }]);
  const n = hasher.hash(prompt, undefined);
  const now = performance.now();
  for (let k = 0; k < n; k++) share.remote.add(hasher.chain[2 * k] as number, hasher.chain[2 * k + 1] as number, packWorker(0, 1), now);
  const depth = new Int32Array(4);
  const matchUs = timeUs(reps, () => share.remote.match(hasher.chain, n, depth, now));

  // cache_aware select on 200 KB prompts sharing a 150 KB prefix, with and without sharing.
  const table = WorkerTable.create(8);
  const workers: WorkerInfo[] = [];
  for (let i = 0; i < 4; i++) {
    const ref = table.allocate({ healthy: true, nodeId: i });
    workers.push({ slot: ref.slot, generation: ref.generation, url: `http://w${i}`, nodeId: i });
  }
  // Two prompt shapes: 200 KB sharing 150 KB; and the workload below: a 24 KB system prompt (one of 80)
  // and a 512-character question.
  const big = Array.from({ length: 64 }, () => JSON.parse(JSON.stringify(prompt.slice(0, 150_000) + randomText(rng, 50_000))) as string);
  const systems = Array.from({ length: 80 }, () => randomText(rng, 24_000));
  const small = Array.from({ length: 1024 }, (_, i) => JSON.parse(JSON.stringify((systems[i % 80] as string) + randomText(rng, 512))) as string);
  const measure = (texts: readonly string[], options: Record<string, unknown>): number => {
    const policy = createCacheAwarePolicy({ seed: 1, ...options });
    policy.onWorkersChanged?.(workers);
    const pctx: PolicyContext = { table, workers, rng: new Rng(1), now: () => performance.now() };
    let i = 0;
    const us = timeUs(reps, () => {
      const text = texts[i++ % texts.length] as string;
      const req: RequestFeatures = { requestId: `r${i}`, route: 'generate', text, inputTokens: text.length >> 2, maxNewTokens: 8, stream: false };
      policy.select(req, pctx);
    });
    void policy.close?.();
    return us;
  };
  // A channel name nobody listens on: the decision hashes, looks up and queues exactly as in a router.
  const sharing = { affinity: { channel: `bench-affinity-${process.pid}`, blockChars: 128 } };
  const bigPlain = measure(big, {});
  const bigShared = measure(big, sharing);
  const smallPlain = measure(small, {});
  const smallShared = measure(small, sharing);
  ctx.log(
    `cluster-replicas: CPU per call: 200 KB chain ${hashUs.toFixed(0)} us, remote walk (1,562 blocks) ${matchUs.toFixed(0)} us; cache_aware select ` +
      `200 KB ${bigPlain.toFixed(0)} us alone / ${bigShared.toFixed(0)} us sharing, 24 KB ${smallPlain.toFixed(1)} / ${smallShared.toFixed(1)} us`,
  );
  return [
    { name: 'cluster.affinity.hash_200kb_us', value: Math.round(hashUs), unit: 'us', better: 'lower', note: 'CPU; 128-char blocks, 64-bit chain, nothing reused' },
    { name: 'cluster.affinity.match_200kb_us', value: Math.round(matchUs), unit: 'us', better: 'lower', note: 'CPU; remote index walk, 1,562 blocks all present' },
    { name: 'cluster.affinity.decide_200kb_us', value: Math.round(bigShared), unit: 'us', better: 'lower', note: `CPU; cache_aware select, 200 KB sharing 150 KB, sharing on (off: ${bigPlain.toFixed(0)} us)` },
    { name: 'cluster.affinity.decide_200kb_overhead', value: ratio(bigShared, bigPlain), unit: 'x', better: 'lower', note: 'sharing / not sharing' },
    { name: 'cluster.affinity.decide_24kb_us', value: Math.round(smallShared * 10) / 10, unit: 'us', better: 'lower', note: `CPU; 24 KB system prompt (1 of 80) + 512-char question, sharing on (off: ${smallPlain.toFixed(1)} us)` },
    { name: 'cluster.affinity.decide_24kb_overhead', value: ratio(smallShared, smallPlain), unit: 'x', better: 'lower', note: 'sharing / not sharing' },
  ];
}

interface RunResult {
  readonly label: string;
  readonly summary: LoadSummary;
  readonly extra: Record<string, number>;
}

async function runCluster(
  ctx: BenchContext,
  root: string,
  label: string,
  o: { replicas: number; redis: boolean; policy: string; args?: string[]; workload: Partial<WorkloadOptions> },
  during?: (c: ClusterRun, done: () => boolean) => Promise<Record<string, number>>,
): Promise<RunResult> {
  const dir = join(root, label);
  const w = defaultWorkload({ ...CACHE_SETUP.workload, ...o.workload });
  const cluster = await startCluster({
    replicas: o.replicas,
    workers: CACHE_SETUP.workers,
    sim: CACHE_SETUP.sim,
    policy: o.policy,
    seed: w.seed,
    redis: o.redis,
    args: o.args ?? [],
    logDir: dir,
  });
  try {
    let finished = false;
    const side = during === undefined ? Promise.resolve({}) : during(cluster, () => finished);
    const result = await runLoad(
      { ...w, url: cluster.url, output: dir, target: 'router', gpuFallbackPolicy: 'none', numGpus: CACHE_SETUP.workers, runId: `${label}-${w.seed}`, quiet: true, progress: 'off' },
      { log: () => undefined, out: () => undefined, label },
    );
    finished = true;
    const extra = await side;
    const s = result.summary;
    let affinity = '';
    if (o.redis && o.policy === 'cache_aware') {
      const states = await Promise.all(cluster.replicas.map((r) => affinityState(r.url).catch(() => undefined)));
      const sum = (k: string): number => states.reduce((acc, st) => acc + (typeof st?.[k] === 'number' ? (st[k] as number) : 0), 0);
      affinity = `, remote hits ${sum('remote_hits')}, records published ${sum('published_records')} received ${sum('received_records')}`;
    }
    ctx.log(
      `cluster-replicas/${label}: ${s.completed} ok, ${s.failed} failed, ${s.request_throughput.toFixed(2)} req/s, TTFT p90 ${Number(s['p90_ttft_ms']).toFixed(0)} ms, ` +
        `cache hit ${(s.cache_hit_rate * 100).toFixed(1)}%, connections per replica ${cluster.balancer.connections.join('/')}${affinity}` +
        (cluster.balancer.errors.size === 0 ? '' : `; balancer: ${[...cluster.balancer.errors].map(([k, v]) => `${k} x${v}`).join(', ')}`),
    );
    return { label, summary: s, extra };
  } finally {
    await cluster.close();
  }
}

/** Requests sent to replica i, their trace asked of replica i+1 until it answers: delays after the response ended. */
async function traceProbes(c: ClusterRun, done: () => boolean): Promise<Record<string, number>> {
  const delays: number[] = [];
  let missing = 0;
  for (let k = 0; !done(); k++) {
    const from = c.replicas[k % c.replicas.length]!;
    const to = c.replicas[(k + 1) % c.replicas.length]!;
    const rid = `probe-${process.pid}-${k}`;
    try {
      const res = await request(`${from.url}/generate`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ text: `trace probe ${k}`, sampling_params: { max_new_tokens: 1 }, rid }),
      });
      await res.body.text();
      if (res.statusCode !== 200) continue;
    } catch {
      continue;
    }
    const ended = performance.now();
    let seen = false;
    while (performance.now() - ended < 5000) {
      const res = await request(`${to.url}/v1/traces/${rid}`).catch(() => undefined);
      if (res !== undefined) {
        const body = (await res.body.json().catch(() => null)) as { status?: string } | null;
        if (res.statusCode === 200 && body?.status === 'completed') {
          seen = true;
          break;
        }
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    if (seen) delays.push(performance.now() - ended);
    else missing++;
    await new Promise((r) => setTimeout(r, 250));
  }
  return { probes: delays.length + missing, missing, max_ms: delays.length === 0 ? Number.NaN : Math.max(...delays), p50_ms: median(delays) };
}

/** The fleet's running + waiting requests, sampled every 20 ms while the load runs. */
async function concurrencySamples(c: ClusterRun, done: () => boolean): Promise<Record<string, number>> {
  const samples: number[] = [];
  while (!done()) {
    const stats = await Promise.all(c.fleet.servers.map((s) => s.stats()));
    samples.push(stats.reduce((acc, s) => acc + s.running + s.waiting, 0));
    await new Promise((r) => setTimeout(r, 20));
  }
  // the middle 80% of the run: the load is above the limit there
  const mid = samples.slice(Math.floor(samples.length * 0.1), Math.ceil(samples.length * 0.9));
  const sorted = [...mid].sort((a, b) => a - b);
  return {
    samples: mid.length,
    max: sorted.length === 0 ? Number.NaN : (sorted[sorted.length - 1] as number),
    p99: sorted.length === 0 ? Number.NaN : (sorted[Math.floor(sorted.length * 0.99)] as number),
    median: median(mid),
  };
}

const scenario: Scenario = {
  name: 'cluster-replicas',
  description: '3 router replicas sharing Redis behind an L4 balancer: cache hit rate vs 1 replica (shared / not), trace visibility, global concurrency limit, Redis killed mid-run',
  needs: ['redis-server'],
  async run(ctx: BenchContext): Promise<Figure[]> {
    const figures = decisionCosts(ctx);
    const bin = findRedisServer();
    if (bin === undefined) {
      reportSkip(ctx, 'cluster.hit_rate*, cluster.trace.*, cluster.concurrency.*, cluster.redis_kill.*', 'redis-server not found (scripts/install-system-deps.sh --for bench)');
      return figures;
    }
    const root = outputRoot('cluster-replicas');
    ctx.log(`cluster-replicas: results under ${root}`);
    const groups = ctx.quick ? 40 : 80;
    const perGroup = ctx.quick ? 8 : 16;
    const prompts = groups * perGroup;
    const workload: Partial<WorkloadOptions> = { gspNumGroups: groups, gspPromptsPerGroup: perGroup };
    const capacity = await probeCapacity(ctx, { ...CACHE_SETUP, workload: { ...CACHE_SETUP.workload, ...workload } }, { policy: 'cache_aware' }, CACHE_SETUP.workers * 32, prompts, root);
    const rate = Math.round(capacity * 0.8 * 100) / 100;
    ctx.log(`cluster-replicas: capacity ${capacity.toFixed(2)} req/s (1 replica, cache_aware); offering ${rate} req/s (Poisson)`);
    const offered = { ...workload, requestRate: rate, numPrompts: prompts };

    const single = await runCluster(ctx, root, 'single', { replicas: 1, redis: false, policy: 'cache_aware', workload: offered });
    const rr = await runCluster(ctx, root, 'round_robin', { replicas: 1, redis: false, policy: 'round_robin', workload: offered });
    const shared = await runCluster(ctx, root, 'shared', { replicas: REPLICAS, redis: true, policy: 'cache_aware', workload: offered }, traceProbes);
    const unshared = await runCluster(ctx, root, 'unshared', { replicas: REPLICAS, redis: true, policy: 'cache_aware', args: ['--no-affinity-sharing'], workload: offered });

    const hit = (r: RunResult): number => r.summary.cache_hit_rate;
    const gain = (r: RunResult): number => ratio(hit(r) - hit(rr), hit(single) - hit(rr));
    for (const r of [single, rr, shared, unshared]) {
      figures.push({ name: `cluster.hit_rate.${r.label}`, value: Math.round(hit(r) * 1000) / 1000, unit: 'ratio', better: 'higher', note: `TTFT p90 ${Number(r.summary['p90_ttft_ms']).toFixed(0)} ms, ${r.summary.failed} failed` });
    }
    figures.push(
      { name: 'cluster.hit_rate_ratio.shared', value: ratio(hit(shared), hit(single)), unit: 'x', better: 'higher', note: `${REPLICAS} replicas sharing / 1 replica (target >= 0.9)` },
      { name: 'cluster.hit_rate_ratio.unshared', value: ratio(hit(unshared), hit(single)), unit: 'x', better: 'higher', note: `${REPLICAS} replicas, --no-affinity-sharing / 1 replica` },
      { name: 'cluster.gain_share.shared', value: gain(shared), unit: 'x', better: 'higher', note: '(hit - round_robin) / (1 replica - round_robin)' },
      { name: 'cluster.gain_share.unshared', value: gain(unshared), unit: 'x', better: 'higher', note: 'the same without sharing' },
    );
    const tr = shared.extra;
    if ((tr['probes'] ?? 0) > 0 && (tr['missing'] ?? 0) < (tr['probes'] ?? 0)) {
      figures.push(
        { name: 'cluster.trace.visible_max_ms', value: Math.round(tr['max_ms'] as number), unit: 'ms', better: 'lower', note: `p50 ${Math.round(tr['p50_ms'] as number)} ms over ${tr['probes']} probes, ${tr['missing']} never visible within 5 s (target <= 1000)` },
        { name: 'cluster.trace.missing', value: tr['missing'] as number, unit: 'probes', better: 'lower' },
      );
    } else {
      reportSkip(ctx, 'cluster.trace.*', `no trace became visible on another replica (${tr['probes'] ?? 0} probes): shared traces not available`);
    }

    // Global concurrency limit: closed loop at three times the limit.
    const limit = 48;
    const conc = await runCluster(
      ctx,
      root,
      'concurrency',
      {
        replicas: REPLICAS,
        redis: true,
        policy: 'cache_aware',
        args: ['--max-concurrent-requests', String(limit), '--queue-size', '4096', '--queue-timeout-secs', '600'],
        workload: { ...workload, requestRate: Number.POSITIVE_INFINITY, maxConcurrency: limit * 3, numPrompts: Math.min(prompts, ctx.quick ? 240 : 640) },
      },
      concurrencySamples,
    );
    figures.push(
      { name: 'cluster.concurrency.max_over_limit', value: ratio(conc.extra['max'] as number, limit), unit: 'x', better: 'lower', note: `fleet running+waiting max ${conc.extra['max']}, p99 ${conc.extra['p99']}, median ${conc.extra['median']} with --max-concurrent-requests ${limit} on each of ${REPLICAS} replicas, ${limit * 3} clients (target <= 1.05)` },
      { name: 'cluster.concurrency.failed', value: conc.summary.failed, unit: 'requests', better: 'lower' },
    );

    // Redis killed a third of the way in, back at two thirds.
    const killPrompts = ctx.quick ? 240 : 640;
    const expectedSecs = killPrompts / rate;
    let killedAt = Number.NaN;
    const kill = await runCluster(
      ctx,
      root,
      'redis-kill',
      // with the global limit on, so the kill exercises admission's fallback and its return to leases too
      { replicas: REPLICAS, redis: true, policy: 'cache_aware', args: ['--max-concurrent-requests', String(limit), '--queue-size', '4096', '--queue-timeout-secs', '600'], workload: { ...workload, requestRate: rate, numPrompts: killPrompts } },
      async (c, done): Promise<Record<string, number>> => {
        const t0 = performance.now();
        await new Promise((r) => setTimeout(r, (expectedSecs * 1000) / 3));
        if (done()) return {};
        await c.redis!.kill9();
        killedAt = performance.now() - t0;
        await new Promise((r) => setTimeout(r, (expectedSecs * 1000) / 3));
        await c.redis!.launch();
        return { killed_at_ms: killedAt, restarted_at_ms: performance.now() - t0 };
      },
    );
    figures.push({
      name: 'cluster.redis_kill.failed',
      value: kill.summary.failed,
      unit: 'requests',
      better: 'lower',
      note: `${kill.summary.completed} completed; redis-server killed at ${((kill.extra['killed_at_ms'] ?? Number.NaN) / 1000).toFixed(1)} s, restarted at ${((kill.extra['restarted_at_ms'] ?? Number.NaN) / 1000).toFixed(1)} s; global --max-concurrent-requests ${limit}; hit rate ${(kill.summary.cache_hit_rate * 100).toFixed(1)}% (target 0 failed)`,
    });
    return figures;
  },
};

export default scenario;
