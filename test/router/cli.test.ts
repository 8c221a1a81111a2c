/**
 * The real `switchyard serve` process with its embedded simulated fleet: what `npm start` runs.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { post, get } from '../helpers/client.js';

const BIN = fileURLToPath(new URL('../../../bin/switchyard.js', import.meta.url));

function startServe(args: string[]): Promise<{ url: string; proc: ReturnType<typeof spawn>; exited: Promise<number | null> }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [BIN, 'serve', '--host', '127.0.0.1', '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`serve did not become ready: ${buf}`)), 30_000);
    proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      for (const line of buf.split('\n')) {
        if (!line.includes('"router.ready"')) continue;
        clearTimeout(timer);
        resolve({ url: (JSON.parse(line) as { url: string }).url, proc, exited });
        return;
      }
    });
    proc.stderr!.on('data', (d: Buffer) => (buf += d.toString()));
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`serve exited early (${code}): ${buf}`));
    });
  });
}

t.test('serve with an embedded fleet: round robin, worker header, OpenAI client streaming, clean SIGTERM', async (t) => {
  const { url, proc, exited } = await startServe(['--policy', 'round_robin', '--sim-workers', '2', '--sim-base-port', '0', '--sim-time-scale', '0.05', '--log-level', 'info']);
  t.teardown(() => {
    if (proc.exitCode === null) proc.kill('SIGKILL');
  });
  const workers = JSON.parse((await get(`${url}/list_workers`)).body) as { urls: string[] };
  t.equal(workers.urls.length, 2);
  const seen: string[] = [];
  for (let i = 0; i < 4; i++) {
    const res = await post(`${url}/generate`, { text: `hello ${i}`, sampling_params: { max_new_tokens: 4 } });
    t.equal(res.status, 200);
    seen.push(res.headers['x-sglang-worker'] as string);
  }
  t.same(seen, [seen[0], seen[1], seen[0], seen[1]], 'alternates');
  t.not(seen[0], seen[1]);
  t.ok(workers.urls.includes(seen[0]!) && workers.urls.includes(seen[1]!));

  const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
  const stream = await client.chat.completions.create({
    model: 'switchyard/sim-8b',
    messages: [
      { role: 'system', content: 'You are terse.' },
      { role: 'user', content: 'Say something.' },
    ],
    max_tokens: 6,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let usage: { completion_tokens: number } | undefined;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta?.content ?? '';
    if (chunk.usage) usage = chunk.usage;
  }
  t.ok(text.length > 0, 'streamed content');
  t.equal(usage?.completion_tokens, 6, 'usage chunk relayed');
  const done = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'x' }], max_tokens: 3 });
  t.equal(done.usage?.completion_tokens, 3);

  proc.kill('SIGTERM');
  t.equal(await exited, 0, 'exits 0 on SIGTERM');
});

t.test('serve --help lists the SGLang router flags', async (t) => {
  const out = await new Promise<string>((resolve) => {
    const p = spawn(process.execPath, [BIN, 'serve', '--help']);
    let s = '';
    p.stdout.on('data', (d: Buffer) => (s += d.toString()));
    p.on('exit', () => resolve(s));
  });
  for (const flag of ['--worker-urls', '--policy', '--cache-threshold', '--balance-abs-threshold', '--balance-rel-threshold', '--eviction-interval-secs', '--max-tree-size', '--request-id-headers', '--request-timeout-secs', '--max-payload-size', '--health-check-interval-secs', '--prometheus-port', '--log-level', '--sim-workers']) {
    t.match(out, flag);
  }
});

t.test('bad flags exit 2 with a message', async (t) => {
  const res = await new Promise<{ code: number | null; err: string }>((resolve) => {
    const p = spawn(process.execPath, [BIN, 'serve', '--port', 'nope']);
    let err = '';
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('exit', (code) => resolve({ code, err }));
  });
  t.equal(res.code, 2);
  t.match(res.err, /--port expects a number/);
});
