/**
 * --frontend-threads N: connections spread over the main thread and N-1 worker threads on one port; the
 * counters add up; every control route answers the same whichever thread gets it; the mirror follows
 * /add_worker and /remove_worker; stateful policies decide through the main thread; a trace is readable as
 * soon as its response arrived, from any thread.
 */
import t from 'tap';
import http from 'node:http';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startFixtureBackend } from '../helpers/fixture-backend.js';
import { startTestRouter } from '../helpers/router.js';
import { get, post, send, waitFor, type RawResponse } from '../helpers/client.js';
import type { StartedRouter } from '../../src/router.js';

const FRESH = 16; // fresh connections per route: P(all on one of 2 threads) = 2^-15

function forwardedBy(r: StartedRouter): number[] {
  const out: number[] = [];
  for (let i = 0; i < r.frontends!.frontends; i++) out.push(r.frontends!.counters(i).forwarded);
  return out;
}

function requestsBy(r: StartedRouter): number[] {
  const out: number[] = [];
  for (let i = 0; i < r.frontends!.frontends; i++) out.push(r.frontends!.counters(i).requests);
  return out;
}

/** Status, content type and the body with volatile fields removed. */
function comparable(res: RawResponse, volatile: readonly string[] = []): string {
  let body: unknown = res.body;
  if ((res.headers['content-type'] ?? '').includes('json') && res.body !== '') {
    body = JSON.parse(res.body) as unknown;
    const strip = (v: unknown): unknown => {
      if (Array.isArray(v)) return v.map(strip);
      if (v === null || typeof v !== 'object') return v;
      const o: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) if (!volatile.includes(k)) o[k] = strip(x);
      return o;
    };
    body = strip(body);
  }
  const h = res.headers;
  return JSON.stringify({ status: res.status, type: h['content-type'], allow: h['allow'], cors: h['access-control-allow-origin'], worker: h['x-sglang-worker'], body });
}

t.test('connections spread over the front ends; counters and /stats add up; request ids stay unique', async (t) => {
  const b = await startFixtureBackend();
  const r = await startTestRouter(['--worker-urls', b.url, '--policy', 'round_robin', '--frontend-threads', '3']);
  t.teardown(async () => {
    await r.close(0);
    await b.close();
  });
  t.equal(r.frontends?.frontends, 3);
  const n = 90;
  const ids = new Set<string>();
  for (let i = 0; i < n; i += 10) {
    const batch = await Promise.all(Array.from({ length: 10 }, () => post(`${r.url}/generate`, { text: 'spread' })));
    for (const res of batch) {
      t.equal(res.status, 200);
      t.equal(res.headers['x-sglang-worker'], b.url);
      ids.add(res.headers['x-request-id'] as string);
    }
  }
  t.equal(ids.size, n, 'every generated request id is unique across threads');
  const per = requestsBy(r);
  t.ok(per.every((x) => x > 0), `every front end served requests: ${per.join(', ')}`);
  t.equal(per.reduce((a, x) => a + x, 0), n);
  t.equal(r.ctx.counters.requests, n, 'ctx.counters sums the front ends');
  t.equal(r.ctx.counters.completed, n);
  t.equal(r.ctx.counters.active, 0);
  const stats = JSON.parse((await get(`${r.url}/stats`)).body) as { requests: { total: number; completed: number; by_route: Record<string, number> }; routing: { decisions: { total: number } } };
  t.equal(stats.requests.total, n, '/stats totals');
  t.equal(stats.requests.by_route['/generate'], n, 'accepted events from every thread reached the metrics');
  t.equal(stats.routing.decisions.total, n, 'decided events from every thread reached the metrics');
  const bundle = JSON.parse((await get(`${r.url}/admin/debug/bundle`)).body) as { counters: { requests: number } };
  t.equal(bundle.counters.requests, n, 'the debug bundle spreads the totals');
  const prom = await get(`http://127.0.0.1:${r.observability.prometheus!.port}/metrics`);
  t.match(prom.body, new RegExp(`sgl_router_requests_total\\{route="/generate"\\} ${n}\\b`), '/metrics counts every thread');
});

t.test('every control route family answers the same whichever front end gets the connection', async (t) => {
  const b = await startFixtureBackend();
  const r = await startTestRouter(['--worker-urls', b.url, '--policy', 'round_robin', '--frontend-threads', '2', '--cors-allowed-origins', 'http://app.example']);
  t.teardown(async () => {
    await r.close(0);
    await b.close();
  });
  const done = await post(`${r.url}/generate`, { text: 'trace me' });
  const rid = done.headers['x-request-id'] as string;

  const families: [string, () => Promise<RawResponse>, string[]][] = [
    ['health', () => get(`${r.url}/health`), []],
    ['liveness', () => get(`${r.url}/liveness`), []],
    ['readiness', () => get(`${r.url}/readiness`), []],
    ['models (forwarded to a worker)', () => get(`${r.url}/v1/models`), []],
    ['server info', () => get(`${r.url}/get_server_info`), []],
    ['list_workers', () => get(`${r.url}/list_workers`), []],
    ['get_loads', () => get(`${r.url}/get_loads`), []],
    ['flush_cache fan-out', () => send('POST', `${r.url}/flush_cache`, undefined), []],
    ['trace by id', () => get(`${r.url}/v1/traces/${rid}`), []],
    ['trace list', () => get(`${r.url}/v1/traces?limit=5`), []],
    ['trace batch', () => post(`${r.url}/v1/traces/batch`, { request_ids: [rid, 'unknown-id'] }), []],
    ['trace bad id', () => get(`${r.url}/v1/traces/${'x'.repeat(200)}`), []],
    ['stats', () => get(`${r.url}/stats`), ['generated_at', 'uptime_s', 'windows', 'stats', 'balance']],
    ['debug bundle', () => get(`${r.url}/admin/debug/bundle`), ['generated_at', 'uptime_s', 'process', 'stats', 'hdr_checkpoint', 'actors', 'policy', 'runtime']],
    ['unknown route', () => get(`${r.url}/nope`), []],
    ['wrong method', () => get(`${r.url}/generate`), []],
    ['HEAD', () => send('HEAD', `${r.url}/generate`, undefined), []],
    ['CORS preflight', () => send('OPTIONS', `${r.url}/generate`, undefined, { origin: 'http://app.example', 'access-control-request-method': 'POST' }), []],
    ['bad admin input', () => send('POST', `${r.url}/add_worker`, undefined), []],
  ];
  for (const [name, call, volatile] of families) {
    const before = forwardedBy(r);
    const answers = new Set<string>();
    for (let i = 0; i < FRESH; i++) answers.add(comparable(await call(), volatile));
    const after = forwardedBy(r);
    t.equal(answers.size, 1, `${name}: one answer over ${FRESH} connections`);
    t.ok(after.every((x, i) => x > before[i]!), `${name}: both front ends forwarded (${before.join(',')} -> ${after.join(',')})`);
  }
  const head = await send('HEAD', `${r.url}/generate`, undefined);
  t.equal(head.body, '', 'HEAD carries no body');
  t.equal(head.status, 405);
});

t.test('add and remove workers through any front end: every mirror follows', async (t) => {
  const a = await startFixtureBackend(0, 'a');
  const b = await startFixtureBackend(0, 'b');
  const r = await startTestRouter(['--worker-urls', a.url, '--policy', 'round_robin', '--frontend-threads', '2']);
  t.teardown(async () => {
    await r.close(0);
    await a.close();
    await b.close();
  });
  for (let round = 0; round < 4; round++) {
    const before = forwardedBy(r);
    const added = await send('POST', `${r.url}/add_worker?url=${encodeURIComponent(b.url)}`, undefined);
    t.equal(added.status, 200, 'added');
    // Every front end routes to the new worker (round robin over two: both seen on each thread).
    const seen = new Map<number, Set<string>>();
    const perBefore = requestsBy(r);
    for (let i = 0; i < 24; i++) {
      const res = await post(`${r.url}/generate`, { text: 'mirror' });
      t.equal(res.status, 200);
      const per = requestsBy(r);
      const by = per.findIndex((x, k) => x > perBefore[k]!);
      perBefore.splice(0, per.length, ...per);
      if (!seen.has(by)) seen.set(by, new Set());
      seen.get(by)!.add(res.headers['x-sglang-worker'] as string);
    }
    t.equal(seen.size, 2, 'requests reached both front ends');
    for (const [fe, workers] of seen) t.equal(workers.size, 2, `front end ${fe} routes to both workers after the add`);
    const removed = await send('POST', `${r.url}/remove_worker?url=${encodeURIComponent(b.url)}`, undefined);
    t.equal(removed.status, 200, 'removed');
    const after = forwardedBy(r);
    t.ok(after.some((x, i) => x > before[i]!));
    for (let i = 0; i < 12; i++) t.equal((await post(`${r.url}/generate`, { text: 'after remove' })).headers['x-sglang-worker'], a.url, 'removed worker gets nothing');
  }
  t.equal(r.ctx.table.inFlight(r.ctx.registry.list()[0]!.slot), 0);
});

t.test('a stateful policy decides in the main thread for every front end; traces are read-your-writes from any thread', async (t) => {
  const a = await startFixtureBackend(0, 'a');
  const b = await startFixtureBackend(0, 'b');
  const r = await startTestRouter(['--worker-urls', a.url, b.url, '--policy', 'cache_aware', '--frontend-threads', '2']);
  t.teardown(async () => {
    await r.close(0);
    await a.close();
    await b.close();
  });
  t.equal(r.ctx.policy.placement, 'actor');
  await r.ctx.policy.ready();
  for (let i = 0; i < 30; i++) {
    const res = await post(`${r.url}/generate`, { text: `prompt number ${i % 3} with a shared prefix long enough to match` });
    t.equal(res.status, 200);
    const rid = res.headers['x-request-id'] as string;
    const trace = await get(`${r.url}/v1/traces/${rid}`);
    t.equal(trace.status, 200, 'trace found at once');
    const body = JSON.parse(trace.body) as { status: string; decision_reason?: string; reason?: string };
    t.equal(body.status, 'completed', 'and final');
    const reason = JSON.stringify(body);
    t.notMatch(reason, /fallback/, 'decided by the policy, not a fallback');
  }
  const per = requestsBy(r);
  t.ok(per.every((x) => x > 0), `both front ends routed: ${per.join(', ')}`);
});

/** A streaming POST; resolves with the chunks read and whether the stream ended with [DONE]. */
function stream(url: string, body: unknown): { started: Promise<void>; done: Promise<{ complete: boolean; status: number }> } {
  let onStart!: () => void;
  const started = new Promise<void>((r) => (onStart = r));
  const done = new Promise<{ complete: boolean; status: number }>((resolve) => {
    const req = http.request(url, { method: 'POST', headers: { 'content-type': 'application/json' }, agent: false }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => {
        text += c.toString();
        onStart();
      });
      res.on('end', () => resolve({ complete: text.includes('[DONE]'), status: res.statusCode ?? 0 }));
      res.on('error', () => resolve({ complete: false, status: res.statusCode ?? 0 }));
      res.on('aborted', () => resolve({ complete: false, status: res.statusCode ?? 0 }));
    });
    req.on('error', () => {
      onStart();
      resolve({ complete: false, status: 0 });
    });
    req.end(JSON.stringify(body));
  });
  return { started, done };
}

t.test('a crashed front-end thread: its requests are lost, their counters and admission slots given back; it restarts; routing continues', async (t) => {
  const b = await startFixtureBackend();
  b.streamChunks = 150;
  b.chunkDelayMs = 10;
  const r = await startTestRouter(['--worker-urls', b.url, '--policy', 'round_robin', '--frontend-threads', '2', '--max-concurrent-requests', '100']);
  t.teardown(async () => {
    await r.close(0);
    await b.close();
  });
  const slot = r.ctx.registry.list()[0]!.slot;
  const streams = Array.from({ length: 12 }, () => stream(`${r.url}/generate`, { text: 'long', stream: true }));
  await Promise.all(streams.map((s) => s.started));
  const onThread = r.frontends!.counters(1).active;
  t.ok(onThread > 0 && onThread < 12, `streams on both front ends (${onThread} on the thread)`);
  t.equal(r.ctx.table.inFlight(slot), 12);
  t.equal(r.ctx.limits?.active, 12);
  r.frontends!.injectCrash(1);
  const results = await Promise.all(streams.map((s) => s.done));
  const complete = results.filter((x) => x.complete).length;
  t.equal(complete, 12 - onThread, 'the main thread finished its streams; the crashed thread lost its own');
  await waitFor(() => r.ctx.table.inFlight(slot) === 0, 5000, 'in-flight counters back to 0');
  t.equal(r.ctx.table.inFlightTokens(slot), 0);
  t.equal(r.ctx.limits?.active, 0, 'admission slots given back');
  t.equal(r.ctx.counters.active, 0);
  t.equal(r.ctx.counters.aborted, onThread, 'lost requests counted as aborted');
  await r.frontends!.whenRunning(1);
  t.equal(r.frontends!.restarts, 1);
  b.streamChunks = 3;
  const before = requestsBy(r);
  const again = await Promise.all(Array.from({ length: 24 }, () => post(`${r.url}/generate`, { text: 'after the crash' })));
  t.ok(again.every((x) => x.status === 200), 'every request served after the restart');
  const after = requestsBy(r);
  t.ok(after[1]! > before[1]!, 'the restarted thread serves again');
  // A thread gives its in-flight count back just after its response left: wait for it (a leaked count
  // stays and fails here).
  await waitFor(() => r.ctx.table.inFlight(slot) === 0, 5000, 'in-flight counters back to 0 after the restart');
  t.equal(r.ctx.table.inFlight(slot), 0);
});

t.test('graceful shutdown: every front end drains its streams, then the port closes', async (t) => {
  const b = await startFixtureBackend();
  b.streamChunks = 40;
  b.chunkDelayMs = 10;
  const r = await startTestRouter(['--worker-urls', b.url, '--policy', 'round_robin', '--frontend-threads', '2']);
  t.teardown(() => b.close());
  const streams = Array.from({ length: 8 }, () => stream(`${r.url}/generate`, { text: 'drain', stream: true }));
  await Promise.all(streams.map((s) => s.started));
  t.ok(r.frontends!.counters(1).active > 0 && r.frontends!.counters(0).active > 0, 'streams on both front ends');
  const closed = r.close(10_000);
  const results = await Promise.all(streams.map((s) => s.done));
  t.ok(results.every((x) => x.complete), 'every stream finished');
  await closed;
  t.equal(r.ctx.counters.active, 0);
  t.equal(r.ctx.counters.completed, 8, 'completions reported before the threads exited');
  await t.rejects(post(`${r.url}/generate`, { text: 'late' }), 'nothing listens any more');
});

t.test('--max-concurrent-requests holds across front ends', async (t) => {
  const b = await startFixtureBackend();
  let open = 0;
  let peak = 0;
  b.handler = (_req, res) => {
    open++;
    peak = Math.max(peak, open);
    setTimeout(() => {
      open--;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ text: 'ok', meta_info: { prompt_tokens: 1, completion_tokens: 1 } }));
    }, 300);
  };
  const r = await startTestRouter(['--worker-urls', b.url, '--policy', 'round_robin', '--frontend-threads', '2', '--max-concurrent-requests', '3', '--queue-size', '100', '--queue-timeout-secs', '30']);
  t.teardown(async () => {
    await r.close(0);
    await b.close();
  });
  const res = await Promise.all(Array.from({ length: 16 }, (_, i) => post(`${r.url}/generate`, { text: `limited ${i}` })));
  t.ok(res.every((x) => x.status === 200), 'every request served (queued ones after a slot freed, in whichever thread)');
  t.ok(peak <= 3, `at most 3 at the worker at once (peak ${peak})`);
  t.equal(peak, 3, 'and the limit was reached');
  const per = requestsBy(r);
  t.ok(per.every((x) => x > 0), `both front ends took requests: ${per.join(', ')}`);
  // A front-end thread releases its slot just after its response left: wait for the last one.
  await waitFor(() => r.ctx.limits?.active === 0, 5000, 'every admission slot released');
  t.equal(r.ctx.limits?.active, 0);
  t.equal(r.ctx.limits?.queued, 0);
  t.equal(r.ctx.limits?.stats.admitted, 16);
});

t.test('switchyard serve --frontend-threads 2 with its embedded fleet (npm start), SIGTERM exits 0', async (t) => {
  const bin = fileURLToPath(new URL('../../../bin/switchyard.js', import.meta.url));
  const proc = spawn(process.execPath, [bin, 'serve', '--host', '127.0.0.1', '--port', '0', '--frontend-threads', '2', '--sim-workers', '2', '--sim-base-port', '0', '--sim-time-scale', '0.05', '--prometheus-port', '0', '--policy', 'round_robin'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => {
    if (proc.exitCode === null) proc.kill('SIGKILL');
  });
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  const url = await new Promise<string>((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`serve did not become ready: ${buf}`)), 30_000);
    proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const line = buf.split('\n').find((l) => l.includes('"router.ready"'));
      if (line === undefined) return;
      clearTimeout(timer);
      const ready = JSON.parse(line) as { url: string; frontend_threads: number };
      t.equal(ready.frontend_threads, 2);
      resolve(ready.url);
    });
    proc.stderr!.on('data', (d: Buffer) => (buf += d.toString()));
  });
  const workers = new Set<string>();
  for (let i = 0; i < 12; i++) {
    const res = await post(`${url}/generate`, { text: `hello ${i}`, sampling_params: { max_new_tokens: 4 } });
    t.equal(res.status, 200);
    workers.add(res.headers['x-sglang-worker'] as string);
  }
  t.equal(workers.size, 2, 'both simulated workers served');
  const stats = JSON.parse((await get(`${url}/stats`)).body) as { requests: { total: number; completed: number } };
  t.equal(stats.requests.total, 12);
  t.equal(stats.requests.completed, 12);
  proc.kill('SIGTERM');
  t.equal(await exited, 0, 'exits 0 on SIGTERM');
});

