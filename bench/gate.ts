/**
 * `npm run gate`: the latency regression gate. Runs the quick subset of the benchmarks (every scenario a
 * baselined figure comes from; with --update-baseline also every `gate: true` one) through the bench runner,
 * compares the figures named in bench/baseline.json with their baseline values and tolerances, prints a
 * verdict table and exits:
 *
 *   0  every baselined figure within its tolerance (improvements beyond it are reported, not failed)
 *   1  at least one figure regressed past its tolerance, confirmed: a figure that fails its first run is
 *      measured again (its scenario re-run, --attempts in all) and judged on the median of the attempts
 *   2  bad flags, or a baseline file that is missing, malformed or has entries without a value
 *   3  a baselined figure could not be measured in any attempt (scenario failed or skipped)
 *   128+n interrupted by a signal
 *
 *   npm run gate                                  check against bench/baseline.json
 *   npm run gate -- --update-baseline             re-measure (3 full runs, medians) and rewrite the values,
 *                                                 keeping every tolerance
 *   npm run gate -- --baseline my.json --only calibrated --runs 1
 *
 * Figures the gate can trust on a shared machine are ratios measured in one process or one round
 * (calibrated ns/op, router vs direct, ...); docs/benchmarks.md says how the tolerances were set.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseOptions, HelpRequested, OptionsError, type OptionSpec } from '../src/config/options.js';
import { baselineScenarios, BaselineError, checkFigure, formatChecks, needsRetry, parseBaseline, updateBaseline, type Baseline, type FigureCheck } from './lib/gate-baseline.js';
import { currentRun, describeScenarios, runBench, whyMissing, type BenchRun, type RunnerPaths } from './lib/gate-runner.js';
import { machineInfo } from './lib/system.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DEFAULT_BASELINE = join(ROOT, 'bench', 'baseline.json');
const PATHS: RunnerPaths = {
  runJs: fileURLToPath(new URL('./run.js', import.meta.url)),
  childJs: fileURLToPath(new URL('./lib/child.js', import.meta.url)),
  scenariosDir: process.env['SWITCHYARD_BENCH_SCENARIOS_DIR'] || fileURLToPath(new URL('./scenarios/', import.meta.url)),
  cwd: ROOT,
};

const SPECS = [
  { name: 'baseline', type: 'string', env: false, metavar: 'PATH', help: 'baseline file (default bench/baseline.json)' },
  { name: 'only', type: 'list', env: false, metavar: 'NAME[,NAME]', help: 'run these scenarios instead of the gate subset; only their baselined figures are checked' },
  { name: 'runs', type: 'integer', default: 3, min: 1, max: 100, env: false, metavar: 'N', help: 'rounds inside each scenario (figures are medians over them)' },
  { name: 'duration', type: 'number', default: 3, min: 0.5, max: 600, env: false, metavar: 'S', help: 'seconds per measured load run (the quick setting)' },
  { name: 'attempts', type: 'integer', default: 3, min: 1, max: 9, env: false, metavar: 'N', help: 'runs a failing figure gets in all; the verdict is their median' },
  { name: 'update-baseline', type: 'boolean', default: false, env: false, help: 'rewrite the baseline values from this run (tolerances kept)' },
  { name: 'repeat', type: 'integer', min: 1, max: 20, env: false, metavar: 'N', help: 'full runs of the subset up front (default 1; 3 with --update-baseline)' },
  { name: 'json', type: 'string', env: false, metavar: 'PATH', help: 'also write the verdicts as JSON here' },
  { name: 'install', type: 'boolean', default: true, env: false, help: 'let the runner install missing Debian packages (--no-install: such scenarios are skipped)' },
  { name: 'timeout', type: 'number', default: 600, min: 1, env: false, metavar: 'S', help: 'seconds before one scenario is stopped and counted failed' },
] as const satisfies readonly OptionSpec[];

function say(line: string): void {
  process.stdout.write(line + '\n');
}

function note(line: string): void {
  process.stderr.write(`[gate] ${line}\n`);
}

let interrupted: NodeJS.Signals | undefined;

async function main(argv: string[]): Promise<number> {
  let o;
  try {
    o = parseOptions(SPECS, argv, { command: 'npm run gate --', summary: 'Run the quick benchmark subset and compare it with the baseline; exit 1 on a confirmed regression.', env: {} });
  } catch (err) {
    if (err instanceof HelpRequested) {
      say(err.text.replace(/^Usage: switchyard /, 'Usage: '));
      return 0;
    }
    if (err instanceof OptionsError) {
      process.stderr.write(`gate: ${err.message}\n`);
      return 2;
    }
    throw err;
  }

  const baselinePath = o.baseline === undefined ? DEFAULT_BASELINE : resolve(o.baseline);
  let baseline: Baseline;
  try {
    if (!existsSync(baselinePath)) throw new BaselineError(`${baselinePath}: no such file`);
    baseline = parseBaseline(readFileSync(baselinePath, 'utf8'), baselinePath);
  } catch (err) {
    if (err instanceof BaselineError) {
      process.stderr.write(`gate: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  if (!o.updateBaseline) {
    const empty = Object.entries(baseline.figures).filter(([, f]) => f.value === null).map(([n]) => n);
    if (empty.length > 0) {
      process.stderr.write(`gate: ${baselinePath}: no value yet for ${empty.join(', ')}; run \`npm run gate -- --update-baseline\` first\n`);
      return 2;
    }
  }

  if (!existsSync(PATHS.scenariosDir)) {
    process.stderr.write(`gate: no compiled scenarios in ${PATHS.scenariosDir}; run \`npm run build\` first\n`);
    return 2;
  }
  const all = await describeScenarios(PATHS);
  const known = new Set(all.map((s) => s.name));
  let scenarios: string[];
  if (o.only !== undefined && o.only.length > 0) {
    const unknown = o.only.filter((n) => !known.has(n));
    if (unknown.length > 0) {
      process.stderr.write(`gate: unknown scenario ${unknown.map((n) => `'${n}'`).join(', ')}; available: ${[...known].join(', ')}\n`);
      return 2;
    }
    scenarios = [...o.only];
  } else {
    // A check runs only the scenarios the baseline has figures from (a gate scenario without a baselined figure
    // would cost its run time for nothing); --update-baseline also runs every `gate: true` scenario, so the
    // figures they offer are listed for adoption.
    const baselined = baselineScenarios(baseline).filter((n) => known.has(n));
    scenarios = o.updateBaseline ? [...new Set([...all.filter((s) => s.gate).map((s) => s.name), ...baselined])] : baselined;
  }
  const inScope = Object.entries(baseline.figures).filter(([, f]) => scenarios.includes(f.scenario));
  const orphans = Object.entries(baseline.figures).filter(([, f]) => !known.has(f.scenario));
  if (inScope.length === 0 && !o.updateBaseline) {
    process.stderr.write(`gate: the baseline has no figure from ${scenarios.join(', ')}: nothing to check\n`);
    return 2;
  }

  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      if (interrupted !== undefined) return;
      interrupted = signal;
      note(`${signal}: stopping the benchmark run`);
      currentRun()?.kill(signal);
    });
  }

  const tmp = mkdtempSync(join(tmpdir(), 'switchyard-gate-'));
  const started = Date.now();
  try {
    const values = new Map<string, number[]>();
    const lastRun = new Map<string, BenchRun>();
    let attemptNo = 0;
    const attempt = async (names: readonly string[]): Promise<BenchRun> => {
      attemptNo++;
      const args = ['--quick', '--runs', String(o.runs), '--duration', String(o.duration), '--only', names.join(','), '--timeout', String(o.timeout)];
      if (!o.install) args.push('--no-install');
      note(`run ${attemptNo}: ${names.join(', ')} (${o.runs} round(s) x ${o.duration} s)`);
      const run = await runBench(PATHS, args, join(tmp, `run-${attemptNo}.json`));
      for (const n of names) lastRun.set(n, run);
      // Every baselined figure of these scenarios gets this run's value, NaN when it was not measured.
      for (const [name, f] of inScope) {
        if (!names.includes(f.scenario)) continue;
        const fig = run.result?.figures[name];
        const list = values.get(name) ?? [];
        list.push(fig === undefined ? Number.NaN : fig.value);
        values.set(name, list);
      }
      return run;
    };

    const repeat = o.repeat ?? (o.updateBaseline ? 3 : 1);
    for (let i = 0; i < repeat && interrupted === undefined; i++) await attempt(scenarios);

    if (o.updateBaseline) {
      if (interrupted !== undefined) return exitCodeFor(interrupted);
      const run = lastRun.get(scenarios[0] as string)?.result;
      const machine = machineInfo();
      const measured = {
        timestamp: new Date().toISOString(),
        git: run?.git ?? null,
        machine: { cpu: machine.cpus.model, cpus: machine.cpus.count, loadavg: machine.loadavg },
        node: process.version,
        settings: { runs: o.runs, duration: o.duration, repeat },
      };
      const { baseline: next, updated, kept } = updateBaseline(baseline, values, measured);
      mkdirSync(dirname(baselinePath), { recursive: true });
      writeFileSync(baselinePath, JSON.stringify(next, null, 2) + '\n');
      for (const n of updated) {
        const f = next.figures[n];
        if (f !== undefined) say(`updated ${n}: ${f.value} ${f.unit} (spread over ${repeat} run(s) ±${((f.observedSpread ?? 0) * 100).toFixed(1)}%, tolerance ${Math.round(f.tolerance * 100)}%)`);
      }
      for (const n of kept) say(`kept ${n}: not measured (${whyMissing(lastRun.get(baseline.figures[n]?.scenario ?? '')?.result, baseline.figures[n]?.scenario ?? '', n) ?? 'scenario not run'})`);
      const gated = new Set(Object.keys(baseline.figures));
      const offered = Object.keys(run?.figures ?? {}).filter((n) => !gated.has(n) && (n.endsWith('.calibrated') || n.endsWith('_ratio')));
      if (offered.length > 0) note(`measured but not gated (add an entry with a tolerance to gate one): ${offered.join(', ')}`);
      say(`baseline written: ${baselinePath} (${updated.length} updated, ${kept.length} kept)`);
      return kept.length > 0 ? 3 : 0;
    }

    // Confirm failures: re-run only the scenarios whose figures failed or went unmeasured.
    const judge = (): FigureCheck[] =>
      inScope.map(([name, f]) => checkFigure(name, f, values.get(name) ?? [], whyMissing(lastRun.get(f.scenario)?.result, f.scenario, name)));
    let checks = judge();
    for (let a = 2; a <= o.attempts && interrupted === undefined; a++) {
      const failing = checks.filter(needsRetry);
      if (failing.length === 0) break;
      const again = [...new Set(failing.map((c) => baseline.figures[c.name]?.scenario as string))];
      note(`${failing.length} figure(s) failed or were not measured (${failing.map((c) => c.name).join(', ')}): measuring again`);
      await attempt(again);
      checks = judge();
    }
    if (interrupted !== undefined) return exitCodeFor(interrupted);

    const regressed = checks.filter((c) => c.verdict === 'regressed');
    const missing = checks.filter((c) => c.verdict === 'not_measured');
    const improved = checks.filter((c) => c.verdict === 'improved');
    say('');
    say(formatChecks(checks));
    say('');
    for (const c of regressed) say(`REGRESSION: ${c.message}`);
    for (const c of missing) say(`NOT MEASURED: ${c.message}`);
    for (const c of improved) say(`note: ${c.message}`);
    for (const [n, f] of orphans) say(`note: ${n} is in the baseline but its scenario '${f.scenario}' does not exist`);
    const base = baseline.measured?.['machine'] as { cpu?: unknown } | undefined;
    const here = machineInfo();
    if (base !== undefined && typeof base.cpu === 'string' && base.cpu !== here.cpus.model) {
      say(`note: the baseline was measured on "${base.cpu}", this is "${here.cpus.model}": calibrated figures and ratios carry over between machines only roughly`);
    }
    const seconds = Math.round((Date.now() - started) / 1000);
    const verdict = regressed.length > 0 ? 'FAIL' : missing.length > 0 ? 'INCOMPLETE' : 'PASS';
    say(`gate: ${verdict}: ${checks.length - regressed.length - missing.length} ok, ${regressed.length} regressed, ${missing.length} not measured (${attemptNo} run(s), ${seconds} s; baseline ${baselinePath})`);
    if (o.json !== undefined) {
      const out = resolve(o.json);
      mkdirSync(dirname(out), { recursive: true });
      writeFileSync(out, JSON.stringify({ verdict, seconds, runs: attemptNo, baseline: baselinePath, checks }, null, 2) + '\n');
    }
    return regressed.length > 0 ? 1 : missing.length > 0 ? 3 : 0;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

function exitCodeFor(signal: NodeJS.Signals): number {
  say(`gate: interrupted (${signal})`);
  const codes: Partial<Record<NodeJS.Signals, number>> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 };
  return codes[signal] ?? 130;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`gate: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 2;
  },
);
