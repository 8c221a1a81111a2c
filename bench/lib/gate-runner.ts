/**
 * How the regression gate gets its figures: it never measures anything itself; it runs `npm run bench`'s
 * runner (bench/run.ts) on the scenarios it needs, with a JSON result file, and reads that. Scenario
 * metadata (which are `gate: true`) comes from the runner's per-scenario child in describe mode, as the
 * runner gets it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildMessage, ScenarioInfo } from './protocol.js';
import type { BenchResult } from './report.js';

export interface RunnerPaths {
  /** dist/bench/run.js */
  readonly runJs: string;
  /** dist/bench/lib/child.js */
  readonly childJs: string;
  /** The compiled scenarios (SWITCHYARD_BENCH_SCENARIOS_DIR, as the runner reads it). */
  readonly scenariosDir: string;
  readonly cwd: string;
}

/** Every compiled scenario's metadata (name, gate flag, needs), loaded in a throw-away child. */
export function describeScenarios(paths: RunnerPaths): Promise<ScenarioInfo[]> {
  const files = readdirSync(paths.scenariosDir)
    .filter((f) => f.endsWith('.js'))
    .sort()
    .map((f) => join(paths.scenariosDir, f));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [paths.childJs, 'describe', ...files], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], serialization: 'advanced', cwd: paths.cwd });
    let described: ScenarioInfo[] | undefined;
    child.on('message', (m: ChildMessage) => {
      if (m.kind === 'described') described = [...m.scenarios];
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (described !== undefined) resolve(described);
      else reject(new Error(`describing the scenarios failed (exit ${code ?? signal})`));
    });
  });
}

export interface BenchRun {
  /** The runner's exit code (1 when a scenario failed; the result is still there). */
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** Undefined when the runner wrote no result (interrupted, bad flags, crashed). */
  readonly result: BenchResult | undefined;
}

let current: ChildProcess | undefined;

/** The runner process running now, if any (to forward a signal to it). */
export function currentRun(): ChildProcess | undefined {
  return current;
}

/**
 * Run bench/run.ts with `args` plus `--json jsonPath`. Its table and progress go to our stderr, so the
 * gate's stdout carries only the gate's own verdict.
 */
export function runBench(paths: RunnerPaths, args: readonly string[], jsonPath: string): Promise<BenchRun> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [paths.runJs, ...args, '--json', jsonPath], {
      stdio: ['ignore', 'pipe', 'inherit'],
      cwd: paths.cwd,
      env: { ...process.env, SWITCHYARD_BENCH_SCENARIOS_DIR: paths.scenariosDir },
    });
    current = child;
    child.stdout?.on('data', (d: Buffer) => process.stderr.write(d));
    const finish = (code: number | null, signal: NodeJS.Signals | null): void => {
      current = undefined;
      let result: BenchResult | undefined;
      try {
        result = JSON.parse(readFileSync(jsonPath, 'utf8')) as BenchResult;
      } catch {
        result = undefined;
      }
      resolve({ code, signal, result });
    };
    child.on('error', () => finish(null, null));
    child.on('exit', finish);
  });
}

/** Why a scenario's figures are missing from a result (failed, skipped, or not run), if it says. */
export function whyMissing(result: BenchResult | undefined, scenario: string, figure: string): string | undefined {
  if (result === undefined) return 'the bench runner wrote no result';
  const s = result.scenarios.find((x) => x.name === scenario);
  if (s === undefined) return `scenario ${scenario} did not run`;
  if (s.status !== 'ok') return `scenario ${scenario} ${s.status}: ${s.reason ?? ''}`.trim();
  const part = s.skipped.find((k) => k.what === figure || (k.what.endsWith('*') && figure.startsWith(k.what.slice(0, -1))));
  if (part !== undefined) return `skipped: ${part.reason}`;
  return `scenario ${scenario} did not report it`;
}
