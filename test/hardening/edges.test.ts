/**
 * Edges of the front end over real sockets: CORS, header limits (431), the slow-body guard (408 and
 * close), graceful shutdown (a stream in flight at SIGTERM completes; new connections are refused; exit 0).
 */
import net from 'node:net';
import http from 'node:http';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { startSimFleet } from '../../src/sim/fleet.js';
import { startTestRouter } from '../helpers/router.js';
import { send, post, waitFor } from '../helpers/client.js';

const BIN = fileURLToPath(new URL('../../../bin/switchyard.js', import.meta.url));
const body = JSON.stringify({ text: 'edge case prompt', sampling_params: { max_new_tokens: 2 } });

t.test('CORS: preflight, allowed and refused origins, headers on responses', async (t) => {
  const fleet = await startSimFleet({ count: 1, timeScale: 0.01 });
  const r = await startTestRouter(['--prometheus-port', '0', '--worker-urls', ...fleet.urls, '--cors-allowed-origins', 'http://ok.example']);
  const off = await startTestRouter(['--prometheus-port', '0', '--worker-urls', ...fleet.urls]);
  t.teardown(async () => {
    await r.close(0);
    await off.close(0);
    await fleet.close();
  });
  const pre = await send('OPTIONS', `${r.url}/v1/chat/completions`, undefined, { origin: 'http://ok.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type, authorization' });
  t.equal(pre.status, 204);
  t.equal(pre.headers['access-control-allow-origin'], 'http://ok.example');
  t.match(pre.headers['access-control-allow-methods'], /POST/);
  t.equal(pre.headers['access-control-allow-headers'], 'content-type, authorization');
  const bad = await send('OPTIONS', `${r.url}/generate`, undefined, { origin: 'http://evil.example' });
  t.equal(bad.status, 403);
  t.equal(JSON.parse(bad.body).error.code, 'forbidden');
  const res = await post(`${r.url}/generate`, body, { origin: 'http://ok.example' });
  t.equal(res.status, 200);
  t.equal(res.headers['access-control-allow-origin'], 'http://ok.example');
  const other = await post(`${r.url}/generate`, body, { origin: 'http://evil.example' });
  t.equal(other.status, 200);
  t.equal(other.headers['access-control-allow-origin'], undefined, 'no CORS header for an unlisted origin');
  const offPre = await send('OPTIONS', `${off.url}/generate`, undefined, { origin: 'http://ok.example' });
  t.equal(offPre.status, 405, 'CORS off: OPTIONS is just a wrong method');
  t.equal((await post(`${off.url}/generate`, body, { origin: 'http://ok.example' })).headers['access-control-allow-origin'], undefined);
});

t.test('header limits: 431 headers_too_large', async (t) => {
  const fleet = await startSimFleet({ count: 1, timeScale: 0.01 });
  const r = await startTestRouter(['--prometheus-port', '0', '--worker-urls', ...fleet.urls, '--max-request-headers', '20', '--max-request-header-bytes', '2048']);
  t.teardown(async () => {
    await r.close(0);
    await fleet.close();
  });
  const many: Record<string, string> = {};
  for (let i = 0; i < 30; i++) many[`x-h${i}`] = 'v';
  const a = await post(`${r.url}/generate`, body, many);
  t.equal(a.status, 431);
  t.equal(JSON.parse(a.body).error.code, 'headers_too_large');
  const b = await post(`${r.url}/generate`, body, { 'x-big': 'b'.repeat(4000) });
  t.equal(b.status, 431);
  t.equal((await post(`${r.url}/generate`, body, { 'x-small': 'ok' })).status, 200);
  // (a front-end thread counts a request finished just after its response left)
  await waitFor(() => r.ctx.counters.active === 0, 5000, 'no active request');
});

t.test('slow body (slowloris): 408 request_body_timeout and the connection closed', async (t) => {
  const fleet = await startSimFleet({ count: 1, timeScale: 0.01 });
  const r = await startTestRouter(['--prometheus-port', '0', '--worker-urls', ...fleet.urls, '--request-body-timeout-secs', '0.3', '--request-body-min-rate', '1000000']);
  t.teardown(async () => {
    await r.close(0);
    await fleet.close();
  });
  const answer = await new Promise<string>((resolve) => {
    const s = net.connect(r.port, '127.0.0.1');
    const chunks: Buffer[] = [];
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', () => undefined);
    s.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    s.write(`POST /generate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{"text":"sl`);
    const drip = setInterval(() => s.write('o'), 50);
    s.on('close', () => clearInterval(drip));
    setTimeout(() => s.destroy(), 10_000);
  });
  t.match(answer, /^HTTP\/1\.1 408/);
  t.match(answer, /"code":"request_body_timeout"/);
  // (a front-end thread counts a request finished just after its response left)
  await waitFor(() => r.ctx.counters.active === 0, 5000, 'no active request');
  t.equal(r.ctx.counters.failed, 1);
  // A client that leaves mid-body is counted as aborted, not left active.
  await new Promise<void>((resolve) => {
    const s = net.connect(r.port, '127.0.0.1', () => {
      s.write(`POST /generate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{"te`);
      setTimeout(() => {
        s.destroy();
        resolve();
      }, 50);
    });
    s.on('error', () => undefined);
  });
  await waitFor(() => r.ctx.counters.aborted === 1, 5000, 'counted as aborted');
  // (a front-end thread counts a request finished just after its response left)
  await waitFor(() => r.ctx.counters.active === 0, 5000, 'no active request');
});

t.test('graceful shutdown: a stream in flight completes, new connections are refused', async (t) => {
  const fleet = await startSimFleet({ count: 1, timeScale: 0.2 });
  const r = await startTestRouter(['--prometheus-port', '0', '--worker-urls', ...fleet.urls]);
  t.teardown(async () => {
    await r.close(0);
    await fleet.close();
  });
  let chunks = 0;
  const streamDone = new Promise<string>((resolve, reject) => {
    const req = http.request(`${r.url}/generate`, { method: 'POST', headers: { 'content-type': 'application/json' }, agent: false }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => {
        chunks++;
        text += d.toString();
      });
      res.on('end', () => resolve(text));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(JSON.stringify({ text: 'a long stream', stream: true, sampling_params: { max_new_tokens: 60, ignore_eos: true } }));
  });
  await waitFor(() => chunks > 0, 10_000, 'stream started');
  const closing = r.close(30_000);
  await new Promise((res) => setTimeout(res, 50));
  const refused = await post(`${r.url}/generate`, body).then(
    (x) => `answered ${x.status}`,
    (err: NodeJS.ErrnoException) => err.code ?? 'error',
  );
  t.ok(refused === 'ECONNREFUSED' || refused === 'answered 503', `new requests refused (${refused})`);
  const text = await streamDone;
  t.match(text, /data: \[DONE\]/, 'the in-flight stream completed');
  t.notMatch(text, /"error"/);
  await closing;
  // (a front-end thread counts a request finished just after its response left)
  await waitFor(() => r.ctx.counters.active === 0, 5000, 'no active request');
  t.equal(r.ctx.counters.completed, 1);
});

t.test('SIGTERM on the serve process: in-flight stream completes, exit code 0', async (t) => {
  const proc = spawn(process.execPath, [BIN, 'serve', '--host', '127.0.0.1', '--port', '0', '--sim-workers', '1', '--sim-base-port', '0', '--sim-time-scale', '0.2', '--prometheus-port', '0', '--policy', 'round_robin'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((res) => proc.on('exit', (code) => res(code)));
  t.teardown(() => {
    if (proc.exitCode === null) proc.kill('SIGKILL');
  });
  const url = await new Promise<string>((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`not ready: ${buf}`)), 30_000);
    proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      for (const line of buf.split('\n')) {
        if (!line.includes('"router.ready"')) continue;
        clearTimeout(timer);
        resolve((JSON.parse(line) as { url: string }).url);
      }
    });
    proc.stderr!.on('data', (d: Buffer) => (buf += d.toString()));
  });
  let chunks = 0;
  const streamDone = new Promise<string>((resolve, reject) => {
    const req = http.request(`${url}/generate`, { method: 'POST', headers: { 'content-type': 'application/json' }, agent: false }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => {
        chunks++;
        text += d.toString();
      });
      res.on('end', () => resolve(text));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(JSON.stringify({ text: 'a long stream', stream: true, sampling_params: { max_new_tokens: 60, ignore_eos: true } }));
  });
  await waitFor(() => chunks > 0, 10_000, 'stream started');
  proc.kill('SIGTERM');
  const text = await streamDone;
  t.match(text, /data: \[DONE\]/, 'the stream in flight at SIGTERM completed');
  t.notMatch(text, /"error"/);
  t.equal(await exited, 0, 'exit code 0');
});

t.test('trace ids: a valid traceparent is forwarded, an invalid one dropped', async (t) => {
  const seen: string[] = [];
  const worker = http.createServer((req, res) => {
    if (req.method === 'POST') seen.push(String(req.headers['traceparent'] ?? ''));
    req.resume();
    req.on('end', () => {
      if (req.method === 'GET') return res.end('ok');
      res.setHeader('content-type', 'application/json');
      res.end('{"text":"x","meta_info":{"prompt_tokens":1,"completion_tokens":1}}');
    });
  });
  await new Promise<void>((res) => worker.listen(0, '127.0.0.1', res));
  const wurl = `http://127.0.0.1:${(worker.address() as net.AddressInfo).port}`;
  const r = await startTestRouter(['--prometheus-port', '0', '--worker-urls', wurl]);
  t.teardown(async () => {
    await r.close(0);
    worker.close();
  });
  const good = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  t.equal((await post(`${r.url}/generate`, body, { traceparent: good })).status, 200);
  t.equal((await post(`${r.url}/generate`, body, { traceparent: 'garbage-not-a-trace' })).status, 200);
  t.equal((await post(`${r.url}/generate`, body, { traceparent: '00-00000000000000000000000000000000-00f067aa0ba902b7-01' })).status, 200);
  t.same(seen, [good, '', ''], 'only the valid traceparent reached the worker');
});
