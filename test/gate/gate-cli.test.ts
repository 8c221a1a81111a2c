/**
 * The gate CLI end to end (bench/gate.ts -> bench/run.ts -> one process per scenario) on scenarios
 * written here whose figures are fixed per run, so every verdict path is exercised deterministically:
 * pass, a regression confirmed by the median of 3 runs, a bad first run outvoted, a figure that cannot
 * be measured, baseline updates, bad input. No timing is asserted.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const GATE_JS = fileURLToPath(new URL('../../bench/gate.js', import.meta.url));

const dir = mkdtempSync(join(tmpdir(), 'gate-cli-test-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const scenarios = join(dir, 'scenarios');
mkdirSync(scenarios);
// 'seq' reports seq.ratio = GATE_TEST_VALUES[n] on its n-th run (the count kept in GATE_TEST_COUNTER).
writeFileSync(
  join(scenarios, 'seq.js'),
  `import { readFileSync, writeFileSync, existsSync } from 'node:fs';
export default {
  name: 'seq', description: 'fixed values per run', gate: true,
  async run(ctx) {
    const file = process.env.GATE_TEST_COUNTER;
    const n = existsSync(file) ? Number(readFileSync(file, 'utf8')) : 0;
    writeFileSync(file, String(n + 1));
    const values = JSON.parse(process.env.GATE_TEST_VALUES);
    ctx.log('run ' + n + ' runs=' + ctx.runs + ' quick=' + ctx.quick);
    return [
      { name: 'seq.ratio', value: values[Math.min(n, values.length - 1)], unit: 'x', better: 'higher' },
      { name: 'seq.other_ratio', value: 1, unit: 'x', better: 'higher' },
    ];
  },
};`,
);
writeFileSync(join(scenarios, 'broken.js'), `export default { name: 'broken', description: 'always fails', async run() { throw new Error('boom'); } };`);
writeFileSync(join(scenarios, 'idle.js'), `export default { name: 'idle', description: 'not in the gate', async run() { return [{ name: 'idle.x', value: 1, unit: 'x', better: 'higher' }]; } };`);

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  runs: number;
}

let case_ = 0;

async function gate(args: string[], values: number[] = [1]): Promise<Run> {
  const counter = join(dir, `counter-${case_++}`);
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [GATE_JS, ...args, '--no-install'], {
      env: { ...process.env, SWITCHYARD_BENCH_SCENARIOS_DIR: scenarios, GATE_TEST_COUNTER: counter, GATE_TEST_VALUES: JSON.stringify(values) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr, runs: existsSync(counter) ? Number(readFileSync(counter, 'utf8')) : 0 }));
  });
}

function baseline(name: string, figures: Record<string, unknown>): string {
  const path = join(dir, name);
  writeFileSync(path, JSON.stringify({ schema: 1, figures }, null, 2));
  return path;
}

const SEQ = { value: 1, tolerance: 0.2, better: 'higher', unit: 'x', scenario: 'seq' };
const seqOnly = baseline('seq.json', { 'seq.ratio': SEQ });

t.test('within tolerance: exit 0, one run, a table', async (t) => {
  const r = await gate(['--baseline', seqOnly, '--runs', '1', '--json', join(dir, 'verdict.json')], [0.9]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.runs, 1);
  t.match(r.stdout, /^seq\.ratio\s+0\.9 x\s+1\s+-20%\s+>= 0\.8\s+-10\.0%\s+1\s+ok$/m);
  t.match(r.stdout, /gate: PASS: 1 ok, 0 regressed, 0 not measured \(1 run\(s\)/);
  // the quick setting reaches the scenario; the runner's own table went to stderr
  t.match(r.stderr, /\[seq\] run 0 runs=1 quick=true/);
  t.match(r.stderr, /seq\.other/);
  t.notMatch(r.stdout, /seq\.other/, 'figures not in the baseline are not judged');
  const v = JSON.parse(readFileSync(join(dir, 'verdict.json'), 'utf8')) as { verdict: string; checks: { name: string; verdict: string }[] };
  t.equal(v.verdict, 'PASS');
  t.same(v.checks.map((c) => [c.name, c.verdict]), [['seq.ratio', 'ok']]);
});

t.test('a regression is confirmed by the median of 3 runs: exit 1 with the per-metric message', async (t) => {
  const r = await gate(['--baseline', seqOnly, '--runs', '1'], [0.5, 0.5, 1.0]);
  t.equal(r.code, 1, r.stderr);
  t.equal(r.runs, 3);
  t.match(r.stdout, 'REGRESSION: seq.ratio 0.5 < baseline 1 - 20% tolerance (limit 0.8) (median of 3 runs: 0.5, 0.5, 1)');
  t.match(r.stdout, /^seq\.ratio\s+0\.5 x .* REGRESSED$/m);
  t.match(r.stdout, /gate: FAIL: 0 ok, 1 regressed/);
  t.match(r.stderr, /1 figure\(s\) failed or were not measured \(seq\.ratio\): measuring again/);
});

t.test('one bad run is outvoted by the next two', async (t) => {
  const r = await gate(['--baseline', seqOnly, '--runs', '1'], [0.5, 1.0, 0.9]);
  t.equal(r.code, 0, r.stdout);
  t.equal(r.runs, 3);
  t.match(r.stdout, /^seq\.ratio\s+0\.9 x .*\s3\s+ok$/m);
});

t.test('--attempts 1 judges the first run alone', async (t) => {
  const r = await gate(['--baseline', seqOnly, '--runs', '1', '--attempts', '1'], [0.5, 1.0]);
  t.equal(r.code, 1);
  t.equal(r.runs, 1);
  t.match(r.stdout, 'REGRESSION: seq.ratio 0.5 < baseline 1 - 20% tolerance (limit 0.8)');
});

t.test('a baselined figure that cannot be measured: exit 3, with the reason; its scenario runs though not gate: true', async (t) => {
  const path = baseline('broken.json', { 'seq.ratio': SEQ, 'broken.x': { value: 2, tolerance: 0.3, better: 'lower', unit: 'ms', scenario: 'broken' } });
  const r = await gate(['--baseline', path, '--runs', '1', '--attempts', '2']);
  t.equal(r.code, 3, r.stdout);
  t.match(r.stdout, /NOT MEASURED: broken\.x: not measured \(scenario broken failed: Error: boom/);
  t.match(r.stdout, /gate: INCOMPLETE: 1 ok, 0 regressed, 1 not measured \(2 run\(s\)/);
  t.equal(r.runs, 1, 'only the failing scenario was run again');
  t.notMatch(r.stderr, /\[idle\]|idle:/, 'a scenario neither in the gate nor in the baseline is not run');
});

t.test('--update-baseline fills values from medians, keeps tolerances and notes', async (t) => {
  const path = baseline('update.json', { 'seq.ratio': { ...SEQ, value: null, why: 'kept note' } });
  const refused = await gate(['--baseline', path]);
  t.equal(refused.code, 2);
  t.match(refused.stderr, /no value yet for seq\.ratio; run `npm run gate -- --update-baseline` first/);
  t.equal(refused.runs, 0, 'nothing was run');

  const r = await gate(['--baseline', path, '--runs', '1', '--update-baseline', '--repeat', '3'], [0.8, 1.2, 1.0]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.runs, 3);
  t.match(r.stdout, /updated seq\.ratio: 1 x \(spread over 3 run\(s\) ±20\.0%, tolerance 20%\)/);
  t.match(r.stderr, /measured but not gated \(add an entry with a tolerance to gate one\): seq\.other_ratio/);
  const written = JSON.parse(readFileSync(path, 'utf8')) as { figures: Record<string, Record<string, unknown>>; measured: Record<string, unknown> };
  t.same(written.figures['seq.ratio'], { ...SEQ, value: 1, why: 'kept note', observedSpread: 0.2 });
  t.same(written.measured['settings'], { runs: 1, duration: 3, repeat: 3 });

  const again = await gate(['--baseline', path, '--runs', '1'], [0.95]);
  t.equal(again.code, 0, again.stdout);
});

t.test('bad input exits 2 with a message and runs nothing', async (t) => {
  const missing = await gate(['--baseline', join(dir, 'none.json')]);
  t.equal(missing.code, 2);
  t.match(missing.stderr, /none\.json: no such file/);
  const badJson = join(dir, 'bad.json');
  writeFileSync(badJson, JSON.stringify({ schema: 1, figures: { a: { value: 1, tolerance: 0, better: 'higher', unit: 'x', scenario: 'seq' } } }));
  const bad = await gate(['--baseline', badJson]);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /a: tolerance must be a number in \(0, 10\)/);
  const flags = await gate(['--baseline', seqOnly, '--runs', '0']);
  t.equal(flags.code, 2);
  t.match(flags.stderr, /--runs/);
  const unknown = await gate(['--baseline', seqOnly, '--only', 'nope']);
  t.equal(unknown.code, 2);
  t.match(unknown.stderr, /unknown scenario 'nope'; available: broken, idle, seq/);
  const nothing = await gate(['--baseline', seqOnly, '--only', 'idle']);
  t.equal(nothing.code, 2);
  t.match(nothing.stderr, /the baseline has no figure from idle: nothing to check/);
  for (const r of [missing, bad, flags, unknown, nothing]) t.equal(r.runs, 0);
  const help = await gate(['--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /^Usage: npm run gate -- \[options\]/);
  t.match(help.stdout, /--update-baseline/);
});
