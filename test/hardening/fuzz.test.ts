/**
 * Fuzz suite against a live router (real sockets): malformed and truncated JSON, invalid UTF-8, huge and
 * many headers, oversized bodies, wrong methods and content types, random bytes on a raw socket.
 * Invariants: the router never crashes, every HTTP answer that is not a success is a JSON error with a
 * stable code, counters return to zero, and memory stays flat across thousands of iterations.
 */
import net from 'node:net';
import http from 'node:http';
import t from 'tap';
import { startSimFleet } from '../../src/sim/fleet.js';
import { startTestRouter } from '../helpers/router.js';
import { waitFor } from '../helpers/client.js';
import { Rng } from '../../src/util/rng.js';
import { ERROR_REGISTRY } from '../../src/errors.js';

const PAYLOAD_LIMIT = 64 * 1024;
const DATA_PATHS = ['/generate', '/v1/chat/completions', '/v1/completions'];
const VALID: Record<string, string> = {
  '/generate': JSON.stringify({ text: 'fuzz the router with this prompt', sampling_params: { max_new_tokens: 2 } }),
  '/v1/chat/completions': JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'fuzz' }], max_tokens: 2 }),
  '/v1/completions': JSON.stringify({ model: 'm', prompt: 'fuzz', max_tokens: 2 }),
};

interface Answer {
  status: number;
  body: string;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

function request(url: string, method: string, path: string, body: Buffer | undefined, headers: Record<string, string>): Promise<Answer | 'closed'> {
  return new Promise((resolve) => {
    const req = http.request(url + path, { method, headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', () => resolve('closed'));
    });
    // The router may close the connection after refusing an oversized body: that is not a failure.
    req.on('error', () => resolve('closed'));
    req.end(body);
  });
}

/** One fuzz case from the seeded generator: what to send. */
function fuzzCase(rng: Rng): { method: string; path: string; body: Buffer | undefined; headers: Record<string, string>; kind: string } {
  const path = DATA_PATHS[rng.int(0, DATA_PATHS.length - 1)]!;
  const valid = Buffer.from(VALID[path]!);
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  switch (rng.int(0, 9)) {
    case 0:
      return { kind: 'truncated', method: 'POST', path, body: valid.subarray(0, rng.int(0, valid.length - 1)), headers };
    case 1: {
      const b = Buffer.from(valid);
      for (let i = rng.int(1, 6); i > 0; i--) b[rng.int(0, b.length - 1)] = rng.int(0, 255);
      return { kind: 'mutated', method: 'POST', path, body: b, headers };
    }
    case 2: {
      const bad = Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0xe2, 0x82, 0xed, 0xa0, 0x80]);
      const at = valid.indexOf('fuzz');
      return { kind: 'invalid-utf8', method: 'POST', path, body: Buffer.concat([valid.subarray(0, at), bad.subarray(0, rng.int(1, bad.length)), valid.subarray(at)]), headers };
    }
    case 3: {
      const b = Buffer.alloc(rng.int(1, 256));
      for (let i = 0; i < b.length; i++) b[i] = rng.int(0, 255);
      return { kind: 'random-body', method: 'POST', path, body: b, headers };
    }
    case 4:
      return { kind: 'oversized', method: 'POST', path, body: Buffer.alloc(PAYLOAD_LIMIT + rng.int(1, 4096), 0x20), headers };
    case 5: {
      const methods = ['GET', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD'];
      return { kind: 'wrong-method', method: methods[rng.int(0, methods.length - 1)]!, path, body: undefined, headers: {} };
    }
    case 6: {
      const types = ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml', '*/*'];
      return { kind: 'wrong-content-type', method: 'POST', path, body: valid, headers: { 'content-type': types[rng.int(0, types.length - 1)]! } };
    }
    case 7: {
      for (let i = rng.int(10, 40); i > 0; i--) headers[`x-fuzz-${i}`] = 'v'.repeat(rng.int(0, 200));
      return { kind: 'many-headers', method: 'POST', path, body: valid, headers };
    }
    case 8:
      headers['x-huge'] = 'h'.repeat(rng.int(1000, 20_000));
      return { kind: 'huge-header', method: 'POST', path, body: valid, headers };
    default: {
      const shapes = ['[]', 'null', '42', '"str"', '{"text":42}', '{"messages":"x"}', '{"prompt":{}}', '{"text":"a","rid":"bad id!"}', '{"sampling_params":{"max_new_tokens":-5},"text":"x"}', '{}'];
      return { kind: 'wrong-shape', method: 'POST', path, body: Buffer.from(shapes[rng.int(0, shapes.length - 1)]!), headers };
    }
  }
}

function checkAnswer(a: Answer | 'closed', kind: string, method: string): string | undefined {
  if (a === 'closed') return kind === 'oversized' ? undefined : `${kind} ${method}: connection closed without an answer`;
  if (a.status >= 200 && a.status < 300) return undefined;
  if (method === 'HEAD') return a.status === 405 ? undefined : `${kind}: HEAD answered ${a.status}`;
  try {
    const parsed = JSON.parse(a.body) as { error?: { code?: string } };
    const code = parsed.error?.code;
    if (typeof code !== 'string' || !(code in ERROR_REGISTRY)) return `${kind}: ${a.status} without a registered error code: ${a.body.slice(0, 200)}`;
    if (code.startsWith('upstream_') || code === 'internal_error') return `${kind}: server-side error ${code}: ${a.body.slice(0, 200)}`;
  } catch {
    return `${kind}: ${a.status} with a non-JSON body: ${a.body.slice(0, 200)}`;
  }
  return undefined;
}

function rawBytes(port: number, bytes: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', () => undefined);
    s.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    s.write(bytes);
    setTimeout(() => s.destroy(), 100);
  });
}

t.test('fuzzed requests: no crash, JSON errors with codes, counters back to 0, memory flat', async (t) => {
  const fleet = await startSimFleet({ count: 2, timeScale: 0.01 });
  const r = await startTestRouter(['--prometheus-port', '0', '--worker-urls', ...fleet.urls, '--max-payload-size', String(PAYLOAD_LIMIT), '--no-enable-request-tracking']);
  t.teardown(async () => {
    agent.destroy();
    await r.close(0);
    await fleet.close();
  });
  const rng = new Rng(20261123);
  const problems: string[] = [];
  const kinds = new Map<string, number>();
  const round = async (n: number) => {
    const lanes = 8;
    let next = 0;
    await Promise.all(
      Array.from({ length: lanes }, async () => {
        while (next < n) {
          next++;
          const c = fuzzCase(rng);
          kinds.set(c.kind, (kinds.get(c.kind) ?? 0) + 1);
          const a = await request(r.url, c.method, c.path, c.body, c.headers);
          const p = checkAnswer(a, c.kind, c.method);
          if (p !== undefined && problems.length < 20) problems.push(p);
        }
      }),
    );
  };
  await round(300); // warm-up: JIT, pools, lazily created state
  const before = process.memoryUsage();
  await round(3000);
  const after = process.memoryUsage();
  t.same(problems, [], 'every answer is a success or a JSON error with a registered code');
  t.comment(`cases: ${JSON.stringify(Object.fromEntries(kinds))}`);
  const rssGrowthMb = (after.rss - before.rss) / 2 ** 20;
  const heapGrowthMb = (after.heapUsed - before.heapUsed) / 2 ** 20;
  t.comment(`rss ${(before.rss / 2 ** 20).toFixed(1)} -> ${(after.rss / 2 ** 20).toFixed(1)} MB, heap ${(before.heapUsed / 2 ** 20).toFixed(1)} -> ${(after.heapUsed / 2 ** 20).toFixed(1)} MB`);
  t.ok(rssGrowthMb < 200, `RSS growth bounded (${rssGrowthMb.toFixed(1)} MB over 3,000 cases)`);
  t.ok(heapGrowthMb < 100, `heap growth bounded (${heapGrowthMb.toFixed(1)} MB)`);
  await waitFor(() => r.ctx.counters.active === 0, 10_000, 'no active request');
  for (const w of r.ctx.registry.list()) t.equal(r.ctx.table.inFlight(w.slot), 0, `${w.url}: in-flight 0`);
});

t.test('random bytes on a raw socket never crash the router', async (t) => {
  const fleet = await startSimFleet({ count: 1, timeScale: 0.01 });
  const r = await startTestRouter(['--prometheus-port', '0', '--worker-urls', ...fleet.urls]);
  t.teardown(async () => {
    await r.close(0);
    await fleet.close();
  });
  const rng = new Rng(7);
  const prefixes = ['', 'POST /generate HTTP/1.1\r\n', 'GET / HTTP/1.1\r\nhost: x\r\n', 'POST /generate HTTP/1.1\r\ncontent-length: 99999999999\r\n\r\n', 'POST /generate HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n'];
  const answers: string[] = [];
  for (let batch = 0; batch < 20; batch++) {
    const sends: Promise<string>[] = [];
    for (let k = 0; k < 20; k++) {
      const junk = Buffer.alloc(rng.int(1, 2048));
      for (let j = 0; j < junk.length; j++) junk[j] = rng.int(0, 255);
      sends.push(rawBytes(r.port, Buffer.concat([Buffer.from(prefixes[k % prefixes.length]!), junk])));
    }
    for (const text of await Promise.all(sends)) if (text !== '') answers.push(text);
  }
  for (const a of answers) {
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(a)?.[1] ?? 0);
    const bodyAt = a.indexOf('\r\n\r\n');
    if (status >= 400 && bodyAt !== -1 && a.length > bodyAt + 4) t.match(a.slice(bodyAt + 4), /"code":"[a-z_]+"/, `HTTP ${status} answer is a JSON error`);
  }
  const ok = await request(r.url, 'POST', '/generate', Buffer.from(VALID['/generate']!), { 'content-type': 'application/json' });
  t.not(ok, 'closed');
  t.equal((ok as Answer).status, 200, 'still serving after 400 junk connections');
  await waitFor(() => r.ctx.counters.active === 0, 10_000, 'no active request');
});
