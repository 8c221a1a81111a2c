/**
 * CORS headers on every response the router writes for an allowed origin: relayed answers and streams,
 * control routes, and the router's own errors (400, 401, 404, 405, 408, 413, 415, 429, 431, 502, 503,
 * 504, HEAD), so a browser can read every error body. None for an unlisted origin or with CORS off.
 */
import net from 'node:net';
import t, { type Test } from 'tap';
import { startSimFleet } from '../../src/sim/fleet.js';
import { startTestRouter } from '../helpers/router.js';
import { get, post, send, waitFor, type RawResponse } from '../helpers/client.js';

const ORIGIN = 'http://ok.example';
const body = JSON.stringify({ text: 'cors prompt', sampling_params: { max_new_tokens: 2 } });

function hasCors(t: Test, res: RawResponse | { headers: Record<string, string | string[] | undefined>; status: number }, what: string): void {
  t.equal(res.headers['access-control-allow-origin'], ORIGIN, `${what} (${res.status}): access-control-allow-origin`);
  t.match(String(res.headers['vary'] ?? ''), /origin/i, `${what}: vary: origin`);
  t.match(String(res.headers['access-control-expose-headers'] ?? ''), /x-request-id/, `${what}: exposes x-request-id`);
}

/** Raw request: the response head parsed into status and lower-case headers (the connection may close). */
function raw(port: number, bytes: string, drip?: string): Promise<{ status: number; headers: Record<string, string>; text: string }> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let timer: NodeJS.Timeout | undefined;
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', () => undefined);
    s.on('close', () => {
      if (timer !== undefined) clearInterval(timer);
      const text = Buffer.concat(chunks).toString('latin1');
      const [head = ''] = text.split('\r\n\r\n');
      const lines = head.split('\r\n');
      const headers: Record<string, string> = {};
      for (const l of lines.slice(1)) {
        const i = l.indexOf(':');
        if (i > 0) headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
      }
      resolve({ status: Number(lines[0]?.split(' ')[1] ?? 0), headers, text });
    });
    s.write(bytes);
    if (drip !== undefined) timer = setInterval(() => s.write(drip), 50);
    setTimeout(() => s.destroy(), 10_000);
  });
}

t.test('errors the router writes itself carry the CORS headers', async (t) => {
  const hanging = await startSimFleet({ count: 1, timeScale: 0.01, hang: true });
  const r = await startTestRouter([
    '--worker-urls', ...hanging.urls, '--cors-allowed-origins', ORIGIN, '--api-key', 'k',
    '--max-payload-size', '1000', '--max-request-headers', '20',
    '--max-concurrent-requests', '1', '--queue-size', '1', '--queue-timeout-secs', '0.5', '--request-timeout-secs', '1.5',
    '--request-body-timeout-secs', '0.3', '--request-body-min-rate', '1000000',
  ]);
  t.teardown(async () => {
    await r.close(0);
    await hanging.close();
  });
  const auth = { authorization: 'Bearer k', origin: ORIGIN };
  // 504 (the hanging worker), 408 (queued too long), 429 (queue full).
  const first = post(`${r.url}/generate`, body, auth);
  await waitFor(() => r.ctx.limits?.active === 1, 5000, 'slot taken');
  const second = post(`${r.url}/generate`, body, auth);
  await waitFor(() => r.ctx.limits?.queued === 1, 5000, 'one queued');
  const third = await post(`${r.url}/generate`, body, auth);
  t.equal(third.status, 429);
  hasCors(t, third, '429 queue_full');
  const queued = await second;
  t.equal(queued.status, 408);
  t.equal(JSON.parse(queued.body).error.code, 'queue_timeout');
  hasCors(t, queued, '408 queue_timeout');
  const timedOut = await first;
  t.equal(timedOut.status, 504);
  hasCors(t, timedOut, '504 upstream_timeout');

  const unauth = await post(`${r.url}/generate`, body, { origin: ORIGIN });
  t.equal(unauth.status, 401);
  hasCors(t, unauth, '401 unauthorized');
  const badJson = await post(`${r.url}/generate`, '{"text":', auth);
  t.equal(badJson.status, 400);
  hasCors(t, badJson, '400 invalid_json');
  const media = await send('POST', `${r.url}/generate`, body, { ...auth, 'content-type': 'text/plain' });
  t.equal(media.status, 415);
  hasCors(t, media, '415 unsupported_media_type');
  const many: Record<string, string> = { ...auth };
  for (let i = 0; i < 25; i++) many[`x-h${i}`] = 'v';
  const tooMany = await post(`${r.url}/generate`, body, many);
  t.equal(tooMany.status, 431);
  hasCors(t, tooMany, '431 headers_too_large');
  const notFound = await get(`${r.url}/nope`, { origin: ORIGIN });
  t.equal(notFound.status, 404);
  hasCors(t, notFound, '404 not_found');
  const wrongMethod = await get(`${r.url}/generate`, { origin: ORIGIN });
  t.equal(wrongMethod.status, 405);
  hasCors(t, wrongMethod, '405 method_not_allowed');
  const head = await send('HEAD', `${r.url}/nope`, undefined, { origin: ORIGIN });
  t.equal(head.status, 404);
  hasCors(t, head, 'HEAD 404');
  const health = await get(`${r.url}/health`, { origin: ORIGIN });
  t.equal(health.status, 200);
  hasCors(t, health, '/health');

  // 413 and the slow-body 408 answer and close the connection: read them off a raw socket.
  const big = await raw(r.port, `POST /generate HTTP/1.1\r\nhost: x\r\norigin: ${ORIGIN}\r\nauthorization: Bearer k\r\ncontent-type: application/json\r\ncontent-length: 5000\r\n\r\n`);
  t.equal(big.status, 413);
  hasCors(t, big, '413 payload_too_large');
  const slow = await raw(r.port, `POST /generate HTTP/1.1\r\nhost: x\r\norigin: ${ORIGIN}\r\nauthorization: Bearer k\r\ncontent-type: application/json\r\ncontent-length: 900\r\n\r\n{"te`, 'x');
  t.equal(slow.status, 408);
  t.match(slow.text, /request_body_timeout/);
  hasCors(t, slow, '408 request_body_timeout');

  // An unlisted origin gets none of it.
  const other = await get(`${r.url}/nope`, { origin: 'http://evil.example' });
  t.equal(other.status, 404);
  t.equal(other.headers['access-control-allow-origin'], undefined, 'no CORS header for an unlisted origin');
  await waitFor(() => r.ctx.counters.active === 0, 5000, 'drained');
});

t.test('relayed answers, streams, forwarded GETs, 502 and 503 carry the CORS headers', async (t) => {
  const fleet = await startSimFleet({ count: 1, timeScale: 0.01 });
  const failing = await startSimFleet({ count: 1, timeScale: 0.01, failRate: 1, statusCode: 502 });
  const dead = net.createServer();
  await new Promise<void>((res) => dead.listen(0, '127.0.0.1', res));
  const deadUrl = `http://127.0.0.1:${(dead.address() as net.AddressInfo).port}`;
  await new Promise<void>((res) => dead.close(() => res()));
  const good = await startTestRouter(['--worker-urls', ...fleet.urls, '--cors-allowed-origins', ORIGIN]);
  const bad = await startTestRouter(['--worker-urls', ...failing.urls, '--cors-allowed-origins', '*', '--disable-retries']);
  const none = await startTestRouter(['--worker-urls', deadUrl, '--cors-allowed-origins', ORIGIN]);
  const off = await startTestRouter(['--worker-urls', ...fleet.urls]);
  t.teardown(async () => {
    await Promise.all([good.close(0), bad.close(0), none.close(0), off.close(0)]);
    await Promise.all([fleet.close(), failing.close()]);
  });
  const ok = await post(`${good.url}/generate`, body, { origin: ORIGIN });
  t.equal(ok.status, 200);
  hasCors(t, ok, 'relayed JSON');
  const stream = await post(`${good.url}/generate`, JSON.stringify({ text: 'cors stream', stream: true, sampling_params: { max_new_tokens: 3 } }), { origin: ORIGIN });
  t.equal(stream.status, 200);
  t.match(stream.body, /data: \[DONE\]/);
  hasCors(t, stream, 'relayed stream');
  for (const path of ['/get_model_info', '/list_workers', '/readiness', '/stats', '/v1/traces/stats']) {
    const res = await get(`${good.url}${path}`, { origin: ORIGIN });
    hasCors(t, res, path);
  }
  const upstream = await post(`${bad.url}/generate`, body, { origin: ORIGIN });
  t.equal(upstream.status, 502, "the worker's 502 relayed");
  hasCors(t, upstream, '502 from the worker (allow-list *)');
  const unavailable = await post(`${none.url}/generate`, body, { origin: ORIGIN });
  t.equal(unavailable.status, 503);
  t.equal(JSON.parse(unavailable.body).error.code, 'no_healthy_workers');
  hasCors(t, unavailable, '503 no_healthy_workers');
  const offAnswer = await get(`${off.url}/nope`, { origin: ORIGIN });
  t.equal(offAnswer.status, 404);
  t.equal(offAnswer.headers['access-control-allow-origin'], undefined, 'CORS off: no header');
  t.equal(offAnswer.headers['vary'], undefined);
});

t.test('the CORS facade leaves the app untouched when CORS is off', async (t) => {
  const { withCorsHeaders } = await import('../../src/frontend/cors.js');
  const { createApp } = await import('../../src/frontend/http.js');
  const app = createApp();
  t.equal(withCorsHeaders(app, []), app, 'no wrapper without allowed origins');
  t.not(withCorsHeaders(app, [ORIGIN]), app, 'a facade with them');
});
