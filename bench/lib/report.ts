/**
 * The harness's pure parts: resolving run settings, choosing scenarios, checking the figures a scenario
 * returns, the result document, and the one table printed at the end.
 */
import type { Figure } from './scenario.js';
import type { ScenarioInfo, SkippedPart } from './protocol.js';
import type { MachineInfo, Versions } from './system.js';

export interface RunSettings {
  readonly quick: boolean;
  readonly runs: number;
  readonly durationSec: number;
}

/** Defaults: 3 runs of 10 s; --quick: 2 runs (the fewest that give a spread) of 3 s. Explicit flags win. */
export function resolveSettings(o: { quick: boolean; runs: number | undefined; duration: number | undefined }): RunSettings {
  return {
    quick: o.quick,
    runs: o.runs ?? (o.quick ? 2 : 3),
    durationSec: o.duration ?? (o.quick ? 3 : 10),
  };
}

/**
 * The scenarios `--only` names, in discovery order; a name matches a scenario's `name` or its file name
 * (with or without .js). Unknown names are returned so the caller can refuse them.
 */
export function selectScenarios(all: readonly ScenarioInfo[], only: readonly string[] | undefined): { selected: ScenarioInfo[]; unknown: string[] } {
  if (only === undefined || only.length === 0) return { selected: [...all], unknown: [] };
  const wanted = new Set(only);
  const matched = new Set<string>();
  const selected = all.filter((s) => {
    const keys = [s.name, s.file, s.file.replace(/\.js$/, '')];
    const hit = keys.filter((k) => wanted.has(k));
    for (const k of hit) matched.add(k);
    return hit.length > 0;
  });
  return { selected, unknown: only.filter((n) => !matched.has(n)) };
}

/**
 * Check what a scenario returned: malformed entries and duplicate names are problems (the scenario
 * fails); a well-formed figure whose value is not finite becomes a skipped part (nothing was measured).
 */
export function checkFigures(raw: unknown): { figures: Figure[]; skipped: SkippedPart[]; problems: string[] } {
  const figures: Figure[] = [];
  const skipped: SkippedPart[] = [];
  const problems: string[] = [];
  if (!Array.isArray(raw)) return { figures, skipped, problems: ['run() did not return an array of figures'] };
  const seen = new Set<string>();
  raw.forEach((f: unknown, i) => {
    if (f === null || typeof f !== 'object') {
      problems.push(`figure #${i} is not an object`);
      return;
    }
    const x = f as Record<string, unknown>;
    const name = x['name'];
    if (typeof name !== 'string' || name === '') {
      problems.push(`figure #${i} has no name`);
      return;
    }
    if (typeof x['unit'] !== 'string') problems.push(`${name}: unit must be a string`);
    if (x['better'] !== 'higher' && x['better'] !== 'lower') problems.push(`${name}: better must be 'higher' or 'lower'`);
    if (typeof x['value'] !== 'number') problems.push(`${name}: value must be a number`);
    if (x['spread'] !== undefined && typeof x['spread'] !== 'number') problems.push(`${name}: spread must be a number`);
    if (x['note'] !== undefined && typeof x['note'] !== 'string') problems.push(`${name}: note must be a string`);
    if (seen.has(name)) problems.push(`${name}: reported twice`);
    seen.add(name);
    if (typeof x['value'] === 'number' && !Number.isFinite(x['value'])) {
      skipped.push({ what: name, reason: `not measured (value ${String(x['value'])})` });
      return;
    }
    figures.push(f as Figure);
  });
  return { figures, skipped, problems };
}

export type ScenarioStatus = 'ok' | 'skipped' | 'failed';

export interface ScenarioOutcome {
  readonly name: string;
  readonly file: string;
  readonly description: string;
  readonly status: ScenarioStatus;
  /** Why it was skipped or failed. */
  readonly reason?: string;
  readonly elapsedSec: number;
  readonly figures: readonly Figure[];
  readonly skipped: readonly SkippedPart[];
}

export interface BenchResult {
  readonly schema: 1;
  readonly timestamp: string;
  readonly git: { readonly commit: string | null; readonly dirty: boolean | null };
  readonly machine: MachineInfo;
  readonly versions: Versions;
  readonly settings: RunSettings & { readonly only: readonly string[] | null };
  readonly scenarios: readonly ScenarioOutcome[];
  /** Every figure by name (what a baseline gate keys on), with the scenario it came from. */
  readonly figures: Readonly<Record<string, Figure & { readonly scenario: string }>>;
}

export function figureIndex(scenarios: readonly ScenarioOutcome[]): Record<string, Figure & { scenario: string }> {
  const out: Record<string, Figure & { scenario: string }> = {};
  for (const s of scenarios) for (const f of s.figures) out[f.name] = { ...f, scenario: s.name };
  return out;
}

/** 3 significant digits, no exponent, whole numbers from 100 up: "47487", "851", "72.3", "1.22", "0.520". */
export function formatValue(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a >= 100) return String(Math.round(v));
  if (a === 0) return '0';
  if (a < 0.001) return v.toFixed(6).replace(/0+$/, '');
  return v.toPrecision(3);
}

/** Relative spread as "±5.2%"; empty when unknown. */
export function formatSpread(spread: number | undefined): string {
  if (spread === undefined || !Number.isFinite(spread)) return '';
  const pct = spread * 100;
  return `±${pct < 10 ? pct.toFixed(1) : pct.toFixed(0)}%`;
}

const NOTE_WIDTH = 72;

function clip(s: string, width: number): string {
  const one = s.replace(/\s+/g, ' ').trim();
  return one.length > width ? `${one.slice(0, width - 1)}…` : one;
}

/** The one table: scenario, figure, value, unit, spread, note (skipped parts and failures as rows too). */
export function formatTable(scenarios: readonly ScenarioOutcome[]): string {
  const rows: string[][] = [['scenario', 'figure', 'value', 'unit', 'spread', 'note']];
  for (const s of scenarios) {
    for (const f of s.figures) rows.push([s.name, f.name, formatValue(f.value), f.unit, formatSpread(f.spread), clip(f.note ?? '', NOTE_WIDTH)]);
    for (const k of s.skipped) rows.push([s.name, k.what, 'skipped', '', '', clip(k.reason, NOTE_WIDTH)]);
    if (s.status !== 'ok') rows.push([s.name, '-', s.status === 'failed' ? 'FAILED' : 'skipped', '', '', clip(s.reason ?? '', NOTE_WIDTH)]);
    else if (s.figures.length === 0 && s.skipped.length === 0) rows.push([s.name, '-', 'no figures', '', '', '']);
  }
  const widths = (rows[0] as string[]).map((_, c) => Math.max(...rows.map((r) => (r[c] as string).length)));
  const right = new Set([2, 4]);
  const line = (r: string[]): string =>
    r
      .map((cell, c) => (right.has(c) ? cell.padStart(widths[c] as number) : cell.padEnd(widths[c] as number)))
      .join('  ')
      .trimEnd();
  const out = [line(rows[0] as string[]), widths.map((w) => '-'.repeat(w)).join('  ')];
  for (const r of rows.slice(1)) out.push(line(r));
  return out.join('\n');
}

/** "2026-11-23T16:28:26.123Z" -> "2026-11-23T16-28-26Z" (safe in file names). */
export function fileStamp(iso: string): string {
  return iso.replace(/\.\d+Z$/, 'Z').replace(/:/g, '-');
}
