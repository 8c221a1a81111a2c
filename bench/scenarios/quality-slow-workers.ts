/**
 * Routing quality, heterogeneous fleet: 2 of 8 simulated workers run at half speed (sim slowFactor 2).
 * Load-aware policies must route around them:
 *
 *   quality.slow.shortest_queue.e2e_p99_ratio     shortest_queue p99 E2E / round_robin p99 E2E    (target <= 0.6)
 *   quality.slow.marginal_utility.e2e_p99_ratio   marginal_utility p99 E2E / round_robin p99 E2E  (target <= 0.6)
 *   quality.slow.<policy>.e2e_p99_ms              the absolute figures behind them
 *   quality.slow.<policy>.slow_share              share of the requests the two slow workers got (fair: 0.25)
 *   quality.slow.capacity_rps                     closed-loop requests/s under shortest_queue; runs offer 80%
 *
 * Fleet: sim `llm-d` profile (16 sequences per worker), time-scaled x0.5, workers 0 and 1 at half speed.
 * Workload: SGLang's `random` dataset (no shared prefixes, so caching plays no part), inputs uniform in
 * [512, 1024] tokens, outputs in [64, 128], Poisson arrivals, same seed for every policy.
 * E2E: request sent -> last byte (docs/load-testing.md).
 */
import { outputRoot, probeCapacity, ratio, runPolicies, type QualitySetup } from '../lib/quality.js';
import type { BenchContext, Figure, Scenario } from '../lib/scenario.js';

export const SLOW_SETUP: QualitySetup = {
  name: 'quality-slow-workers',
  workers: 8,
  sim: { profile: 'llm-d', timeScale: 0.5, seed: 3, slowFactor: [2, 2, 1] },
  workload: {
    dataset: 'random',
    randomInputLen: 1024,
    randomOutputLen: 128,
    randomRangeRatio: 0.5,
    numPrompts: 1024,
    seed: 13,
    warmupRequests: 0,
  },
};

const scenario: Scenario = {
  name: 'quality-slow-workers',
  description: '2 of 8 sim workers at half speed: shortest_queue and marginal_utility p99 E2E against round_robin',
  async run(ctx: BenchContext): Promise<Figure[]> {
    const root = outputRoot(SLOW_SETUP.name);
    const capacity = await probeCapacity(ctx, SLOW_SETUP, { policy: 'shortest_queue' }, SLOW_SETUP.workers * 16 * 2, 1024, root);
    const rate = Math.round(capacity * 0.8 * 100) / 100;
    ctx.log(`quality-slow-workers: capacity ${capacity.toFixed(2)} req/s under shortest_queue; offering ${rate} req/s (Poisson)`);
    const runs = await runPolicies(ctx, SLOW_SETUP, [{ policy: 'round_robin' }, { policy: 'shortest_queue' }, { policy: 'marginal_utility' }], { requestRate: rate }, root);
    const rr = runs[0]!.summary;
    const figures: Figure[] = [{ name: 'quality.slow.capacity_rps', value: Math.round(capacity * 100) / 100, unit: 'req/s', better: 'higher', note: `offered ${rate} req/s (80%)` }];
    for (const r of runs) {
      const s = r.summary;
      if (r.label !== 'round_robin') {
        figures.push({ name: `quality.slow.${r.label}.e2e_p99_ratio`, value: ratio(s['p99_e2e_latency_ms'] as number, rr['p99_e2e_latency_ms'] as number), unit: 'x', better: 'lower', note: `${r.label} / round_robin (target <= 0.6)` });
      }
      figures.push(
        { name: `quality.slow.${r.label}.e2e_p99_ms`, value: Math.round(s['p99_e2e_latency_ms'] as number), unit: 'ms', better: 'lower' },
        { name: `quality.slow.${r.label}.slow_share`, value: Math.round(((r.shares[0] ?? 0) + (r.shares[1] ?? 0)) * 1000) / 1000, unit: 'ratio', better: 'lower', note: 'requests on the two slow workers (fair 0.25)' },
        { name: `quality.slow.${r.label}.failed`, value: s.failed, unit: 'requests', better: 'lower' },
      );
    }
    return figures;
  },
};

export default scenario;
