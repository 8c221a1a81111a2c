/**
 * `round_robin`, as SGLang's router does it: a counter, taken modulo the number of currently available
 * workers (healthy and breaker not open), indexes the available list in membership order. The counter
 * advances only when a worker is chosen. Its one piece of state is a counter, so it decides on the front
 * end like the stateless policies.
 *
 * With several front-end threads (--frontend-threads) each runs its own copy of the policy; the option
 * `sharedCounter` (a SharedArrayBuffer of 4 bytes) makes them advance ONE counter (Atomics.add), so the
 * rotation is the router's, not each thread's.
 */
import { collectAvailable, decisionFor } from './common.js';
import type { Decision, Policy, PolicyContext, PolicyFactoryOptions, RequestFeatures, WorkerInfo } from './types.js';

export function createRoundRobinPolicy(options: PolicyFactoryOptions = {}): Policy {
  const candidates: WorkerInfo[] = [];
  const sharedBuffer = options['sharedCounter'];
  const shared = sharedBuffer instanceof SharedArrayBuffer ? new Uint32Array(sharedBuffer, 0, 1) : undefined;
  let counter = 0;
  return {
    name: 'round_robin',
    stateful: false,
    select(_req: RequestFeatures, ctx: PolicyContext): Decision | null {
      const n = collectAvailable(ctx.table, ctx.workers, candidates);
      if (n === 0) return null;
      let c: number;
      if (shared !== undefined) c = Atomics.add(shared, 0, 1);
      else {
        c = counter;
        counter = c === Number.MAX_SAFE_INTEGER ? 0 : c + 1;
      }
      const i = c % n;
      return decisionFor(candidates[i] as WorkerInfo, `round_robin: counter ${c} mod ${n}`, { counter: c, available: n, pick: i });
    },
    snapshot(): unknown {
      return { counter: shared !== undefined ? Atomics.load(shared, 0) : counter };
    },
  };
}
