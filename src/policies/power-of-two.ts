/**
 * `power_of_two`, as SGLang's router does it: two distinct workers drawn at random from the available
 * ones, the less loaded wins, a tie goes to the first drawn. Load is the worker-reported token count
 * (/get_load, polled into the worker table) when both have a fresh report, else the router's own
 * in-flight count. (sgl-router falls back per worker; comparing one worker's tokens with the other's
 * request count would always favour the unreported one, so ours falls back for the pair.)
 * Stateless: it decides on the front end.
 */
import { Field } from '../actors/worker-table.js';
import { collectAvailable, decisionFor } from './common.js';
import { hasFreshReport, reportClockSec, reportMaxAge } from './reported.js';
import type { Decision, Policy, PolicyContext, PolicyFactoryOptions, RequestFeatures, WorkerInfo } from './types.js';

export function createPowerOfTwoPolicy(options: PolicyFactoryOptions = {}): Policy {
  const maxAge = reportMaxAge(options, 'power_of_two');
  const candidates: WorkerInfo[] = [];
  return {
    name: 'power_of_two',
    stateful: false,
    select(_req: RequestFeatures, ctx: PolicyContext): Decision | null {
      const table = ctx.table;
      const n = collectAvailable(table, ctx.workers, candidates);
      if (n === 0) return null;
      if (n === 1) {
        const only = candidates[0] as WorkerInfo;
        const load = table.peek(only.slot, Field.InFlightRequests);
        return decisionFor(only, `power_of_two: ${only.url} is the only available worker (in-flight ${load})`, { load, available: 1 });
      }
      const i = Math.floor(ctx.rng.next() * n);
      let j = Math.floor(ctx.rng.next() * (n - 1));
      if (j >= i) j++;
      const a = candidates[i] as WorkerInfo;
      const b = candidates[j] as WorkerInfo;
      const nowSec = reportClockSec();
      const byTokens = hasFreshReport(table, a.slot, nowSec, maxAge) && hasFreshReport(table, b.slot, nowSec, maxAge);
      const la = byTokens ? table.peek(a.slot, Field.ReportedTokens) : table.peek(a.slot, Field.InFlightRequests);
      const lb = byTokens ? table.peek(b.slot, Field.ReportedTokens) : table.peek(b.slot, Field.InFlightRequests);
      const firstWins = la <= lb;
      const w = firstWins ? a : b;
      const unit = byTokens ? 'reported tokens' : 'in-flight';
      return decisionFor(w, `power_of_two: ${a.url} (${unit} ${la}) vs ${b.url} (${unit} ${lb}) -> ${w.url}`, {
        load: firstWins ? la : lb,
        load_first: la,
        load_second: lb,
        by_tokens: byTokens ? 1 : 0,
        available: n,
      });
    },
  };
}
