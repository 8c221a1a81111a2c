/**
 * Arrival processes: the scheduled send times of the workload, in ms from the start of the run.
 *
 * - rate = Infinity: every request is due at 0 (sent as fast as --max-concurrency allows).
 * - burstiness = 1: a Poisson process (exponential gaps with mean 1/rate).
 * - otherwise: gamma-distributed gaps with shape = burstiness and scale = 1/(rate * burstiness) (the mean
 *   gap stays 1/rate; burstiness < 1 is burstier, > 1 more regular), as SGLang's bench_serving does.
 * The gaps come from their own seeded stream, so changing the rate never changes the prompts.
 */
import { Rng } from '../util/rng.js';
import { subSeed } from './datasets.js';

export interface ArrivalOptions {
  /** Requests per second; Infinity for "all at once". */
  requestRate: number;
  burstiness: number;
  seed: number;
}

export class ArrivalProcess {
  private readonly rng: Rng;
  private readonly meanGapMs: number;
  private readonly shape: number;
  private readonly scaleMs: number;
  private t = 0;
  private first = true;

  constructor(readonly opts: ArrivalOptions) {
    if (!(opts.requestRate > 0)) throw new Error(`request rate must be > 0, got ${opts.requestRate}`);
    if (!(opts.burstiness > 0) || !Number.isFinite(opts.burstiness)) throw new Error(`burstiness must be a finite number > 0, got ${opts.burstiness}`);
    this.rng = new Rng(subSeed(opts.seed, 7));
    this.meanGapMs = 1000 / opts.requestRate;
    this.shape = opts.burstiness;
    this.scaleMs = 1000 / (opts.requestRate * opts.burstiness);
  }

  /** One gap in ms. */
  gap(): number {
    if (!Number.isFinite(this.opts.requestRate)) return 0;
    if (this.shape === 1) return this.rng.exponential(this.meanGapMs);
    return this.rng.gamma(this.shape, this.scaleMs);
  }

  /**
   * Scheduled time (ms from the run's start) of the next request. The first request is due at 0, as in
   * bench_serving (it sends, then sleeps the next interval).
   */
  next(): number {
    if (this.first) {
      this.first = false;
      return 0;
    }
    this.t += this.gap();
    return this.t;
  }
}

/** Parses --request-rate: a positive number or "inf". */
export function parseRequestRate(raw: string): number {
  const v = raw.trim().toLowerCase();
  if (v === 'inf' || v === 'infinity') return Number.POSITIVE_INFINITY;
  const n = Number(v);
  if (v === '' || !Number.isFinite(n) || n <= 0) throw new Error(`--request-rate must be a number > 0 or inf, got '${raw}'`);
  return n;
}
