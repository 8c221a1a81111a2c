import t from 'tap';
import net from 'node:net';
import { startFixtureBackend } from '../helpers/fixture-backend.js';
import { startTestRouter } from '../helpers/router.js';
import { post, get, send } from '../helpers/client.js';

t.test('bad input gets JSON errors with stable codes', async (t) => {
  const b = await startFixtureBackend();
  const r = await startTestRouter(['--worker-urls', b.url, '--policy', 'round_robin', '--max-payload-size', '1000']);
  t.teardown(async () => {
    await r.close(0);
    await b.close();
  });
  const cases: [string, Promise<{ status: number; body: string; headers: Record<string, unknown> }>, number, string][] = [
    ['malformed JSON', post(`${r.url}/generate`, '{"text": '), 400, 'invalid_json'],
    ['empty body', post(`${r.url}/generate`, ''), 400, 'invalid_json'],
    ['array body', post(`${r.url}/generate`, '[1,2]'), 400, 'invalid_request'],
    ['missing prompt', post(`${r.url}/generate`, { sampling_params: {} }), 400, 'missing_prompt'],
    ['bad text type', post(`${r.url}/generate`, { text: 5 }), 400, 'invalid_request'],
    ['chat without messages', post(`${r.url}/v1/chat/completions`, { model: 'm' }), 400, 'missing_prompt'],
    ['completions without prompt', post(`${r.url}/v1/completions`, { model: 'm' }), 400, 'missing_prompt'],
    ['too large', post(`${r.url}/generate`, { text: 'x'.repeat(2000) }), 413, 'payload_too_large'],
    ['wrong method', get(`${r.url}/generate`), 405, 'method_not_allowed'],
    ['wrong method admin', get(`${r.url}/add_worker`), 405, 'method_not_allowed'],
    ['unknown route', get(`${r.url}/nope`), 404, 'not_found'],
    ['unknown POST route', post(`${r.url}/v1/unknown`, {}), 404, 'not_found'],
    ['wrong content type', send('POST', `${r.url}/generate`, 'text=hi', { 'content-type': 'application/x-www-form-urlencoded' }), 415, 'unsupported_media_type'],
    ['bad request id', post(`${r.url}/generate`, { text: 'x' }, { 'x-request-id': 'bad id with spaces' }), 400, 'invalid_request_id'],
    ['bad worker url', send('POST', `${r.url}/add_worker?url=ftp://x`, undefined), 400, 'invalid_worker_url'],
    ['missing worker url', send('POST', `${r.url}/add_worker`, undefined), 400, 'invalid_worker_url'],
  ];
  for (const [name, p, status, code] of cases) {
    const res = await p;
    t.equal(res.status, status, `${name}: status`);
    t.match(res.headers['content-type'], /application\/json/, `${name}: JSON`);
    t.equal(JSON.parse(res.body).error.code, code, `${name}: code`);
  }
  t.equal(b.received.length, 0, 'nothing reached the worker');
  // the router still serves afterwards
  t.equal((await post(`${r.url}/generate`, { text: 'ok' })).status, 200);
});

t.test('oversized body without content-length (chunked) is cut off', async (t) => {
  const b = await startFixtureBackend();
  const r = await startTestRouter(['--worker-urls', b.url, '--policy', 'round_robin', '--max-payload-size', '1000']);
  t.teardown(async () => {
    await r.close(0);
    await b.close();
  });
  const port = r.port;
  const reply = await new Promise<string>((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.write('POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n');
      const chunk = 'x'.repeat(500);
      for (let i = 0; i < 5; i++) s.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
      s.write('0\r\n\r\n');
    });
    let data = '';
    s.on('data', (d) => (data += d.toString()));
    s.on('close', () => resolve(data));
    s.on('error', () => resolve(data));
    setTimeout(() => s.destroy(), 2000);
  });
  t.match(reply, /^HTTP\/1\.1 413/);
  t.match(reply, /payload_too_large/);
  t.equal((await post(`${r.url}/generate`, { text: 'ok' })).status, 200, 'still serving');
});

t.test('api key protects data and admin routes', async (t) => {
  const b = await startFixtureBackend();
  const r = await startTestRouter(['--worker-urls', b.url, '--policy', 'round_robin', '--api-key', 'sekret']);
  t.teardown(async () => {
    await r.close(0);
    await b.close();
  });
  const no = await post(`${r.url}/generate`, { text: 'x' });
  t.equal(no.status, 401);
  t.equal(JSON.parse(no.body).error.code, 'unauthorized');
  t.equal((await post(`${r.url}/generate`, { text: 'x' }, { authorization: 'Bearer wrong' })).status, 401);
  t.equal((await post(`${r.url}/generate`, { text: 'x' }, { authorization: 'Bearer sekret' })).status, 200);
  t.equal((await get(`${r.url}/list_workers`)).status, 401);
  t.equal((await get(`${r.url}/list_workers`, { authorization: 'Bearer sekret' })).status, 200);
  t.equal((await get(`${r.url}/health`)).status, 200, 'health stays public');
  t.equal(b.received[0]?.headers['authorization'], undefined, 'the router key is not forwarded');
});
