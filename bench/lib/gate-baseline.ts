/**
 * The regression gate's pure parts: the baseline file (bench/baseline.json) and its validation, the
 * comparison of a run with it, updating it from a run, and the verdict table.
 *
 * A baseline names the figures the gate checks, each with its value, the direction that is better and
 * its tolerance (relative: 0.25 = 25%). A figure regresses when it is worse than the baseline by more than
 * the tolerance:
 *   better "higher":  measured < value x (1 - tolerance)
 *   better "lower":   measured > value x (1 + tolerance)
 * An entry without a value yet (`"value": null`) is filled by --update-baseline; checking against it is
 * an error, so a forgotten update never passes silently.
 */

export const BASELINE_SCHEMA = 1;

export interface BaselineFigure {
  /** null until --update-baseline measures it. */
  readonly value: number | null;
  readonly tolerance: number;
  readonly better: 'higher' | 'lower';
  readonly unit: string;
  /** Scenario that reports it (the gate re-runs only what a failing figure needs). */
  readonly scenario: string;
  /** Why this tolerance (the measured spread it was set from); free text, kept by updates. */
  readonly why?: string;
  /** Relative spread of the values the last update took the median of ((max - min) / 2 / median). */
  readonly observedSpread?: number;
}

export interface Baseline {
  readonly schema: typeof BASELINE_SCHEMA;
  readonly about?: string;
  /** Where the values came from (machine, commit, settings); written by --update-baseline. */
  readonly measured?: Readonly<Record<string, unknown>>;
  readonly figures: Readonly<Record<string, BaselineFigure>>;
}

export class BaselineError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BaselineError';
  }
}

/** Parse and validate a baseline document; every problem is listed in one error. */
export function parseBaseline(text: string, source = 'baseline'): Baseline {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new BaselineError(`${source}: not JSON (${(err as Error).message})`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new BaselineError(`${source}: must be a JSON object`);
  const d = doc as Record<string, unknown>;
  const problems: string[] = [];
  if (d['schema'] !== BASELINE_SCHEMA) problems.push(`schema must be ${BASELINE_SCHEMA}, got ${JSON.stringify(d['schema'])}`);
  const figs = d['figures'];
  if (figs === null || typeof figs !== 'object' || Array.isArray(figs)) {
    problems.push('figures must be an object keyed by figure name');
  } else {
    const entries = Object.entries(figs as Record<string, unknown>);
    if (entries.length === 0) problems.push('figures is empty: the gate would check nothing');
    for (const [name, raw] of entries) {
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
        problems.push(`${name}: must be an object`);
        continue;
      }
      const f = raw as Record<string, unknown>;
      const v = f['value'];
      if (v !== null && (typeof v !== 'number' || !Number.isFinite(v) || v <= 0)) problems.push(`${name}: value must be a positive number or null (not measured yet), got ${JSON.stringify(v)}`);
      const tol = f['tolerance'];
      if (typeof tol !== 'number' || !Number.isFinite(tol) || tol <= 0 || tol >= 10) problems.push(`${name}: tolerance must be a number in (0, 10) (0.25 = 25%), got ${JSON.stringify(tol)}`);
      else if (f['better'] === 'higher' && tol >= 1) problems.push(`${name}: tolerance ${tol} >= 1 with better "higher" could never fail`);
      if (f['better'] !== 'higher' && f['better'] !== 'lower') problems.push(`${name}: better must be "higher" or "lower", got ${JSON.stringify(f['better'])}`);
      if (typeof f['unit'] !== 'string') problems.push(`${name}: unit must be a string`);
      if (typeof f['scenario'] !== 'string' || f['scenario'] === '') problems.push(`${name}: scenario must name the scenario that reports it`);
      if (f['why'] !== undefined && typeof f['why'] !== 'string') problems.push(`${name}: why must be a string`);
      const os = f['observedSpread'];
      if (os !== undefined && (typeof os !== 'number' || !Number.isFinite(os) || os < 0)) problems.push(`${name}: observedSpread must be a non-negative number`);
    }
  }
  if (d['measured'] !== undefined && (d['measured'] === null || typeof d['measured'] !== 'object')) problems.push('measured must be an object');
  if (problems.length > 0) throw new BaselineError(`${source}: ${problems.join('; ')}`);
  return doc as Baseline;
}

/** Scenarios a baseline needs, in first-seen order. */
export function baselineScenarios(b: Baseline): string[] {
  return [...new Set(Object.values(b.figures).map((f) => f.scenario))];
}

export type Verdict = 'ok' | 'improved' | 'regressed' | 'not_measured' | 'no_baseline';

export interface FigureCheck {
  readonly name: string;
  readonly verdict: Verdict;
  /** Median of the attempts that measured it (NaN when none did). */
  readonly measured: number;
  /** Every attempt's value, in order (NaN where an attempt did not measure it). */
  readonly attempts: readonly number[];
  readonly baseline: number | null;
  readonly tolerance: number;
  /** The worst value that still passes. */
  readonly limit: number;
  readonly better: 'higher' | 'lower';
  readonly unit: string;
  /** measured / baseline - 1 (NaN when either is missing). */
  readonly change: number;
  /** One line for people: the failure message, or why it was not measured. */
  readonly message: string;
}

export function median(values: readonly number[]): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return Number.NaN;
  const mid = v.length >> 1;
  return v.length % 2 === 1 ? (v[mid] as number) : ((v[mid - 1] as number) + (v[mid] as number)) / 2;
}

/** Relative spread ((max - min) / 2 / median) of the finite values; 0 for fewer than two. */
export function relativeSpread(values: readonly number[]): number {
  const v = values.filter((x) => Number.isFinite(x));
  if (v.length < 2) return 0;
  const m = median(v);
  return m === 0 ? 0 : (Math.max(...v) - Math.min(...v)) / 2 / Math.abs(m);
}

/** "0.412", "14.2", "1234": 3 significant digits, whole numbers from 1000. */
export function fmt(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (Math.abs(v) >= 1000) return String(Math.round(v));
  return Number(v.toPrecision(3)).toString();
}

function pct(x: number): string {
  return `${Math.round(x * 100)}%`;
}

export function limitOf(f: Pick<BaselineFigure, 'better' | 'tolerance'>, value: number): number {
  return f.better === 'higher' ? value * (1 - f.tolerance) : value * (1 + f.tolerance);
}

/**
 * Judge one figure from its attempts' values (NaN where an attempt did not measure it). `why` explains a
 * figure no attempt measured (the scenario failed or was skipped).
 */
export function checkFigure(name: string, f: BaselineFigure, attempts: readonly number[], why?: string): FigureCheck {
  const measured = median(attempts);
  const base = f.value;
  const common = { name, attempts: [...attempts], baseline: base, tolerance: f.tolerance, better: f.better, unit: f.unit };
  if (base === null) {
    return { ...common, verdict: 'no_baseline', measured, limit: Number.NaN, change: Number.NaN, message: `${name}: no baseline value yet (run the gate with --update-baseline)` };
  }
  const limit = limitOf(f, base);
  if (!Number.isFinite(measured)) {
    return { ...common, verdict: 'not_measured', measured, limit, change: Number.NaN, message: `${name}: not measured${why === undefined ? '' : ` (${why})`}` };
  }
  const change = measured / base - 1;
  const tries = attempts.length > 1 ? ` (median of ${attempts.filter(Number.isFinite).length} runs: ${attempts.map(fmt).join(', ')})` : '';
  if (f.better === 'higher' ? measured < limit : measured > limit) {
    const op = f.better === 'higher' ? '<' : '>';
    const sign = f.better === 'higher' ? '-' : '+';
    return { ...common, verdict: 'regressed', measured, limit, change, message: `${name} ${fmt(measured)} ${op} baseline ${fmt(base)} ${sign} ${pct(f.tolerance)} tolerance (limit ${fmt(limit)})${tries}` };
  }
  // Better than the baseline by more than the tolerance: not a failure, but the baseline is stale.
  const improved = f.better === 'higher' ? measured > base * (1 + f.tolerance) : measured < base * (1 - f.tolerance);
  if (improved) {
    return { ...common, verdict: 'improved', measured, limit, change, message: `${name} ${fmt(measured)} is better than baseline ${fmt(base)} by more than ${pct(f.tolerance)}: consider --update-baseline${tries}` };
  }
  return { ...common, verdict: 'ok', measured, limit, change, message: `${name} ${fmt(measured)} within ${pct(f.tolerance)} of baseline ${fmt(base)}${tries}` };
}

/** Figures whose verdict calls for another attempt (regressed, or no attempt has measured them yet). */
export function needsRetry(c: FigureCheck): boolean {
  return c.verdict === 'regressed' || c.verdict === 'not_measured';
}

/**
 * The baseline rewritten from measured values: each figure's value is the median of its values, its
 * observed spread recorded; tolerances, directions and notes kept. Figures not measured keep their old
 * value and are returned in `kept`.
 */
export function updateBaseline(b: Baseline, values: ReadonlyMap<string, readonly number[]>, measured: Readonly<Record<string, unknown>>): { baseline: Baseline; updated: string[]; kept: string[] } {
  const figures: Record<string, BaselineFigure> = {};
  const updated: string[] = [];
  const kept: string[] = [];
  for (const [name, f] of Object.entries(b.figures)) {
    const vs = (values.get(name) ?? []).filter(Number.isFinite);
    if (vs.length === 0) {
      figures[name] = f;
      kept.push(name);
      continue;
    }
    const m = median(vs);
    figures[name] = { ...f, value: Number(m.toPrecision(4)), observedSpread: Number(relativeSpread(vs).toFixed(3)) };
    updated.push(name);
  }
  const out: Baseline = { schema: BASELINE_SCHEMA, ...(b.about === undefined ? {} : { about: b.about }), measured, figures };
  return { baseline: out, updated, kept };
}

/** The verdict table printed at the end of a gate run. */
export function formatChecks(checks: readonly FigureCheck[]): string {
  const label: Record<Verdict, string> = { ok: 'ok', improved: 'improved', regressed: 'REGRESSED', not_measured: 'NOT MEASURED', no_baseline: 'NO BASELINE' };
  const rows: string[][] = [['figure', 'measured', 'baseline', 'tolerance', 'limit', 'change', 'runs', 'verdict']];
  for (const c of checks) {
    rows.push([
      c.name,
      Number.isFinite(c.measured) ? `${fmt(c.measured)} ${c.unit}` : '-',
      c.baseline === null ? '-' : fmt(c.baseline),
      `${c.better === 'higher' ? '-' : '+'}${pct(c.tolerance)}`,
      Number.isFinite(c.limit) ? `${c.better === 'higher' ? '>=' : '<='} ${fmt(c.limit)}` : '-',
      Number.isFinite(c.change) ? `${c.change >= 0 ? '+' : ''}${(c.change * 100).toFixed(1)}%` : '-',
      String(c.attempts.filter(Number.isFinite).length),
      label[c.verdict],
    ]);
  }
  const widths = (rows[0] as string[]).map((_, i) => Math.max(...rows.map((r) => (r[i] as string).length)));
  const right = new Set([1, 2, 3, 4, 5, 6]);
  const line = (r: string[]): string =>
    r
      .map((cell, i) => (right.has(i) ? cell.padStart(widths[i] as number) : cell.padEnd(widths[i] as number)))
      .join('  ')
      .trimEnd();
  return [line(rows[0] as string[]), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)].join('\n');
}
