/**
 * docs/benchmarks.md stays in step with the tools: every flag `npm run bench -- --help` and
 * `npm run gate -- --help` print, every scenario `--list` prints (with its gate mark and needs), and every
 * SWITCHYARD_BENCH_* variable the bench code reads is documented there.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const RUN_JS = fileURLToPath(new URL('../../bench/run.js', import.meta.url));
const GATE_JS = fileURLToPath(new URL('../../bench/gate.js', import.meta.url));
const DOC = readFileSync(join(ROOT, 'docs', 'benchmarks.md'), 'utf8');

function run(script: string, args: string[]): Promise<string> {
  // The real scenarios folder, whatever the environment says.
  const env = { ...process.env };
  delete env['SWITCHYARD_BENCH_SCENARIOS_DIR'];
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [script, ...args], { env, timeout: 120_000 }, (err, stdout, stderr) => (err !== null ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)));
  });
}

/** The `--flag` names of a --help text. */
function flagsOf(help: string): string[] {
  return [...help.matchAll(/^\s+(--[a-z][a-z-]*)/gm)].map((m) => m[1] as string);
}

/** The doc's row for a flag or scenario: a table line whose first cell starts with `` `name``. */
function rowOf(name: string, section: string): string | undefined {
  return section.split('\n').find((l) => l.startsWith(`| \`${name}`) || l.startsWith(`| \`${name} `));
}

function between(from: string, to: string): string {
  const a = DOC.indexOf(from);
  const b = DOC.indexOf(to, a + from.length);
  if (a < 0 || b < 0) throw new Error(`docs/benchmarks.md lacks the section ${from} ... ${to}`);
  return DOC.slice(a, b);
}

t.test('every flag of npm run bench -- --help has a row in the Running table', async (t) => {
  const running = between('## Running', '### The scenarios');
  const flags = flagsOf(await run(RUN_JS, ['--help']));
  t.ok(flags.length >= 10, `flags found in --help: ${flags.join(' ')}`);
  for (const f of flags) {
    // --install is documented as its negation, the one a user types.
    const name = f === '--install' ? '--no-install' : f;
    t.ok(running.split('\n').some((l) => l.startsWith(`| \`${name}`)), `${name} documented`);
  }
});

t.test('every flag of npm run gate -- --help has a row in the gate table', async (t) => {
  const gate = between('## The regression gate', '### What it runs');
  const flags = flagsOf(await run(GATE_JS, ['--help']));
  for (const f of flags) {
    const name = f === '--install' ? '--no-install' : f;
    if (name === '--help') continue;
    t.ok(gate.includes(`\`${name}`), `${name} documented`);
  }
});

t.test('every scenario of --list has a row in the scenarios table, with its gate mark and needs', async (t) => {
  const table = between('### The scenarios', '### Environment knobs');
  const lines = (await run(RUN_JS, ['--list'])).trim().split('\n');
  t.ok(lines.length >= 20, `${lines.length} scenarios listed`);
  const listed: string[] = [];
  for (const line of lines) {
    const name = line.split(/\s+/)[0] as string;
    listed.push(name);
    const row = rowOf(name, table);
    if (!t.ok(row, `${name} has a row`) || row === undefined) continue;
    const cells = row.split('|').map((c) => c.trim());
    const needs = /\[needs ([^\]]+)\]/.exec(line)?.[1] ?? '';
    t.equal(cells[3], needs, `${name}: needs as --list says`);
    t.equal(cells[4], line.includes('[gate]') ? 'gate' : '', `${name}: gate mark as --list says`);
  }
  const rows = table.split('\n').filter((l) => l.startsWith('| `'));
  t.equal(rows.length, listed.length, 'no row for a scenario that does not exist');
});

t.test('every SWITCHYARD_BENCH_* variable read under bench/ has a row in the environment table', async (t) => {
  const table = between('### Environment knobs', '### Writing a scenario');
  const vars = new Set<string>();
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts')) for (const m of readFileSync(p, 'utf8').matchAll(/SWITCHYARD_BENCH_[A-Z_]+/g)) vars.add(m[0]);
    }
  };
  walk(join(ROOT, 'bench'));
  t.ok(vars.size >= 10, `variables found: ${[...vars].join(' ')}`);
  for (const v of vars) t.ok(rowOf(v, table), `${v} documented`);
});
