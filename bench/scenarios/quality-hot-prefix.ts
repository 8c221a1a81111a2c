/**
 * Routing quality, load guard: ONE hot prefix shared by every request (a single system prompt, the case
 * that sent all traffic to 1 of 8 instances in peer routers). cache_aware must still spread the load:
 *
 *   quality.hot_prefix.cache_aware.max_share_ratio   busiest worker's share of the requests / fair share
 *                                                    (1/8)                                   (target <= 1.25)
 *   quality.hot_prefix.cache_aware.min_share_ratio   idlest worker's share / fair share (for the picture)
 *   quality.hot_prefix.cache_aware.cache_hit_rate    and the cache it kept while spreading
 *   quality.hot_prefix.cache_aware_no_replication.*  the same with --hot-prefix-factor 0 (SGLang's rule)
 *   quality.hot_prefix.cache_aware_abs4.*  --hot-prefix-factor 0 --balance-abs-threshold 4
 *   quality.hot_prefix.round_robin.*                 the same for round_robin (share 1.0 by construction)
 *   quality.hot_prefix.capacity_rps                  closed-loop requests/s under round_robin; runs offer 80%
 *
 * cache_aware runs with its DEFAULTS (SGLang's balance thresholds 64 / 1.5 and our hot-prefix replication,
 * --hot-prefix-factor 1.1): the thresholds count in-flight requests and these workers run 16 sequences each
 * (~9 in flight per worker at this rate), so the imbalance rule never fires; what spreads the prompt is the
 * replication: while more of the traffic crosses the prompt than its holders' fair share, a hit goes to
 * the least-loaded worker, which then holds it too, and ties among holders go to the least loaded.
 * References: the same without replication (--hot-prefix-factor 0: the holders take everything, measured
 * ~1.7x fair share with workers idle), and with the tight bound that used to be the advice
 * (--hot-prefix-factor 0 --balance-abs-threshold 4).
 *
 * Same fleet as quality-cache (sim `llm-d` profile, 170k-token KV cache, x0.5 time); workload: one group of
 * 1024 prompts, 6000-token system prompt, 128-token questions, 64 output tokens.
 */
import { outputRoot, probeCapacity, runPolicies, type QualitySetup } from '../lib/quality.js';
import type { BenchContext, Figure, Scenario } from '../lib/scenario.js';

export const HOT_SETUP: QualitySetup = {
  name: 'quality-hot-prefix',
  workers: 8,
  sim: { profile: 'llm-d', maxTotalTokens: 170_000, timeScale: 0.5, seed: 2 },
  workload: {
    dataset: 'generated-shared-prefix',
    gspNumGroups: 1,
    gspPromptsPerGroup: 1024,
    gspSystemPromptLen: 6000,
    gspQuestionLen: 128,
    gspOutputLen: 64,
    seed: 12,
    warmupRequests: 0,
  },
};

const scenario: Scenario = {
  name: 'quality-hot-prefix',
  description: 'one prefix shared by every request: cache_aware must not pile the load on one worker (max share <= 1.25x fair)',
  async run(ctx: BenchContext): Promise<Figure[]> {
    const root = outputRoot(HOT_SETUP.name);
    const capacity = await probeCapacity(ctx, HOT_SETUP, { policy: 'round_robin' }, HOT_SETUP.workers * 16 * 2, 1024, root);
    const rate = Math.round(capacity * 0.8 * 100) / 100;
    ctx.log(`quality-hot-prefix: capacity ${capacity.toFixed(2)} req/s under round_robin; offering ${rate} req/s (Poisson)`);
    const runs = await runPolicies(
      ctx,
      HOT_SETUP,
      [
        { policy: 'round_robin' },
        { policy: 'cache_aware' },
        { label: 'cache_aware_no_replication', policy: 'cache_aware', args: ['--hot-prefix-factor', '0'] },
        ...(ctx.quick ? [] : [{ label: 'cache_aware_abs4', policy: 'cache_aware', args: ['--hot-prefix-factor', '0', '--balance-abs-threshold', '4'] }]),
      ],
      { requestRate: rate },
      root,
    );
    const fair = 1 / HOT_SETUP.workers;
    const figures: Figure[] = [{ name: 'quality.hot_prefix.capacity_rps', value: Math.round(capacity * 100) / 100, unit: 'req/s', better: 'higher', note: `offered ${rate} req/s (80%)` }];
    for (const r of runs) {
      const max = Math.max(...r.shares);
      const min = Math.min(...r.shares);
      figures.push(
        { name: `quality.hot_prefix.${r.label}.max_share_ratio`, value: Math.round((max / fair) * 1000) / 1000, unit: 'x fair', better: 'lower', note: r.label === 'cache_aware' ? 'target <= 1.25' : 'reference' },
        { name: `quality.hot_prefix.${r.label}.min_share_ratio`, value: Math.round((min / fair) * 1000) / 1000, unit: 'x fair', better: 'higher' },
        { name: `quality.hot_prefix.${r.label}.cache_hit_rate`, value: Math.round(r.summary.cache_hit_rate * 1000) / 1000, unit: 'ratio', better: 'higher' },
        { name: `quality.hot_prefix.${r.label}.ttft_p90_ms`, value: Math.round(r.summary['p90_ttft_ms'] as number), unit: 'ms', better: 'lower' },
      );
    }
    return figures;
  },
};

export default scenario;
