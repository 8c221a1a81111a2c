import t from 'tap';
import { connect } from 'node:net';
import { startLightBackend, buildAnswers, type LightBackend } from '../../bench/fixtures/light-backend.js';
import { httpRequest } from '../../bench/lib/processes.js';
import { countSseEvents } from '../../bench/lib/e2e.js';

async function backend(t: { teardown(fn: () => void): void }, chunks: number, outputTokens = 4): Promise<{ b: LightBackend; url: string }> {
  const b = await startLightBackend({ host: '127.0.0.1', port: 0, chunks, outputTokens, model: 'light-test' });
  t.teardown(() => b.close());
  return { b, url: `http://127.0.0.1:${b.port}` };
}

interface Event {
  text: string;
  meta_info: { completion_tokens: number; finish_reason: unknown; id: string };
}

function events(body: string): Event[] {
  return body
    .split('\n\n')
    .filter((b) => b.startsWith('data: {'))
    .map((b) => JSON.parse(b.slice(6)) as Event);
}

const post = (url: string, body: string, headers: Record<string, string> = {}) => httpRequest(`${url}/generate`, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });

t.test('non-streaming: a fixed SGLang-shaped answer', async (t) => {
  const { url } = await backend(t, 5, 4);
  const r = await post(url, '{"text":"hi","sampling_params":{"max_new_tokens":4}}');
  t.equal(r.status, 200);
  const j = JSON.parse(r.body) as { text: string; output_ids: number[]; meta_info: Record<string, unknown> };
  t.equal(j.text.length, 16, '4 tokens of 4 characters');
  t.equal(j.output_ids.length, 4);
  t.same(j.meta_info['finish_reason'], { type: 'length', length: 4 });
  t.equal(j.meta_info['completion_tokens'], 4);
  t.equal(j.meta_info['prompt_tokens'], 8);
  const put = await httpRequest(`${url}/generate`, { method: 'PUT', body: '{"text":"hi"}' });
  t.equal(put.body, r.body, 'PUT answers the same');
});

t.test('streaming: N cumulative events then [DONE]', async (t) => {
  const { url } = await backend(t, 5);
  const r = await post(url, '{"text":"hi","stream":true}');
  t.equal(r.status, 200);
  t.same(countSseEvents(r.body), { events: 5, done: true });
  t.ok(r.body.endsWith('data: [DONE]\n\n'));
  const ev = events(r.body);
  ev.forEach((e, i) => {
    t.equal(e.meta_info.completion_tokens, i + 1);
    t.equal(e.text.length, 4 * (i + 1));
    if (i > 0) t.ok(e.text.startsWith(ev[i - 1]!.text), 'text is cumulative');
  });
  t.same(ev[4]!.meta_info.finish_reason, { type: 'length', length: 5 });
  t.equal(ev[3]!.meta_info.finish_reason, null);
});

t.test('health and load endpoints a router polls', async (t) => {
  const { url } = await backend(t, 3);
  t.same(await httpRequest(`${url}/health`), { status: 200, body: '' });
  t.equal((await httpRequest(`${url}/health_generate`)).status, 200);
  t.same(JSON.parse((await httpRequest(`${url}/get_load`)).body), [{ dp_rank: 0, num_reqs: 0, num_waiting_reqs: 0, num_tokens: 0 }]);
  t.same(JSON.parse((await httpRequest(`${url}/get_model_info`)).body), { model_path: 'light-test', tokenizer_path: 'light-test', is_generation: true });
  t.equal((JSON.parse((await httpRequest(`${url}/v1/models`)).body) as { data: { id: string }[] }).data[0]?.id, 'light-test');
  t.equal((JSON.parse((await httpRequest(`${url}/get_server_info`)).body) as { model_path: string }).model_path, 'light-test');
});

t.test('bad input gets a JSON error with a stable code', async (t) => {
  const { url } = await backend(t, 3);
  const notFound = await httpRequest(`${url}/nope`);
  t.equal(notFound.status, 404);
  t.equal((JSON.parse(notFound.body) as { error: { code: string } }).error.code, 'not_found');
  const badJson = await post(url, '{oops');
  t.equal(badJson.status, 400);
  t.equal((JSON.parse(badJson.body) as { error: { code: string } }).error.code, 'invalid_json');
  const notObject = await post(url, '[1,2]');
  t.equal((JSON.parse(notObject.body) as { error: { code: string } }).error.code, 'invalid_request');
  const big = await post(url, 'x'.repeat((1 << 20) + 1));
  t.equal(big.status, 413);
  t.equal((JSON.parse(big.body) as { error: { code: string } }).error.code, 'payload_too_large');
});

/** Raw socket client: send a streaming request, optionally stall before reading. */
function rawStream(port: number, opts: { stallMs?: number; abortAfterBytes?: number }): Promise<string> {
  return new Promise((resolve, reject) => {
    const body = '{"text":"hi","stream":true}';
    const sock = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let total = 0;
    sock.on('connect', () => {
      sock.write(`POST /generate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`);
      if (opts.stallMs !== undefined) {
        sock.pause();
        setTimeout(() => sock.resume(), opts.stallMs);
      }
    });
    sock.on('data', (d: Buffer) => {
      chunks.push(d);
      total += d.length;
      if (opts.abortAfterBytes !== undefined && total >= opts.abortAfterBytes) {
        sock.destroy();
        resolve(Buffer.concat(chunks).toString('utf8'));
      }
    });
    sock.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    sock.on('error', reject);
  });
}

/** Undo HTTP/1.1 chunked transfer encoding. */
function dechunk(raw: string): string {
  const at = raw.indexOf('\r\n\r\n');
  let rest = Buffer.from(raw.slice(at + 4), 'utf8');
  const out: Buffer[] = [];
  for (;;) {
    const nl = rest.indexOf('\r\n');
    const size = parseInt(rest.subarray(0, nl).toString('latin1'), 16);
    if (!(size > 0)) break;
    out.push(rest.subarray(nl + 2, nl + 2 + size));
    rest = rest.subarray(nl + 2 + size + 2);
  }
  return Buffer.concat(out).toString('utf8');
}

t.test('a slow reader gets every event intact and in order (backpressure)', async (t) => {
  const chunks = 2000; // ~8 MB of cumulative text: more than loopback socket buffers hold
  const { b } = await backend(t, chunks);
  const pending = rawStream(b.port, { stallMs: 1000 });
  await new Promise((r) => setTimeout(r, 500));
  t.equal(b.active(), 1, 'stream still in progress while the client stalls');
  const raw = await pending;
  t.match(raw, /^HTTP\/1\.1 200 OK\r\n/);
  t.match(raw, /content-type: text\/event-stream/i);
  const body = dechunk(raw);
  const ev = events(body);
  t.equal(ev.length, chunks);
  t.ok(ev.every((e, i) => e.meta_info.completion_tokens === i + 1), 'in order, none lost or repeated');
  t.ok(body.endsWith('data: [DONE]\n\n'));
  t.equal(body, buildAnswers(chunks, 4).events.map((e) => e.toString('utf8')).join('') + 'data: [DONE]\n\n', 'byte for byte');
  t.equal(b.active(), 0);
  t.ok(b.drainWaits() > 0, 'the backend paused for the socket to drain');
});

t.test('a client that goes away mid-stream releases the stream', async (t) => {
  const { b } = await backend(t, 1500);
  await rawStream(b.port, { abortAfterBytes: 10_000 });
  const t0 = Date.now();
  while (b.active() !== 0 && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 10));
  t.equal(b.active(), 0);
  // And it still serves afterwards.
  const r = await post(`http://127.0.0.1:${b.port}`, '{"stream":true}');
  t.equal(events(r.body).length, 1500);
});
