/**
 * Routing quality, cache affinity: cache_aware against round_robin on 8 simulated workers with a
 * generated-shared-prefix workload offered at ~80% of the fleet's capacity, same seed for both.
 *
 *   quality.cache.capacity_rps            closed-loop requests/s of the fleet under cache_aware (the
 *                                         capacity the offered rate is 80% of)
 *   quality.cache.ttft_p90_ratio          cache_aware p90 TTFT / round_robin p90 TTFT      (target <= 0.3)
 *   quality.cache.output_throughput_ratio cache_aware / round_robin output tok/s            (target >= 1.5)
 *   quality.cache.hit_rate_ratio          cache_aware / round_robin cache hit rate          (target >= 3)
 *   quality.cache.<policy>.*              the absolute figures behind the ratios
 *
 * The fleet: the sim's `llm-d` timing profile (llm-d-inference-sim's 8B-on-H100 figures: prefill 30 ms +
 * 0.25 ms/token, ITL 11.2 ms + 0.8 ms per running sequence, 16 sequences) with a KV cache of 170k tokens
 * per worker, time-scaled x0.5. The workload: SGLang's generated-shared-prefix shape sized like llm-d's
 * published prefix-cache benchmark (6K-token shared prefixes): 80 groups x 16 prompts, a 6000-token system
 * prompt per group, 128-token questions, 64 output tokens. The 480k tokens of system prompts fit in the
 * fleet's caches when each worker keeps its own groups (~60k each), not in any one worker's.
 * Capacity: closed-loop requests/s under cache_aware (256 in flight); the runs offer 80% of it (Poisson).
 * Metric definitions: docs/load-testing.md (TTFT: sent -> first content chunk).
 */
import { outputRoot, probeCapacity, ratio, runPolicies, type QualitySetup } from '../lib/quality.js';
import type { BenchContext, Figure, Scenario } from '../lib/scenario.js';

export const CACHE_SETUP: QualitySetup = {
  name: 'quality-cache',
  workers: 8,
  sim: { profile: 'llm-d', maxTotalTokens: 170_000, timeScale: 0.5, seed: 1 },
  workload: {
    dataset: 'generated-shared-prefix',
    gspNumGroups: 80,
    gspPromptsPerGroup: 16,
    gspSystemPromptLen: 6000,
    gspQuestionLen: 128,
    gspOutputLen: 64,
    seed: 11,
    warmupRequests: 0,
  },
};

const scenario: Scenario = {
  name: 'quality-cache',
  description: 'cache_aware vs round_robin on 8 sim workers, generated-shared-prefix at ~80% capacity: TTFT p90, output throughput, cache hit rate',
  async run(ctx: BenchContext): Promise<Figure[]> {
    const root = outputRoot(CACHE_SETUP.name);
    const prompts = 80 * 16;
    // closed loop, two requests per batch slot in flight: every worker stays busy even where load is uneven
    const capacity = await probeCapacity(ctx, CACHE_SETUP, { policy: 'cache_aware' }, CACHE_SETUP.workers * 16 * 2, prompts, root);
    const rate = Math.round(capacity * 0.8 * 100) / 100;
    ctx.log(`quality-cache: capacity ${capacity.toFixed(2)} req/s under cache_aware; offering ${rate} req/s (Poisson)`);
    const [rr, ca] = await runPolicies(ctx, CACHE_SETUP, [{ policy: 'round_robin' }, { policy: 'cache_aware' }], { requestRate: rate, numPrompts: prompts }, root);
    const a = ca!.summary;
    const b = rr!.summary;
    const figures: Figure[] = [
      { name: 'quality.cache.capacity_rps', value: Math.round(capacity * 100) / 100, unit: 'req/s', better: 'higher', note: `offered ${rate} req/s (80%)` },
      { name: 'quality.cache.ttft_p90_ratio', value: ratio(a['p90_ttft_ms'] as number, b['p90_ttft_ms'] as number), unit: 'x', better: 'lower', note: 'cache_aware / round_robin (target <= 0.3)' },
      { name: 'quality.cache.output_throughput_ratio', value: ratio(a.output_throughput, b.output_throughput), unit: 'x', better: 'higher', note: 'cache_aware / round_robin (target >= 1.5)' },
      { name: 'quality.cache.hit_rate_ratio', value: ratio(a.cache_hit_rate, b.cache_hit_rate), unit: 'x', better: 'higher', note: 'cache_aware / round_robin (target >= 3)' },
    ];
    for (const r of [rr!, ca!]) {
      const s = r.summary;
      figures.push(
        { name: `quality.cache.${r.label}.ttft_p90_ms`, value: Math.round(s['p90_ttft_ms'] as number), unit: 'ms', better: 'lower' },
        { name: `quality.cache.${r.label}.output_tok_s`, value: Math.round(s.output_throughput), unit: 'tok/s', better: 'higher' },
        { name: `quality.cache.${r.label}.cache_hit_rate`, value: Math.round(s.cache_hit_rate * 1000) / 1000, unit: 'ratio', better: 'higher' },
        { name: `quality.cache.${r.label}.failed`, value: s.failed, unit: 'requests', better: 'lower' },
      );
    }
    return figures;
  },
};

export default scenario;
