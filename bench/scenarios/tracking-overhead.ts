/**
 * What request tracking costs end to end: three routers in front of the same light backend, identical
 * but for tracking: off (--no-enable-request-tracking), on (the default: the tracker actor, in memory),
 * and on with the trace log (--trace-log-dir), loaded in turn by the same wrk run (several interleaved
 * rounds, order rotated; small JSON and 100-event SSE streams). bench/lib/router-variants.ts runs it
 * (shared with stats-overhead).
 *
 *   tracking.e2e.<workload>.rps_ratio       on / off, median of the per-round ratios (target >= 0.97)
 *   tracking.e2e.<workload>.p99_ratio       on / off (target <= 1.05)
 *   tracking.e2e.<workload>.cpu_ratio       router CPU per request (all threads), on / off
 *   tracking.e2e.<workload>.log_{rps,p99,cpu}_ratio   on with the trace log / off
 *   tracking.e2e.<workload>.{off,on,log}_{cpu_us,rps,p99_ms}   the medians behind them
 */
import type { BenchContext, Figure, Scenario } from '../lib/scenario.js';
import { compareRouterVariants } from '../lib/router-variants.js';

const scenario: Scenario = {
  name: 'tracking-overhead',
  description: 'request tracking off vs on vs on+trace log, same wrk run against the light backend (JSON and 100-event SSE), interleaved rounds',
  needs: ['wrk'],
  run(ctx: BenchContext): Promise<Figure[]> {
    return compareRouterVariants(ctx, {
      figurePrefix: 'tracking.e2e',
      what: 'tracking',
      variants: [
        { name: 'off', args: () => ['--no-enable-request-tracking'], note: '--no-enable-request-tracking' },
        { name: 'on', args: () => [], note: 'tracking on (default)' },
        { name: 'log', args: (dir) => ['--trace-log-dir', dir], note: 'tracking on, --trace-log-dir' },
      ],
      baseline: 'off',
      ratios: [
        { variant: 'on', prefix: '', label: 'tracking on / off' },
        { variant: 'log', prefix: 'log_', label: 'tracking + trace log / off' },
      ],
      scrape: false,
    });
  },
};

export default scenario;
