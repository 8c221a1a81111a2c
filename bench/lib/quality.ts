/**
 * Routing-quality runs for the bench/scenarios/quality-*.ts scenarios, on the load generator of
 * src/load (the one `switchyard compare` uses): for each policy a FRESH simulated fleet (its own worker
 * thread) and a FRESH router (`switchyard serve` child process) take the same seeded workload, so runs
 * differ only by the policy (and the flags given with it).
 *
 * Capacity: `probeCapacity` runs the workload closed-loop (every batch slot of every worker kept busy,
 * no arrival schedule) through a given policy and reports the completed requests per second; scenarios
 * then offer a fraction of it as a Poisson rate.
 */
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFleet, startRouterProcess } from '../../src/load/harness.js';
import { defaultWorkload, type WorkloadOptions } from '../../src/load/options.js';
import { runLoad } from '../../src/load/runner.js';
import type { LoadSummary } from '../../src/load/summary.js';
import type { SimOptions } from '../../src/sim/options.js';
import type { BenchContext } from './scenario.js';

export interface PolicyUnderTest {
  /** Label of the run (defaults to the policy). */
  readonly label?: string;
  readonly policy: string;
  /** Extra `switchyard serve` flags. */
  readonly args?: readonly string[];
}

export interface QualitySetup {
  /** Scenario name: the folder the runs write to. */
  readonly name: string;
  readonly workers: number;
  readonly sim: Partial<SimOptions>;
  readonly workload: Partial<WorkloadOptions>;
}

export interface PolicyResult {
  readonly label: string;
  readonly policy: string;
  readonly summary: LoadSummary;
  /** Share of the completed requests per worker, by sim server index. */
  readonly shares: readonly number[];
  readonly dir: string;
}

function outputRoot(name: string): string {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const dir = join(tmpdir(), `switchyard-${name}-${stamp}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** One policy, fresh fleet and router, one load run. */
export async function runPolicy(ctx: BenchContext, setup: QualitySetup, p: PolicyUnderTest, root: string, workload: Partial<WorkloadOptions> = {}): Promise<PolicyResult> {
  const label = p.label ?? p.policy;
  const dir = join(root, label);
  mkdirSync(dir, { recursive: true });
  const w = defaultWorkload({ ...setup.workload, ...workload });
  const fleet = await startFleet(setup.sim, setup.workers);
  try {
    const router = await startRouterProcess({ workerUrls: fleet.urls, policy: p.policy, seed: w.seed, extraArgs: p.args ?? [], logPath: join(dir, 'router.log') });
    try {
      const result = await runLoad(
        { ...w, url: router.url, output: dir, target: 'router', gpuFallbackPolicy: 'none', numGpus: setup.workers, runId: `${label}-${w.seed}`, quiet: true, progress: 'off' },
        { log: () => undefined, out: () => undefined, label },
      );
      const s = result.summary;
      // by sim server index (what slowFactor and the like are indexed by), matched on the worker URL
      const shares = fleet.urls.map((url) => s.gpu_metrics.find((g) => g.worker_url === url)?.share ?? 0);
      ctx.log(
        `${setup.name}/${label}: ${s.completed} ok, ${s.failed} failed, ${s.request_throughput.toFixed(2)} req/s, ${s.output_throughput.toFixed(0)} out tok/s, ` +
          `TTFT p90 ${num(s['p90_ttft_ms'])} ms, E2E p99 ${num(s['p99_e2e_latency_ms'])} ms, cache hit ${(s.cache_hit_rate * 100).toFixed(1)}%, ` +
          `shares ${shares.map((x) => (x * 100).toFixed(1)).join('/')}%`,
      );
      return { label, policy: p.policy, summary: s, shares, dir };
    } finally {
      await router.stop();
    }
  } finally {
    await fleet.close();
  }
}

/** Requests/s the fleet completes closed-loop (`concurrency` requests always in flight) under `p`. */
export async function probeCapacity(ctx: BenchContext, setup: QualitySetup, p: PolicyUnderTest, concurrency: number, numPrompts: number, root: string): Promise<number> {
  const r = await runPolicy(ctx, setup, { ...p, label: `capacity-${p.label ?? p.policy}` }, root, { requestRate: Number.POSITIVE_INFINITY, maxConcurrency: concurrency, numPrompts });
  return r.summary.request_throughput;
}

/** Every policy on the same workload, one after another. */
export async function runPolicies(ctx: BenchContext, setup: QualitySetup, policies: readonly PolicyUnderTest[], workload: Partial<WorkloadOptions> = {}, root = outputRoot(setup.name)): Promise<PolicyResult[]> {
  ctx.log(`${setup.name}: results under ${root}`);
  const out: PolicyResult[] = [];
  for (const p of policies) out.push(await runPolicy(ctx, setup, p, root, workload));
  return out;
}

export { outputRoot };

export function num(v: unknown, digits = 1): string {
  return typeof v === 'number' && Number.isFinite(v) ? v.toFixed(digits) : '-';
}

/** A figure value: finite, rounded to 3 significant decimals of what it is. */
export function ratio(a: number, b: number): number {
  if (!(Number.isFinite(a) && Number.isFinite(b)) || b === 0) return Number.NaN;
  return Math.round((a / b) * 1000) / 1000;
}
