/**
 * `random`, as SGLang's router does it: a uniformly random pick among the available workers (healthy and
 * circuit breaker not open); null when there are none. Stateless: it decides on the front end.
 */
import { collectAvailable, decisionFor } from './common.js';
import type { Decision, Policy, PolicyContext, PolicyFactoryOptions, RequestFeatures, WorkerInfo } from './types.js';

export function createRandomPolicy(_options: PolicyFactoryOptions = {}): Policy {
  const candidates: WorkerInfo[] = [];
  return {
    name: 'random',
    stateful: false,
    select(_req: RequestFeatures, ctx: PolicyContext): Decision | null {
      const n = collectAvailable(ctx.table, ctx.workers, candidates);
      if (n === 0) return null;
      const i = Math.floor(ctx.rng.next() * n);
      return decisionFor(candidates[i] as WorkerInfo, `random: pick ${i} of ${n} available`, { pick: i, available: n });
    },
  };
}
