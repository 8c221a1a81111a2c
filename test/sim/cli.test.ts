/** The real CLI in a child process: ready line, ports, signals, exit codes. */
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { postJson, rawRequest } from './helpers.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BIN = fileURLToPath(new URL('../../../bin/switchyard.js', import.meta.url));

interface Spawned {
  child: ChildProcess;
  ready: Promise<any>;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stdout: () => string;
  stderr: () => string;
}

function spawnSim(args: string[]): Spawned {
  const child = spawn(process.execPath, [BIN, 'sim', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const ready = new Promise<any>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf('\n');
      if (nl >= 0) {
        try {
          resolve(JSON.parse(out.slice(0, nl)));
        } catch (e) {
          reject(e);
        }
      }
    });
    child.on('exit', () => reject(new Error(`exited before ready: ${err}`)));
  });
  ready.catch(() => undefined);
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return { child, ready, exit, stdout: () => out, stderr: () => err };
}

t.test('sim --port 0 --count 2: ready line, both ports answer, SIGTERM exits 0', async (t) => {
  const sim = spawnSim(['--port', '0', '--count', '2', '--time-scale', '0.05', '--model-path', 'cli/model']);
  t.teardown(() => void sim.child.kill('SIGKILL'));
  const ready = await sim.ready;
  t.equal(ready.event, 'sim.ready');
  t.equal(ready.urls.length, 2);
  t.same(ready.gpu_ids, [0, 1]);
  t.equal(ready.model, 'cli/model');
  for (const [i, url] of (ready.urls as string[]).entries()) {
    t.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
    const r = await postJson(`${url}/generate`, { text: 'hello', sampling_params: { max_new_tokens: 2 } });
    t.equal(r.status, 200);
    t.equal(r.headers.get('x-sim-gpu-id'), String(i));
    t.equal(r.body.meta_info.completion_tokens <= 2, true);
  }
  // A stream in flight when the signal arrives is cut; the process still exits 0.
  const inflight = rawRequest(`${ready.urls[0]}/generate`, 'POST', JSON.stringify({ text: 'x', stream: true, sampling_params: { max_new_tokens: 1000000, ignore_eos: true } }));
  await inflight.firstByte;
  sim.child.kill('SIGTERM');
  const { code } = await sim.exit;
  t.equal(code, 0, `exit code 0 (stderr: ${sim.stderr().slice(-300)})`);
  t.match(sim.stdout(), /"event":"sim.stopped","signal":"SIGTERM"/);
  const cut = await inflight.promise;
  t.ok(cut.error !== undefined, 'the in-flight stream was cut');
  const refused = await rawRequest(`${ready.urls[1]}/health`, 'GET', undefined).promise;
  t.equal(refused.error, 'ECONNREFUSED', 'the ports are closed');
});

t.test('SIGINT exits 0 too', async (t) => {
  const sim = spawnSim(['--port', '0', '--time-scale', '0.05']);
  t.teardown(() => void sim.child.kill('SIGKILL'));
  await sim.ready;
  sim.child.kill('SIGINT');
  t.equal((await sim.exit).code, 0);
});

t.test('--crash-after (process mode) exits with code 1', async (t) => {
  const sim = spawnSim(['--port', '0', '--time-scale', '0.05', '--crash-after', '1']);
  t.teardown(() => void sim.child.kill('SIGKILL'));
  const ready = await sim.ready;
  const url = ready.urls[0] as string;
  t.equal((await postJson(`${url}/generate`, { text: 'one', sampling_params: { max_new_tokens: 1 } })).status, 200);
  const second = await rawRequest(`${url}/generate`, 'POST', JSON.stringify({ text: 'two' })).promise;
  t.equal(second.status, 0, 'the request that triggers the crash gets no answer');
  const { code } = await sim.exit;
  t.equal(code, 1);
  t.match(sim.stderr(), /crash-after/);
});

t.test('--help exits 0 with the flags; a bad flag exits 2', async (t) => {
  const help = spawnSim(['--help']);
  const h = await help.exit;
  t.equal(h.code, 0);
  for (const flag of ['--count', '--time-scale', '--max-running-requests', '--fail-rate', '--crash-mode', '--profile']) t.match(help.stdout(), flag);
  const bad = spawnSim(['--no-such-flag', '1']);
  t.equal((await bad.exit).code, 2);
  t.match(bad.stderr(), /unknown flag --no-such-flag/);
  const badValue = spawnSim(['--profile', 'a100']);
  t.equal((await badValue.exit).code, 2);
});
