/**
 * What statistics cost end to end: a router with the stats actor (the default) against one with
 * --disable-stats, in front of the same light backend, loaded in turn by the same wrk run (several
 * interleaved rounds, order rotated; small JSON and 100-event SSE streams), /metrics of each scraped
 * every second as Prometheus would. bench/lib/router-variants.ts runs it (shared with tracking-overhead).
 *
 *   stats.e2e.<workload>.rps_ratio   stats on / off, median of the per-round ratios (target >= 0.97)
 *   stats.e2e.<workload>.p99_ratio   stats on / off (target <= 1.05)
 *   stats.e2e.<workload>.cpu_ratio   router CPU time per request (all threads), stats on / off
 *   stats.e2e.<workload>.{on,off}_cpu_us, {on,off}_rps, {on,off}_p99_ms   the medians behind them
 */
import type { BenchContext, Figure, Scenario } from '../lib/scenario.js';
import { compareRouterVariants } from '../lib/router-variants.js';

const scenario: Scenario = {
  name: 'stats-overhead',
  description: 'stats on vs --disable-stats, same wrk run against the light backend (JSON and 100-event SSE), interleaved rounds, /metrics scraped every second',
  needs: ['wrk'],
  run(ctx: BenchContext): Promise<Figure[]> {
    return compareRouterVariants(ctx, {
      figurePrefix: 'stats.e2e',
      what: 'stats',
      variants: [
        { name: 'on', args: () => [], note: 'stats actor on (default)' },
        { name: 'off', args: () => ['--disable-stats'], note: '--disable-stats' },
      ],
      baseline: 'off',
      ratios: [{ variant: 'on', prefix: '', label: 'stats on / off' }],
      scrape: true,
    });
  },
};

export default scenario;
