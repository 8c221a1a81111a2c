/**
 * The contract of a benchmark scenario: one file per scenario under bench/scenarios/ (pino's habit),
 * default-exporting a Scenario. bench/run.ts discovers them, runs them in one process-per-scenario
 * sequence, prints one table and writes a JSON result.
 */

export interface Figure {
  /** Stable id, e.g. "e2e.nonstream.router_vs_nginx" (the gate keys baselines on it). */
  readonly name: string;
  readonly value: number;
  readonly unit: string;
  /** Which direction is better; ratios against a same-run reference are the figures the gate trusts. */
  readonly better: 'higher' | 'lower';
  /** Spread over repeated runs: relative (e.g. 0.05 = +-5%, from the min/max or IQR of the runs). */
  readonly spread?: number;
  /** Free-form note printed beside the figure (e.g. the reference it is a ratio of). */
  readonly note?: string;
}

export interface BenchContext {
  /** --quick: fewer iterations/duration, used by the regression gate. */
  readonly quick: boolean;
  /** Seconds per measured load run (scenarios scale their own iteration counts from it). */
  readonly durationSec: number;
  /** Repetitions of each measured run; figures report the median and the spread. */
  readonly runs: number;
  log(message: string): void;
  /**
   * Record that part of the scenario could not be measured here (e.g. "e2e.stream.router.*", "router not
   * built yet"); the runner lists it as skipped beside the figures. Optional so that a hand-made context
   * (a test calling run() directly) need not provide it: call it through reportSkip().
   */
  skip?(what: string, reason: string): void;
}

/** Thrown by run() when the whole scenario cannot run on this machine: reported as skipped, not failed. */
export class ScenarioSkipped extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'ScenarioSkipped';
  }
}

/** ctx.skip when the runner provides it, else a log line. */
export function reportSkip(ctx: BenchContext, what: string, reason: string): void {
  if (ctx.skip !== undefined) ctx.skip(what, reason);
  else ctx.log(`skipped ${what}: ${reason}`);
}

export interface Scenario {
  readonly name: string;
  readonly description: string;
  /** Part of `npm run gate`'s quick subset. */
  readonly gate?: boolean;
  /** Debian packages the scenario needs (installed by scripts/install-system-deps.sh --for bench). */
  readonly needs?: readonly string[];
  run(ctx: BenchContext): Promise<Figure[]>;
}

/** Median and relative spread ((max - min) / 2 / median) of repeated measurements. */
export function summarize(values: readonly number[]): { median: number; spread: number } {
  if (values.length === 0) return { median: Number.NaN, spread: Number.NaN };
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
  const spread = median === 0 ? 0 : ((sorted[sorted.length - 1] as number) - (sorted[0] as number)) / 2 / Math.abs(median);
  return { median, spread };
}
