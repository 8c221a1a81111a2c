/**
 * `round_robin`, as SGLang's router does it: a counter, taken modulo the number of currently available
 * workers (healthy and breaker not open), indexes the available list in membership order. The counter
 * advances only when a worker is chosen. Its one piece of state is a counter, so it decides on the front
 * end like the stateless policies.
 */
import { collectAvailable, decisionFor } from './common.js';
import type { Decision, Policy, PolicyContext, PolicyFactoryOptions, RequestFeatures, WorkerInfo } from './types.js';

export function createRoundRobinPolicy(_options: PolicyFactoryOptions = {}): Policy {
  const candidates: WorkerInfo[] = [];
  let counter = 0;
  return {
    name: 'round_robin',
    stateful: false,
    select(_req: RequestFeatures, ctx: PolicyContext): Decision | null {
      const n = collectAvailable(ctx.table, ctx.workers, candidates);
      if (n === 0) return null;
      const c = counter;
      counter = c === Number.MAX_SAFE_INTEGER ? 0 : c + 1;
      const i = c % n;
      return decisionFor(candidates[i] as WorkerInfo, `round_robin: counter ${c} mod ${n}`, { counter: c, available: n, pick: i });
    },
    snapshot(): unknown {
      return { counter };
    },
  };
}
