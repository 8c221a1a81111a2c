import t from 'tap';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startSimFleetInThread } from '../../src/sim/fleet.js';
import { readCsv, tempDir } from './helpers.js';

const BIN = fileURLToPath(new URL('../../../bin/switchyard.js', import.meta.url));

function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('SWITCHYARD_')) env[k] = v;
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

t.test('switchyard load end to end: exit 0, result table, requests.csv and summary.json', async (t) => {
  const fleet = await startSimFleetInThread({ count: 1, timeScale: 0.02, seed: 5 });
  t.teardown(() => fleet.close());
  const dir = tempDir();
  const r = await runCli(['load', '--url', fleet.urls[0]!, '--num-prompts', '12', '--request-rate', '300', '--random-input-len', '40', '--random-output-len', '8', '--slo', 'ttft=60000', '--output', dir]);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /Serving Benchmark Result/);
  t.match(r.stdout, /Successful requests:\s+12/);
  t.match(r.stdout, /Goodput \(req\/s\)/);
  t.match(r.stderr, /wrote .*requests\.csv/);
  t.equal(readCsv(join(dir, 'requests.csv')).length, 12);
  const s = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8')) as Record<string, unknown>;
  t.equal(s['completed'], 12);
  t.equal(s['goodput_requests'], 12);
  t.equal(s['parallel_scavenge'], false, 'young-generation collections on the sending thread');
  t.equal(s['helper_nice'], 10, "the generator's helper threads at nice 10 by default");
  if (process.platform === 'linux') t.ok((s['helper_threads_niced'] as number) > 0, 'V8 and libuv helpers were found and lowered');
  const off = tempDir();
  const r2 = await runCli(['load', '--url', fleet.urls[0]!, '--num-prompts', '2', '--request-rate', '300', '--random-input-len', '40', '--random-output-len', '8', '--helper-nice', '0', '--parallel-scavenge', '--quiet', '--output', off]);
  t.equal(r2.code, 0, r2.stderr);
  const s2 = JSON.parse(readFileSync(join(off, 'summary.json'), 'utf8')) as Record<string, unknown>;
  t.same([s2['parallel_scavenge'], s2['helper_nice'], s2['helper_threads_niced']], [true, 0, 0], 'both can be turned off');
});

t.test('CLI errors: exit 2 with one line for bad flags and unknown policies; exit 1 for an unreachable target', async (t) => {
  const bad = await runCli(['load', '--url', 'http://127.0.0.1:1', '--request-rate', 'fast']);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /--request-rate must be a number > 0 or inf/);
  const pol = await runCli(['compare', '--policies', 'round_robin,teleport']);
  t.equal(pol.code, 2);
  t.match(pol.stderr, /unknown policy "teleport"; valid policies: /);
  const dead = await runCli(['load', '--url', 'http://127.0.0.1:1', '--num-prompts', '2', '--output', tempDir()]);
  t.equal(dead.code, 1);
  t.match(dead.stderr, /cannot reach http:\/\/127\.0\.0\.1:1/);
  const help = await runCli(['sweep', '--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /--max-running-requests/);
  t.match(help.stdout, /--sim-time-scale/);
  const list = await runCli(['--help']);
  for (const cmd of ['load', 'compare', 'sweep']) t.match(list.stdout, new RegExp(`\\n  ${cmd}\\s`), `${cmd} is registered`);
});
