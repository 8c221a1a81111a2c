/**
 * Runs scripts/prometheus-check.sh: a real Prometheus scraping a real router (embedded simulated fleet)
 * every second, then queried through its HTTP API. Skipped, with the reason, where Prometheus is not
 * installed (CI installs it: scripts/install-system-deps.sh --for test).
 */
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const installed = spawnSync('sh', ['-c', 'command -v prometheus'], { encoding: 'utf8' }).status === 0;

t.test('a real Prometheus scrapes /metrics and answers queries with the router\'s numbers', { skip: installed ? false : 'prometheus is not installed (bash scripts/install-system-deps.sh --for test installs it)' }, async (t) => {
  const out = await new Promise<{ code: number | null; text: string }>((resolve) => {
    const child = spawn('bash', ['scripts/prometheus-check.sh'], { cwd: root, env: { ...process.env, SWITCHYARD_PROMETHEUS_NO_INSTALL: '1' } });
    let text = '';
    child.stdout.on('data', (c: Buffer) => (text += c.toString()));
    child.stderr.on('data', (c: Buffer) => (text += c.toString()));
    const timer = setTimeout(() => child.kill('SIGTERM'), 150_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, text });
    });
  });
  t.equal(out.code, 0, out.text);
  t.match(out.text, /prometheus check: all \d+ checks passed/);
  t.match(out.text, /ok {3}sgl_router_requests_total\{route="\/generate"\} = 20/);
  t.match(out.text, /ok {3}sum\(sgl_router_ttft_seconds_count\) = 10/);
  t.notMatch(out.text, /FAIL/);
});
