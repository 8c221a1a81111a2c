/**
 * The fast upstream client's flow control and failures over real sockets: backpressure (onData false ->
 * the socket pauses, resume() continues), aborts (the socket is destroyed, so the upstream sees the
 * cancel), connect/headers/body timeouts, and the error codes the relay maps (refused, reset, closed).
 */
import t from 'tap';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { FastPool } from '../../src/proxy/upstream/fast-pool.js';
import { delay, okResponse, send, startRawServer, until } from './upstream-helpers.js';

const OPTS = { connections: 8, keepAliveTimeout: 30_000, headersTimeout: 10_000, bodyTimeout: 10_000, connectTimeout: 5_000 };

t.test('backpressure: onData false pauses the socket until resume(); nothing is lost or reordered', async (t) => {
  const CHUNK = 64 * 1024;
  const CHUNKS = 64; // 4 MiB: far beyond the socket buffers, so the server must block while we pause
  let serverBlocked = 0;
  let serverWritten = 0;
  const server = await startRawServer((s) => {
    s.write(`HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: ${CHUNK * CHUNKS}\r\n\r\n`);
    let i = 0;
    const pump = (): void => {
      while (i < CHUNKS) {
        const ok = s.write(Buffer.alloc(CHUNK, i % 251));
        i++;
        serverWritten = i;
        if (!ok) {
          serverBlocked++;
          s.once('drain', pump);
          return;
        }
      }
    };
    pump();
  });
  const pool = new FastPool(server.origin, OPTS);
  t.teardown(async () => {
    await pool.destroy();
    await server.close();
  });
  let received = 0;
  let dataWhilePaused = 0;
  let paused = false;
  let pausedOnce = false;
  let resume: (() => void) | undefined;
  const parts: Buffer[] = [];
  const x = send(pool, {}, (h) => {
    const onHeaders = h.onHeaders!.bind(h);
    h.onHeaders = (status, raw, r, text) => {
      resume = r;
      return onHeaders(status, raw, r, text);
    };
    h.onData = (chunk) => {
      if (paused) dataWhilePaused++;
      parts.push(chunk);
      received += chunk.length;
      if (received >= CHUNK && !pausedOnce) {
        pausedOnce = true;
        paused = true;
        return false;
      }
      return true;
    };
  });
  await until(() => paused, 5000, 'the first pause');
  await delay(300);
  const writtenWhilePaused = serverWritten;
  await delay(300);
  t.equal(dataWhilePaused, 0, 'no onData while paused');
  t.ok(serverBlocked > 0, 'the server had to wait for the socket to drain');
  t.equal(serverWritten, writtenWhilePaused, 'the server made no progress while we were paused');
  t.ok(serverWritten < CHUNKS, `the server is stuck at ${serverWritten} of ${CHUNKS} chunks`);
  paused = false;
  resume!();
  resume!(); // a second resume is harmless
  const done = await x;
  t.equal(done.error, undefined);
  const body = Buffer.concat(parts);
  t.equal(body.length, CHUNK * CHUNKS, 'every byte arrived');
  let ordered = true;
  for (let i = 0; i < CHUNKS; i++) if (body[i * CHUNK] !== i % 251 || body[i * CHUNK + CHUNK - 1] !== i % 251) ordered = false;
  t.ok(ordered, 'in order');
  t.equal(pool.idleConnections, 1, 'the connection is reused after a paused response');
});

t.test('pausing on every chunk of a chunked stream: each resume() delivers exactly the next piece', async (t) => {
  const events = Array.from({ length: 20 }, (_, i) => `data: {"i":${i}}\n\n`);
  const server = await startRawServer((s) => {
    s.write('HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n' + events.map((e) => `${Buffer.byteLength(e).toString(16)}\r\n${e}\r\n`).join('') + '0\r\n\r\n');
  });
  const pool = new FastPool(server.origin, OPTS);
  t.teardown(async () => {
    await pool.destroy();
    await server.close();
  });
  let resume: (() => void) | undefined;
  const got: string[] = [];
  let completed = false;
  const x = send(pool, {}, (h) => {
    const onHeaders = h.onHeaders!.bind(h);
    h.onHeaders = (status, raw, r, text) => {
      resume = r;
      return onHeaders(status, raw, r, text);
    };
    h.onData = (chunk) => {
      got.push(chunk.toString());
      return false;
    };
    const onComplete = h.onComplete!.bind(h);
    h.onComplete = (tr) => {
      completed = true;
      onComplete(tr);
    };
  });
  await until(() => got.length === 1, 5000, 'first event');
  for (let i = 1; i < events.length; i++) {
    await delay(1);
    t.equal(got.length, i, `paused after event ${i}`);
    resume!();
  }
  t.equal(completed, false, 'completion waits for the last resume');
  resume!();
  await x;
  t.same(got, events);
});

const EVENT = 'data: {"x":1}\n\n';

t.test('abort mid-stream destroys the socket: the upstream sees the cancel, the connection is not reused', async (t) => {
  const server = await startRawServer((s) => {
    s.write('HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n');
    const timer = setInterval(() => {
      if (s.destroyed) return clearInterval(timer);
      s.write(`${Buffer.byteLength(EVENT).toString(16)}\r\n${EVENT}\r\n`);
    }, 5);
    s.on('close', () => clearInterval(timer));
  });
  const pool = new FastPool(server.origin, OPTS);
  t.teardown(async () => {
    await pool.destroy();
    await server.close();
  });
  let abort: ((err?: Error) => void) | undefined;
  let dataAfterAbort = 0;
  let aborted = false;
  const x = send(pool, {}, (h) => {
    const onConnect = h.onConnect!.bind(h);
    h.onConnect = (a) => {
      abort = a;
      onConnect(a);
    };
    const onData = h.onData!.bind(h);
    h.onData = (c) => {
      if (aborted) dataAfterAbort++;
      return onData(c);
    };
  });
  await until(() => server.open.size === 1 && server.requests.length === 1, 2000, 'streaming');
  await delay(30);
  aborted = true;
  abort!(new Error('client went away'));
  const r = await x;
  t.equal(r.error?.message, 'client went away', 'onError with the abort reason');
  t.equal(r.calls.filter((c) => c === 'onError').length, 1);
  t.equal(dataAfterAbort, 0);
  await until(() => server.open.size === 0, 2000, 'the server saw the connection close');
  t.equal(pool.connections, 0, 'not returned to the pool');
  abort!(); // aborting again is a no-op
  t.equal(r.calls.filter((c) => c === 'onError').length, 1, 'still one onError');
});

t.test('abort before any answer, and from inside onConnect; a default reason', async (t) => {
  const server = await startRawServer(() => undefined); // never answers
  const pool = new FastPool(server.origin, OPTS);
  t.teardown(async () => {
    await pool.destroy();
    await server.close();
  });
  let abort: ((err?: Error) => void) | undefined;
  const x = send(pool, {}, (h) => {
    const onConnect = h.onConnect!.bind(h);
    h.onConnect = (a) => {
      abort = a;
      onConnect(a);
    };
  });
  await until(() => server.requests.length === 1, 2000, 'request arrived');
  abort!();
  const r = await x;
  t.equal(r.error?.code, 'UND_ERR_ABORTED');
  await until(() => server.open.size === 0, 2000, 'closed');
  const sync = await send(pool, {}, (h) => {
    h.onConnect = (a) => a(new Error('already gone'));
  });
  t.equal(sync.error?.message, 'already gone');
  t.equal(server.requests.length, 1, 'a request aborted in onConnect is never sent');
});

t.test('connection refused, reset before the head, closed mid-body: the codes the relay maps', async (t) => {
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const closedPort = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  const refusedPool = new FastPool(`http://127.0.0.1:${closedPort}`, OPTS);
  const refused = await send(refusedPool);
  t.equal(refused.error?.code, 'ECONNREFUSED');
  t.same(refused.calls, ['onConnect', 'onError']);
  t.equal(refusedPool.connections, 0);
  await refusedPool.destroy();

  const server = await startRawServer((s, req) => {
    if (req.path === '/reset') s.resetAndDestroy();
    else if (req.path === '/cut') {
      s.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part');
      setTimeout(() => s.end(), 10);
    } else if (req.path === '/cut-chunked') {
      s.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\nsome\r\n');
      setTimeout(() => s.destroy(), 10);
    }
  });
  const pool = new FastPool(server.origin, OPTS);
  t.teardown(async () => {
    await pool.destroy();
    await server.close();
  });
  const reset = await send(pool, { path: '/reset' });
  t.ok(['ECONNRESET', 'UND_ERR_SOCKET'].includes(reset.error?.code ?? ''), `reset: ${reset.error?.code}`);
  t.equal(reset.status, 0, 'before any head');
  const cut = await send(pool, { path: '/cut' });
  t.equal(cut.error?.code, 'UND_ERR_SOCKET', 'content-length body cut short');
  t.equal(cut.status, 200);
  t.equal(cut.body.toString(), 'only part', 'the part that arrived was handed on');
  const cutChunked = await send(pool, { path: '/cut-chunked' });
  t.equal(cutChunked.error?.code, 'UND_ERR_SOCKET', 'chunked body cut short');
  t.equal(pool.connections, 0);
});

t.test('headers timeout and body timeout (a gap between body bytes, not the total)', async (t) => {
  const server = await startRawServer((s, req) => {
    if (req.path === '/silent') return; // never answers
    if (req.path === '/stall') {
      s.write('HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc');
      return; // then nothing
    }
    // /steady: 20 bytes, one every 30 ms: 600 ms in total, longer than the 400 ms timeout, but no gap near it
    s.write('HTTP/1.1 200 OK\r\ncontent-length: 20\r\n\r\n');
    let n = 0;
    const timer = setInterval(() => {
      if (s.destroyed || n === 20) return clearInterval(timer);
      s.write(String(n++ % 10));
    }, 30);
  });
  const pool = new FastPool(server.origin, OPTS);
  t.teardown(async () => {
    await pool.destroy();
    await server.close();
  });
  const silent = await send(pool, { path: '/silent', headersTimeout: 150, bodyTimeout: 150 });
  t.equal(silent.error?.code, 'UND_ERR_HEADERS_TIMEOUT');
  t.equal(silent.error?.name, 'HeadersTimeoutError');
  const stall = await send(pool, { path: '/stall', headersTimeout: 150, bodyTimeout: 150 });
  t.equal(stall.error?.code, 'UND_ERR_BODY_TIMEOUT');
  t.equal(stall.body.toString(), 'abc');
  const steady = await send(pool, { path: '/steady', headersTimeout: 400, bodyTimeout: 400 });
  t.equal(steady.error, undefined, 'a slow body whose gaps stay under the timeout completes');
  t.equal(steady.body.toString(), '01234567890123456789');
  await until(() => server.open.size === 1, 2000, 'timed-out connections closed');
  // Pool-wide defaults apply when a request sets none.
  const strict = new FastPool(server.origin, { ...OPTS, headersTimeout: 100 });
  const d = await send(strict, { path: '/silent' });
  t.equal(d.error?.code, 'UND_ERR_HEADERS_TIMEOUT');
  await strict.destroy();
});

t.test('a paused response does not hit the body timeout (a slow client is not a slow upstream)', async (t) => {
  const server = await startRawServer((s) => s.write(okResponse('0123456789')));
  const pool = new FastPool(server.origin, OPTS);
  t.teardown(async () => {
    await pool.destroy();
    await server.close();
  });
  let resume: (() => void) | undefined;
  const x = send(pool, { bodyTimeout: 100 }, (h) => {
    h.onHeaders = (status, _raw, r) => {
      resume = r;
      return false; // pause at the head
    };
  });
  await until(() => resume !== undefined, 2000, 'head');
  await delay(400);
  resume!();
  const r = await x;
  t.equal(r.error, undefined);
  t.equal(r.body.toString(), '0123456789');
});

t.test('connect timeout: a listener that never accepts', async (t) => {
  // A listen backlog of 1 in a process whose event loop is blocked: once the accept queue is full the
  // kernel drops further SYNs, so a connect hangs (no reliance on an unroutable address).
  const child = spawn(process.execPath, ['-e', "const s=require('net').createServer();s.listen({host:'127.0.0.1',port:0,backlog:1},()=>{console.log(s.address().port);Atomics.wait(new Int32Array(new SharedArrayBuffer(4)),0,0,60000)})"], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  const port = await new Promise<number>((resolve) => child.stdout!.once('data', (d: Buffer) => resolve(Number(String(d).trim()))));
  const fillers: net.Socket[] = [];
  t.teardown(() => {
    for (const s of fillers) s.destroy();
  });
  for (let i = 0; i < 4; i++) {
    const s = net.connect({ host: '127.0.0.1', port });
    s.on('error', () => undefined);
    fillers.push(s);
    await delay(50);
  }
  const pool = new FastPool(`http://127.0.0.1:${port}`, { ...OPTS, connectTimeout: 200 });
  const r = await send(pool);
  t.equal(r.error?.code, 'UND_ERR_CONNECT_TIMEOUT');
  t.equal(pool.connections, 0);
  await pool.destroy();
});

t.test('a handler that throws fails its own request, not the process', async (t) => {
  const server = await startRawServer((s) => s.write(okResponse('{"a":1}')));
  const pool = new FastPool(server.origin, OPTS);
  t.teardown(async () => {
    await pool.destroy();
    await server.close();
  });
  const r = await send(pool, {}, (h) => {
    h.onData = () => {
      throw new Error('handler bug');
    };
  });
  t.equal(r.error?.message, 'handler bug');
  t.equal(pool.connections, 0);
  t.equal((await send(pool)).status, 200, 'the pool carries on');
});
