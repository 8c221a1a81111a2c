/**
 * `npm run bench`: discovers the compiled scenarios (dist/bench/scenarios/*.js, each default-exporting a
 * Scenario), runs each in its own child process, one after another, installs the Debian packages a
 * scenario needs when they are missing, prints one table and writes one JSON result.
 *
 *   npm run bench                         every scenario (3 runs x 10 s per measurement)
 *   npm run bench -- --only e2e-proxy     only these (names or file names, comma-separated)
 *   npm run bench -- --quick              2 runs x 3 s: the regression gate's setting
 *   npm run bench -- --runs 5 --duration 20 --json /tmp/r.json
 *   npm run bench -- --list               what is there, and what each needs
 *
 * SWITCHYARD_BENCH_SCENARIOS_DIR points it at another folder of compiled scenarios.
 * Exit status: 0 when no scenario failed (skipped ones do not fail the run), 1 otherwise, 2 for bad flags.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync, copyFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseOptions, HelpRequested, OptionsError, type OptionSpec } from '../src/config/options.js';
import type { ChildContext, ChildMessage, ScenarioInfo, SkippedPart } from './lib/protocol.js';
import { checkFigures, figureIndex, fileStamp, formatTable, resolveSettings, selectScenarios, type BenchResult, type RunSettings, type ScenarioOutcome } from './lib/report.js';
import { collectVersions, gitCommit, installPackages, machineInfo, missingPackages } from './lib/system.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** Overridable so the harness's own tests can run it on scenarios they write. */
const SCENARIOS_DIR = process.env['SWITCHYARD_BENCH_SCENARIOS_DIR'] || fileURLToPath(new URL('./scenarios/', import.meta.url));
const CHILD = fileURLToPath(new URL('./lib/child.js', import.meta.url));
const INSTALL_SCRIPT = join(ROOT, 'scripts', 'install-system-deps.sh');
const DEFAULT_JSON = join(ROOT, 'bench', 'results', 'latest.json');

const SPECS = [
  { name: 'only', type: 'list', env: false, metavar: 'NAME[,NAME]', help: 'run only these scenarios (scenario or file names)' },
  { name: 'quick', type: 'boolean', default: false, env: false, help: 'short runs (2 runs x 3 s unless --runs/--duration say otherwise)' },
  { name: 'runs', type: 'integer', min: 1, max: 1000, env: false, metavar: 'N', help: 'repetitions of each measurement (default 3; --quick 2)' },
  { name: 'duration', type: 'number', min: 0.5, max: 3600, env: false, metavar: 'S', help: 'seconds per measured load run (default 10; --quick 3)' },
  { name: 'json', type: 'string', env: false, metavar: 'PATH', help: 'JSON result path (default bench/results/latest.json plus a timestamped copy beside it)' },
  { name: 'list', type: 'boolean', default: false, env: false, help: 'list the scenarios and exit' },
  { name: 'install', type: 'boolean', default: true, env: false, help: "install missing Debian packages a scenario needs (--no-install: skip such scenarios)" },
  { name: 'timeout', type: 'number', default: 1800, min: 1, env: false, metavar: 'S', help: 'seconds before a scenario is stopped and counted failed' },
] as const satisfies readonly OptionSpec[];

function log(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

/** Load every scenario's metadata in one throw-away child (the runner itself never imports a scenario). */
function describeAll(files: readonly string[]): Promise<ScenarioInfo[]> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [CHILD, 'describe', ...files], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced', cwd: ROOT });
    let described: ScenarioInfo[] | undefined;
    child.on('message', (m: ChildMessage) => {
      if (m.kind === 'described') described = [...m.scenarios];
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (described !== undefined) resolvePromise(described);
      else reject(new Error(`describing scenarios failed (exit ${code ?? signal})`));
    });
  });
}

let current: ReturnType<typeof spawn> | undefined;
let interrupted: NodeJS.Signals | undefined;

/** Run one scenario in its own process; never throws: every ending is an outcome. */
function runScenario(info: ScenarioInfo, settings: RunSettings, timeoutSec: number): Promise<ScenarioOutcome> {
  const started = Date.now();
  const ctx: ChildContext = { quick: settings.quick, durationSec: settings.durationSec, runs: settings.runs };
  return new Promise((resolvePromise) => {
    const child = spawn(process.execPath, [CHILD, 'run', join(SCENARIOS_DIR, info.file), JSON.stringify(ctx)], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      // Structured clone, not JSON: a NaN figure must arrive as NaN (reported as not measured), not null.
      serialization: 'advanced',
      cwd: ROOT,
    });
    current = child;
    let message: ChildMessage | undefined;
    let timedOut = false;
    child.on('message', (m: ChildMessage) => (message = m));
    const timer = setTimeout(() => {
      timedOut = true;
      log(`${info.name}: still running after ${timeoutSec} s; stopping it`);
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 10_000).unref();
    }, timeoutSec * 1000);
    const finish = (status: ScenarioOutcome['status'], reason: string | undefined, figures: ScenarioOutcome['figures'], skipped: readonly SkippedPart[]): void => {
      clearTimeout(timer);
      current = undefined;
      const outcome: ScenarioOutcome = {
        name: info.name,
        file: info.file,
        description: info.description,
        status,
        ...(reason === undefined ? {} : { reason }),
        elapsedSec: Math.round((Date.now() - started) / 100) / 10,
        figures,
        skipped,
      };
      resolvePromise(outcome);
    };
    child.on('error', (err) => finish('failed', `cannot start the scenario process: ${err.message}`, [], []));
    child.on('exit', (code, signal) => {
      const m = message;
      if (timedOut) return finish('failed', `timed out after ${timeoutSec} s`, [], m !== undefined && 'skipped' in m ? m.skipped : []);
      if (m === undefined || m.kind === 'described') {
        const why = interrupted !== undefined ? `interrupted (${interrupted})` : `scenario process exited (${code ?? signal}) without a result`;
        return finish('failed', why, [], []);
      }
      if (m.kind === 'skipped') return finish('skipped', m.reason, [], m.skipped);
      const checked = checkFigures(m.figures);
      const skipped = [...m.skipped, ...checked.skipped];
      if (m.kind === 'failed') return finish('failed', firstLines(m.error), checked.figures, skipped);
      if (checked.problems.length > 0) return finish('failed', `bad figures: ${checked.problems.join('; ')}`, checked.figures, skipped);
      return finish('ok', undefined, checked.figures, skipped);
    });
  });
}

function firstLines(text: string, n = 3): string {
  return text.split('\n').slice(0, n).join(' | ');
}

/** Packages are installed at most once per run; a failed install skips every scenario that needs it. */
const installFailures = new Map<string, string>();

function ensurePackages(info: ScenarioInfo, install: boolean): string | undefined {
  if (info.needs.length === 0) return undefined;
  let missing = missingPackages(info.needs);
  if (missing.length === 0) return undefined;
  if (!install) return `needs ${missing.join(', ')} (not installed; run without --no-install or: bash scripts/install-system-deps.sh --for bench)`;
  const known = missing.filter((p) => installFailures.has(p));
  if (known.length > 0) return `installing ${known.join(', ')} failed earlier: ${installFailures.get(known[0] as string) ?? ''}`;
  log(`${info.name} needs ${missing.join(', ')}: running scripts/install-system-deps.sh`);
  const r = installPackages(INSTALL_SCRIPT, missing);
  missing = missingPackages(info.needs);
  if (missing.length === 0) return undefined;
  const why = r.ok ? `still missing after installation: ${missing.join(', ')}` : `installation failed: ${r.output.split('\n').slice(-3).join(' | ')}`;
  for (const p of missing) installFailures.set(p, why);
  return why;
}

function writeResult(result: BenchResult, jsonPath: string | undefined): string[] {
  const target = jsonPath === undefined ? DEFAULT_JSON : resolve(jsonPath);
  mkdirSync(dirname(target), { recursive: true });
  writeFileSync(target, JSON.stringify(result, null, 2) + '\n');
  const written = [target];
  if (jsonPath === undefined) {
    const stamped = join(dirname(target), `${fileStamp(result.timestamp)}.json`);
    copyFileSync(target, stamped);
    written.push(stamped);
  }
  return written;
}

async function main(argv: string[]): Promise<number> {
  let o;
  try {
    o = parseOptions(SPECS, argv, { command: 'npm run bench --', summary: 'Run the benchmark scenarios; print one table and write a JSON result.', env: {} });
  } catch (err) {
    if (err instanceof HelpRequested) {
      // The shared help formatter names the switchyard CLI; this is npm's script.
      process.stdout.write(err.text.replace(/^Usage: switchyard /, 'Usage: ') + '\n');
      return 0;
    }
    if (err instanceof OptionsError) {
      process.stderr.write(`bench: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const settings = resolveSettings({ quick: o.quick, runs: o.runs, duration: o.duration });

  if (!existsSync(SCENARIOS_DIR)) {
    process.stderr.write(`bench: no compiled scenarios in ${SCENARIOS_DIR}; run \`npm run build\` first\n`);
    return 1;
  }
  const files = readdirSync(SCENARIOS_DIR)
    .filter((f) => f.endsWith('.js'))
    .sort()
    .map((f) => join(SCENARIOS_DIR, f));
  const all = await describeAll(files);

  if (o.list) {
    const w = Math.max(8, ...all.map((s) => s.name.length));
    for (const s of all) {
      const extra = [s.gate ? 'gate' : '', s.needs.length > 0 ? `needs ${s.needs.join(', ')}` : '', s.error !== undefined ? 'LOAD ERROR' : ''].filter((x) => x !== '');
      process.stdout.write(`${s.name.padEnd(w)}  ${s.description}${extra.length > 0 ? ` [${extra.join('; ')}]` : ''}\n`);
    }
    return all.some((s) => s.error !== undefined) ? 1 : 0;
  }

  const { selected, unknown } = selectScenarios(all, o.only);
  if (unknown.length > 0) {
    process.stderr.write(`bench: unknown scenario ${unknown.map((n) => `'${n}'`).join(', ')}; available: ${all.map((s) => s.name).join(', ') || '(none)'}\n`);
    return 2;
  }
  if (selected.length === 0) {
    process.stderr.write('bench: no scenarios to run\n');
    return 1;
  }

  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      if (interrupted !== undefined) return;
      interrupted = signal;
      log(`${signal}: stopping after the current scenario cleans up`);
      // The child gets the terminal's SIGINT itself; a signal sent to the runner alone is forwarded.
      current?.kill(signal);
    });
  }

  const timestamp = new Date().toISOString();
  const machine = machineInfo();
  const outcomes: ScenarioOutcome[] = [];
  log(`${selected.length} scenario(s), ${settings.runs} run(s) x ${settings.durationSec} s${settings.quick ? ' (quick)' : ''}`);
  const load1 = machine.loadavg[0] ?? 0;
  if (load1 > machine.cpus.count) {
    log(`warning: load average ${load1} on ${machine.cpus.count} CPUs: something else is running; absolute figures will be noisy (ratios less so)`);
  }
  for (const info of selected) {
    if (interrupted !== undefined) break;
    if (info.error !== undefined) {
      outcomes.push({ name: info.name, file: info.file, description: '', status: 'failed', reason: `cannot load: ${firstLines(info.error, 2)}`, elapsedSec: 0, figures: [], skipped: [] });
      continue;
    }
    const missing = ensurePackages(info, o.install);
    if (missing !== undefined) {
      log(`${info.name}: skipped (${missing})`);
      outcomes.push({ name: info.name, file: info.file, description: info.description, status: 'skipped', reason: missing, elapsedSec: 0, figures: [], skipped: [] });
      continue;
    }
    log(`${info.name}: ${info.description}`);
    const outcome = await runScenario(info, settings, o.timeout);
    log(`${info.name}: ${outcome.status} in ${outcome.elapsedSec} s`);
    outcomes.push(outcome);
  }

  process.stdout.write('\n' + formatTable(outcomes) + '\n');
  if (interrupted !== undefined) {
    process.stdout.write(`\ninterrupted (${interrupted}): no result file written\n`);
    const codes: Partial<Record<NodeJS.Signals, number>> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 };
    return codes[interrupted] ?? 130;
  }
  const result: BenchResult = {
    schema: 1,
    timestamp,
    git: gitCommit(ROOT),
    machine,
    versions: collectVersions(ROOT),
    settings: { ...settings, only: o.only ?? null },
    scenarios: outcomes,
    figures: figureIndex(outcomes),
  };
  const written = writeResult(result, o.json);
  process.stdout.write(`\nresult: ${written.join(', ')}\n`);
  const failed = outcomes.filter((s) => s.status === 'failed');
  if (failed.length > 0) process.stdout.write(`failed: ${failed.map((s) => s.name).join(', ')}\n`);
  return failed.length > 0 ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
