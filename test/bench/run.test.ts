import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchResult } from '../../bench/lib/report.js';

const RUN_JS = fileURLToPath(new URL('../../bench/run.js', import.meta.url));
const SCENARIO_JS = new URL('../../bench/lib/scenario.js', import.meta.url).href;
const PROCESSES_JS = new URL('../../bench/lib/processes.js', import.meta.url).href;

function runBench(args: string[], scenariosDir: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [RUN_JS, ...args], {
      env: { ...process.env, SWITCHYARD_BENCH_SCENARIOS_DIR: scenariosDir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const dir = mkdtempSync(join(tmpdir(), 'bench-run-test-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const scenarios = join(dir, 'scenarios');
const pidFile = join(dir, 'leaked.pid');
const files: Record<string, string> = {
  'a-ok.js': `
globalThis.__benchLeak = 1;
setInterval(() => {}, 1000); // a handle left open: the child must exit anyway
export default {
  name: 'ok', description: 'returns figures', gate: true,
  async run(ctx) {
    ctx.log('running');
    ctx.skip('ok.router.*', 'router not built yet');
    return [
      { name: 'ok.ctx', value: ctx.runs * 100 + ctx.durationSec + (ctx.quick ? 0.5 : 0), unit: 'n', better: 'higher', spread: 0.01, note: 'from ctx' },
      { name: 'ok.nan', value: NaN, unit: 'ms', better: 'lower' },
    ];
  },
};`,
  'b-isolated.js': `
export default {
  name: 'isolated', description: 'sees nothing of the previous scenario',
  async run() { return [{ name: 'isolated.leak', value: globalThis.__benchLeak === undefined ? 0 : 1, unit: 'n', better: 'lower' }]; },
};`,
  'c-skips.js': `
import { ScenarioSkipped } from ${JSON.stringify(SCENARIO_JS)};
export default { name: 'skips', description: 'cannot run here', async run() { throw new ScenarioSkipped('no GPU on this machine'); } };`,
  'd-fails.js': `
import { start } from ${JSON.stringify(PROCESSES_JS)};
import { writeFileSync } from 'node:fs';
export default {
  name: 'fails', description: 'throws, leaving a child behind',
  async run() {
    const p = start('sleeper', '/bin/sh', ['-c', 'sleep 60']);
    writeFileSync(${JSON.stringify(pidFile)}, String(p.pid));
    throw new Error('boom');
  },
};`,
  'e-needs.js': `
export default { name: 'needs', description: 'needs a package', needs: ['switchyard-no-such-package'], async run() { return []; } };`,
  'f-bad-figures.js': `
export default { name: 'bad-figures', description: 'returns junk', async run() { return [{ name: 'x', value: '1', unit: 'n', better: 'higher' }]; } };`,
  'not-a-scenario.js.map': '{}',
};

t.before(async () => {
  const { mkdirSync } = await import('node:fs');
  mkdirSync(scenarios);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(scenarios, name), text);
});

t.test('--list names every scenario with its needs', async (t) => {
  const r = await runBench(['--list'], scenarios);
  t.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  t.equal(lines.length, 6);
  t.match(lines[0], /^ok\s+returns figures \[gate\]$/);
  t.match(r.stdout, /needs\s+needs a package \[needs switchyard-no-such-package\]/);
});

t.test('bad flags and unknown scenarios exit 2', async (t) => {
  const unknown = await runBench(['--only', 'ok,nope'], scenarios);
  t.equal(unknown.code, 2);
  t.match(unknown.stderr, /unknown scenario 'nope'; available: ok, isolated, skips, fails, needs, bad-figures/);
  const bad = await runBench(['--runs', 'zero'], scenarios);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /--runs expects a number/);
  const help = await runBench(['--help'], scenarios);
  t.equal(help.code, 0);
  t.match(help.stdout, /^Usage: npm run bench -- \[options\]/);
});

t.test('a full run: each scenario in its own process, one table, one JSON, exit 1 on failure', async (t) => {
  const json = join(dir, 'out', 'result.json');
  const r = await runBench(['--quick', '--runs', '1', '--duration', '1', '--no-install', '--json', json], scenarios);
  t.equal(r.code, 1, 'a scenario failed');
  t.match(r.stderr, /\[ok\] running/);

  const result = JSON.parse(readFileSync(json, 'utf8')) as BenchResult;
  t.equal(result.schema, 1);
  t.same(result.settings, { quick: true, runs: 1, durationSec: 1, only: null });
  t.equal(result.versions['node'], process.version);
  t.ok(result.machine.cpus.count >= 1);
  t.ok('commit' in result.git);
  const status = Object.fromEntries(result.scenarios.map((s) => [s.name, s.status]));
  t.same(status, { ok: 'ok', isolated: 'ok', skips: 'skipped', fails: 'failed', needs: 'skipped', 'bad-figures': 'failed' });
  const byName = new Map(result.scenarios.map((s) => [s.name, s]));
  t.same(byName.get('ok')?.skipped, [
    { what: 'ok.router.*', reason: 'router not built yet' },
    { what: 'ok.nan', reason: 'not measured (value NaN)' },
  ]);
  t.equal(result.figures['ok.ctx']?.value, 101.5, 'the context reached the scenario');
  t.equal(result.figures['ok.ctx']?.scenario, 'ok');
  t.equal(result.figures['isolated.leak']?.value, 0, 'no state crosses scenarios');
  t.equal(byName.get('skips')?.reason, 'no GPU on this machine');
  t.match(byName.get('fails')?.reason, /^Error: boom/);
  t.match(byName.get('needs')?.reason, /needs switchyard-no-such-package \(not installed/);
  t.match(byName.get('bad-figures')?.reason, /bad figures: x: value must be a number/);

  const leaked = Number(readFileSync(pidFile, 'utf8'));
  t.notOk(alive(leaked), "a failed scenario's children are killed");

  t.match(r.stdout, /^scenario\s+figure\s+value\s+unit\s+spread\s+note$/m);
  t.match(r.stdout, /^ok\s+ok\.ctx\s+102\s+n\s+±1\.0%\s+from ctx$/m);
  t.match(r.stdout, /^fails\s+-\s+FAILED\s+Error: boom/m);
  t.match(r.stdout, /^skips\s+-\s+skipped\s+no GPU on this machine$/m);
  t.match(r.stdout, /failed: fails, bad-figures/);
  t.same(readdirSync(join(dir, 'out')), ['result.json'], 'an explicit --json path gets no timestamped copy');
});

t.test('--only runs just those; a clean run exits 0', async (t) => {
  const json = join(dir, 'only.json');
  const r = await runBench(['--only', 'isolated,c-skips', '--json', json], scenarios);
  t.equal(r.code, 0, r.stderr);
  const result = JSON.parse(readFileSync(json, 'utf8')) as BenchResult;
  t.same(result.scenarios.map((s) => s.name), ['isolated', 'skips']);
  t.same(result.settings, { quick: false, runs: 3, durationSec: 10, only: ['isolated', 'c-skips'] });
});

t.test('a scenario that hangs is stopped at --timeout', async (t) => {
  const hang = join(dir, 'hang');
  const { mkdirSync } = await import('node:fs');
  mkdirSync(hang);
  writeFileSync(join(hang, 'hang.js'), `export default { name: 'hang', description: 'never ends', run: () => new Promise(() => { setInterval(() => {}, 1000); }) };`);
  const json = join(dir, 'hang.json');
  const r = await runBench(['--timeout', '1', '--json', json], hang);
  t.equal(r.code, 1);
  const result = JSON.parse(readFileSync(json, 'utf8')) as BenchResult;
  t.equal(result.scenarios[0]?.status, 'failed');
  t.equal(result.scenarios[0]?.reason, 'timed out after 1 s');
});
