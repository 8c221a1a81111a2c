/**
 * The gate fails for real: the real sse-scanner scenario, measured against a baseline this test writes
 * (so it depends neither on bench/baseline.json nor on this machine's speed), passes as built and fails
 * with the per-metric message when SWITCHYARD_BENCH_SLOWDOWN makes the measured code path 4x slower.
 * The margins are wide on purpose: a 4x slowdown against a 50% tolerance, and a pass judged against a
 * baseline measured seconds earlier in the same conditions.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const GATE_JS = fileURLToPath(new URL('../../bench/gate.js', import.meta.url));
const FIGURES = ['sse.sglang.calibrated', 'sse.openai.calibrated'];

const dir = mkdtempSync(join(tmpdir(), 'gate-slowdown-test-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const baselinePath = join(dir, 'baseline.json');
writeFileSync(
  baselinePath,
  JSON.stringify({
    schema: 1,
    figures: Object.fromEntries(FIGURES.map((n) => [n, { value: null, tolerance: 0.5, better: 'lower', unit: 'ref', scenario: 'sse-scanner' }])),
  }),
);

function gate(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const base = { ...process.env };
  delete base['SWITCHYARD_BENCH_SLOWDOWN'];
  delete base['SWITCHYARD_BENCH_SCENARIOS_DIR'];
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [GATE_JS, '--baseline', baselinePath, '--only', 'sse-scanner', '--runs', '1', '--no-install', ...args], {
      env: { ...base, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

t.test('baseline, pass as built, fail when slowed', async (t) => {
  const update = await gate(['--update-baseline', '--repeat', '1']);
  t.equal(update.code, 0, update.stderr);
  const written = JSON.parse(readFileSync(baselinePath, 'utf8')) as { figures: Record<string, { value: number; tolerance: number }> };
  for (const n of FIGURES) {
    t.ok((written.figures[n]?.value ?? 0) > 0, `${n} measured`);
    t.equal(written.figures[n]?.tolerance, 0.5, 'tolerance kept');
  }

  const pass = await gate([]);
  t.equal(pass.code, 0, pass.stdout);
  t.match(pass.stdout, /gate: PASS: 2 ok, 0 regressed/);

  const slowed = await gate([], { SWITCHYARD_BENCH_SLOWDOWN: '4' });
  t.equal(slowed.code, 1, slowed.stdout);
  for (const n of FIGURES) {
    t.match(slowed.stdout, new RegExp(`REGRESSION: ${n.replace(/\./g, '\\.')} [\\d.]+ > baseline [\\d.]+ \\+ 50% tolerance \\(limit [\\d.]+\\) \\(median of 3 runs: `), `${n} reported`);
  }
  t.match(slowed.stdout, /gate: FAIL: 0 ok, 2 regressed, 0 not measured \(3 run\(s\)/);
});
