/**
 * Fault injection state of one simulated server: decides per data request whether it is served,
 * fails, hangs or crashes the server, and whether health checks fail. Settings change at runtime.
 */
import { performance } from 'node:perf_hooks';
import { Rng } from '../util/rng.js';
import { FAULT_KEYS, validateFaults, type SimFaults } from './options.js';

export type FaultDecision = 'serve' | 'fail' | 'hang' | 'crash' | 'garbage';

export class FaultInjector {
  private settings: SimFaults;
  private readonly rng: Rng;
  /** Data requests seen since start. */
  dataRequests = 0;
  /** Data requests since crash-after / fail-first-n were last set (what they count). */
  private counted = 0;
  injectedFailures = 0;
  hangsStarted = 0;
  garbageAnswers = 0;
  private healthBase = performance.now();

  constructor(initial: SimFaults, seed: number) {
    this.settings = pickFaults(initial);
    this.rng = new Rng((seed ^ 0x5bd1e995) >>> 0);
  }

  get current(): SimFaults {
    return { ...this.settings };
  }

  /** Applies a validated partial; health-fail-after-ms counts from now when it is set. */
  update(patch: Partial<SimFaults>): SimFaults {
    validateFaults(patch);
    const next = { ...this.settings };
    for (const key of FAULT_KEYS) {
      const v = patch[key];
      if (v !== undefined) (next as Record<string, unknown>)[key] = v;
    }
    if (patch.healthFailAfterMs !== undefined) this.healthBase = performance.now();
    // A new fail-first-n / crash-after counts from the moment it is set.
    if (patch.failFirstN !== undefined || patch.crashAfter !== undefined) this.counted = 0;
    this.settings = next;
    return this.current;
  }

  /** Called once per data request, after its body was read. */
  decide(): FaultDecision {
    const f = this.settings;
    this.dataRequests++;
    const n = ++this.counted;
    if (f.crashAfter >= 0 && n > f.crashAfter) return 'crash';
    if (f.hang || (f.hangRate > 0 && this.rng.next() < f.hangRate)) {
      this.hangsStarted++;
      return 'hang';
    }
    if (n <= f.failFirstN || (f.failRate > 0 && this.rng.next() < f.failRate)) {
      this.injectedFailures++;
      return 'fail';
    }
    if (f.garbageRate > 0 && this.rng.next() < f.garbageRate) {
      this.garbageAnswers++;
      return 'garbage';
    }
    return 'serve';
  }

  healthFailing(): boolean {
    const after = this.settings.healthFailAfterMs;
    return after >= 0 && performance.now() - this.healthBase >= after;
  }
}

export function pickFaults(o: SimFaults): SimFaults {
  const out = {} as Record<string, unknown>;
  for (const key of FAULT_KEYS) out[key] = o[key];
  return out as unknown as SimFaults;
}
