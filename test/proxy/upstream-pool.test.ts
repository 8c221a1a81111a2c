/**
 * The fast upstream client's connection management over real sockets: keep-alive reuse, the stale
 * keep-alive retry (and when it must not happen), Connection: close, Keep-Alive: timeout=, the idle
 * timeout, the connection limit and its queue, close() and destroy().
 */
import t from 'tap';
import net from 'node:net';
import { FastPool } from '../../src/proxy/upstream/fast-pool.js';
import { delay, okResponse, send, startRawServer, until } from './upstream-helpers.js';

const OPTS = { connections: 8, keepAliveTimeout: 30_000, headersTimeout: 10_000, bodyTimeout: 10_000, connectTimeout: 5_000 };

t.test('keep-alive: sequential requests share one connection; concurrent ones open more, then reuse them', async (t) => {
  const server = await startRawServer((s, req) => setTimeout(() => s.write(okResponse(`{"n":${req.index}}`)), 5));
  const pool = new FastPool(server.origin, OPTS);
  t.teardown(async () => {
    await pool.destroy();
    await server.close();
  });
  for (let i = 0; i < 5; i++) t.equal((await send(pool)).status, 200);
  t.equal(server.connections, 1, 'five requests, one connection');
  t.equal(pool.connections, 1);
  t.equal(pool.idleConnections, 1);
  const all = await Promise.all(Array.from({ length: 4 }, () => send(pool)));
  t.same(all.map((x) => x.status), [200, 200, 200, 200]);
  t.equal(server.connections, 4, 'four at once: the idle one and three new');
  for (let i = 0; i < 3; i++) await Promise.all(Array.from({ length: 4 }, () => send(pool)));
  t.equal(server.connections, 4, 'and then the same four again');
});

t.test('the connection limit queues requests in order', async (t) => {
  const order: string[] = [];
  const server = await startRawServer((s, req) => {
    order.push(req.body.toString());
    setTimeout(() => s.write(okResponse('{}')), 10);
  });
  const pool = new FastPool(server.origin, { ...OPTS, connections: 2 });
  t.teardown(async () => {
    await pool.destroy();
    await server.close();
  });
  const results = await Promise.all(Array.from({ length: 6 }, (_, i) => send(pool, { body: Buffer.from(`r${i}`) })));
  t.same(results.map((x) => x.status), [200, 200, 200, 200, 200, 200]);
  t.equal(server.connections, 2, 'never more than the limit');
  t.same(order, ['r0', 'r1', 'r2', 'r3', 'r4', 'r5'], 'first in, first served');
  // A queued request can be aborted while it waits; the rest still run.
  let aborted: (() => void) | undefined;
  const p = Promise.all([send(pool), send(pool), send(pool, {}, (h) => {
    const onConnect = h.onConnect!.bind(h);
    h.onConnect = (abort) => {
      onConnect(abort);
      aborted = () => abort(new Error('client went away'));
    };
  }), send(pool)]);
  t.equal(pool.queued, 2, 'two wait for a connection');
  aborted!();
  const [a, b, c, d] = await p;
  t.equal(c!.error?.message, 'client went away');
  t.same([a!.status, b!.status, d!.status], [200, 200, 200]);
  t.equal(server.requests.length, 9, 'the aborted request was never sent');
});

t.test('a stale keep-alive connection: an idempotent request is sent again on a fresh connection', async (t) => {
  // The server answers the first request, then drops the connection as the next request arrives, without
  // a byte of response: the race of a keep-alive connection closed by the server while idle.
  const server = await startRawServer((s, req) => {
    if (req.index === 0) s.write(okResponse('{"first":true}'));
    else s.destroy();
  });
  const pool = new FastPool(server.origin, OPTS);
  t.teardown(async () => {
    await pool.destroy();
    await server.close();
  });
  t.equal((await send(pool)).status, 200);
  const x = await send(pool, { idempotent: true, body: Buffer.from('again') });
  t.equal(x.status, 200, 'retried on a new connection and answered');
  t.same(x.calls, ['onConnect', 'onHeaders', 'onData', 'onComplete'], 'the handler saw one clean exchange');
  t.equal(server.connections, 2);
  t.same(server.requests.map((r) => [r.connection, r.index]), [[0, 0], [0, 1], [1, 0]], 'sent on the stale connection, then once on a fresh one');
  t.equal(server.requests[2]!.body.toString(), 'again');

  // Not idempotent (a POST by default): the failure surfaces; the router decides.
  const stale = await send(pool, { body: Buffer.from('post') });
  t.ok(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE'].includes(stale.error?.code ?? ''), `not retried: ${stale.error?.code}`);
  t.equal(server.requests.length, 4, 'sent once');
});

t.test('no retry when the stale connection was fresh, or once a response byte arrived, or twice', async (t) => {
  let mode = 'fresh-drop';
  let answered = 0;
  const server = await startRawServer((s, req) => {
    if (mode === 'fresh-drop') s.destroy();
    else if (mode === 'partial') {
      if (req.index === 0) s.write(okResponse('{}'));
      else {
        s.write('HTTP/1.1 200 OK\r\ncontent-');
        setTimeout(() => s.destroy(), 20);
      }
    } else if (mode === 'answer-once') {
      if (answered++ === 0) s.write(okResponse('{}'));
      else s.destroy();
    }
  });
  const pool = new FastPool(server.origin, OPTS);
  t.teardown(async () => {
    await pool.destroy();
    await server.close();
  });
  const fresh = await send(pool, { idempotent: true });
  t.equal(fresh.error?.code, 'UND_ERR_SOCKET', 'a fresh connection closed: an error, not a retry');
  t.equal(server.requests.length, 1);

  mode = 'partial';
  t.equal((await send(pool, { idempotent: true })).status, 200);
  const partial = await send(pool, { idempotent: true });
  t.equal(partial.error?.code, 'UND_ERR_SOCKET', 'part of a response arrived: not retried');
  t.equal(server.requests.length, 3);

  mode = 'answer-once';
  t.equal((await send(pool, { idempotent: true })).status, 200);
  // Stale, retried on a fresh connection, which the server also drops (its first request there).
  const twice = await send(pool, { idempotent: true });
  t.equal(twice.error?.code, 'UND_ERR_SOCKET', 'retried once only');
  t.equal(server.requests.length, 6);
});

t.test('a connection the server closed while idle is dropped from the pool', async (t) => {
  const server = await startRawServer((s) => {
    s.write(okResponse('{}'));
    setTimeout(() => s.end(), 20);
  });
  const pool = new FastPool(server.origin, OPTS);
  t.teardown(async () => {
    await pool.destroy();
    await server.close();
  });
  t.equal((await send(pool)).status, 200);
  t.equal(pool.idleConnections, 1);
  await until(() => pool.connections === 0, 2000, 'dropped on FIN');
  t.equal((await send(pool)).status, 200, 'the next request opens a new connection');
  t.equal(server.connections, 2);
});

t.test('Connection: close and HTTP/1.0 answers are not reused', async (t) => {
  const server = await startRawServer((s, req) => {
    if (req.path === '/close') s.write(okResponse('{}', 'Connection: close\r\n'));
    else s.write('HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n{}');
  });
  const pool = new FastPool(server.origin, OPTS);
  t.teardown(async () => {
    await pool.destroy();
    await server.close();
  });
  t.equal((await send(pool, { path: '/close' })).status, 200);
  t.equal(pool.connections, 0, 'closed by us as soon as the response ended');
  t.equal((await send(pool, { path: '/close' })).status, 200);
  t.equal((await send(pool, { path: '/http10' })).status, 200);
  t.equal(server.connections, 3, 'one connection per request');
  await until(() => server.closed === 3, 2000, 'every connection closed');
});

t.test('Keep-Alive: timeout= bounds the idle time (less a margin); our own idle timeout applies otherwise', async (t) => {
  const server = await startRawServer((s, req) => {
    if (req.path === '/short') s.write(okResponse('{}', 'Keep-Alive: timeout=1\r\n'));
    else if (req.path === '/hinted') s.write(okResponse('{}', 'Keep-Alive: timeout=2, max=100\r\n'));
    else s.write(okResponse('{}'));
  });
  const pool = new FastPool(server.origin, { ...OPTS, keepAliveTimeout: 300, keepAliveTimeoutThreshold: 1_000 });
  t.teardown(async () => {
    await pool.destroy();
    await server.close();
  });
  t.equal((await send(pool, { path: '/short' })).status, 200);
  t.equal(pool.connections, 0, 'timeout=1 less the 1 s margin leaves nothing: not reused');
  t.equal((await send(pool, { path: '/hinted' })).status, 200);
  t.equal(pool.idleConnections, 1, 'timeout=2: kept for about a second');
  await delay(400);
  t.equal(pool.idleConnections, 1, 'still kept after our own (shorter) default would have expired');
  await until(() => pool.connections === 0, 3000, 'closed after the hinted idle time');
  t.equal((await send(pool, { path: '/plain' })).status, 200);
  t.equal(pool.idleConnections, 1);
  await until(() => pool.connections === 0, 3000, 'closed after our keepAliveTimeout');
  await until(() => server.closed === 3, 2000, 'the server saw every close');
});

t.test('close() lets running and queued requests finish, then refuses new ones; destroy() fails them', async (t) => {
  const server = await startRawServer((s) => setTimeout(() => s.write(okResponse('{}')), 30));
  const pool = new FastPool(server.origin, { ...OPTS, connections: 1 });
  t.teardown(async () => {
    await pool.destroy();
    await server.close();
  });
  const running = [send(pool), send(pool)];
  const closed = pool.close();
  const refused = await send(pool);
  t.equal(refused.error?.code, 'UND_ERR_CLOSED');
  t.same((await Promise.all(running)).map((x) => x.status), [200, 200], 'both finished');
  await closed;
  await until(() => server.closed === 1, 2000, 'idle connection closed');

  const pool2 = new FastPool(server.origin, { ...OPTS, connections: 1 });
  const inFlight = [send(pool2), send(pool2)];
  await delay(5);
  await pool2.destroy();
  const [a, b] = await Promise.all(inFlight);
  t.equal(a!.error?.code, 'UND_ERR_DESTROYED', 'running request failed');
  t.equal(b!.error?.code, 'UND_ERR_DESTROYED', 'queued request failed');
  t.equal(pool2.connections, 0);
  t.equal((await send(pool2)).error?.code, 'UND_ERR_DESTROYED');
});

t.test('idle connections do not keep the process alive', async (t) => {
  const server = await startRawServer((s, req) => setTimeout(() => s.write(okResponse('{}')), req.path === '/slow' ? 50 : 0));
  const pool = new FastPool(server.origin, OPTS);
  t.teardown(async () => {
    await pool.destroy();
    await server.close();
  });
  // process._getActiveHandles() lists the handles that keep the event loop alive (referenced ones).
  const refed = (): number => ((process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles().filter((h) => h instanceof net.Socket && h.remotePort === server.port)).length;
  await send(pool);
  t.equal(pool.idleConnections, 1);
  t.equal(refed(), 0, 'an idle connection is unreferenced');
  const busy = send(pool, { path: '/slow' });
  t.equal(refed(), 1, 'a busy one is referenced');
  await busy;
  t.equal(refed(), 0, 'and unreferenced again once idle');
});
