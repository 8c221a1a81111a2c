/**
 * The fast upstream client over real sockets: what it sends, and how it reads every response framing
 * (content-length, chunked with extensions and trailers, close-delimited, HEAD/204/304, 1xx), bytes that
 * arrive one per TCP write, bytes after a response, and oversized heads.
 */
import t from 'tap';
import net from 'node:net';
import { FastPool } from '../../src/proxy/upstream/fast-pool.js';
import { delay, okResponse, send, startRawServer, until } from './upstream-helpers.js';

const OPTS = { connections: 8, keepAliveTimeout: 30_000, headersTimeout: 10_000, bodyTimeout: 10_000, connectTimeout: 5_000 };

/** Write `text` one byte per TCP segment (Nagle off, a pause between writes so they are not coalesced). */
async function trickle(socket: net.Socket, text: string): Promise<void> {
  socket.setNoDelay(true);
  for (const byte of Buffer.from(text, 'latin1')) {
    if (socket.destroyed) return;
    socket.write(Buffer.from([byte]));
    await delay(1);
  }
}

t.test('request: one header block with host, content-length and the given headers, then the body', async (t) => {
  const server = await startRawServer((s) => s.write(okResponse('{}')));
  const pool = new FastPool(server.origin, OPTS);
  t.teardown(async () => {
    await pool.destroy();
    await server.close();
  });
  const x = await send(pool, { path: '/v1/chat/completions?x=1', headers: { 'content-type': 'application/json', 'X-Request-Id': 'abc', traceparent: '00-1-2-01' }, body: Buffer.from('{"a":1}') });
  t.equal(x.status, 200);
  const got = server.requests[0]!;
  t.equal(got.method, 'POST');
  t.equal(got.path, '/v1/chat/completions?x=1');
  t.equal(got.headers['host'], `127.0.0.1:${server.port}`);
  t.equal(got.headers['content-length'], '7');
  t.equal(got.headers['x-request-id'], 'abc');
  t.equal(got.headers['traceparent'], '00-1-2-01');
  t.equal(got.headers['connection'], 'keep-alive');
  t.match(got.head, /\r\nX-Request-Id: abc\r\n/, 'header names are sent as given');
  t.equal(got.body.toString(), '{"a":1}');
  // Flat header lists, string bodies, a GET without a body, an explicit host.
  const g = await send(pool, { method: 'GET', path: '/health', headers: ['Host', 'worker.example', 'x-a', '1'], body: null });
  t.equal(g.status, 200);
  t.equal(server.requests[1]!.headers['host'], 'worker.example');
  t.equal(server.requests[1]!.headers['content-length'], undefined, 'GET without a body sends no content-length');
  const s = await send(pool, { body: '{"é":1}' });
  t.equal(s.status, 200);
  t.equal(server.requests[2]!.body.toString('utf8'), '{"é":1}', 'string bodies go out as UTF-8');
  const empty = await send(pool, { body: null });
  t.equal(empty.status, 200);
  t.equal(server.requests[3]!.headers['content-length'], '0', 'POST without a body says content-length: 0');
  const big = Buffer.alloc(300_000, 0x61);
  const b = await send(pool, { body: big });
  t.equal(b.status, 200);
  t.equal(server.requests[4]!.body.length, big.length, 'a large body arrives whole');
});

t.test('a request goes out in one write call (header block and body together)', async (t) => {
  const server = await startRawServer((s) => s.write(okResponse('{}')));
  const pool = new FastPool(server.origin, OPTS);
  t.teardown(async () => {
    await pool.destroy();
    await server.close();
  });
  await send(pool); // connection open and idle
  const write = net.Socket.prototype.write;
  let writes = 0;
  net.Socket.prototype.write = function (this: net.Socket, ...args: unknown[]) {
    writes++;
    return (write as (...a: unknown[]) => boolean).apply(this, args);
  } as typeof write;
  try {
    const done = send(pool, { body: Buffer.from('{"text":"one write"}') });
    t.equal(writes, 1, 'dispatch wrote once');
    await done;
  } finally {
    net.Socket.prototype.write = write;
  }
  t.equal(server.requests[1]!.body.toString(), '{"text":"one write"}');
});

t.test('header values that could split the request are refused before anything is sent', async (t) => {
  const server = await startRawServer((s) => s.write(okResponse('{}')));
  const pool = new FastPool(server.origin, OPTS);
  t.teardown(async () => {
    await pool.destroy();
    await server.close();
  });
  for (const headers of [{ 'x-a': 'one\r\nx-injected: 1' }, { 'x-a': 'nul\0' }, { 'bad name': 'v' }, { 'transfer-encoding': 'chunked' }, { connection: 'upgrade' }]) {
    const x = await send(pool, { headers });
    t.equal(x.error?.code, 'UND_ERR_INVALID_ARG', JSON.stringify(headers));
    t.same(x.calls, ['onError'], 'reported through onError only');
  }
  const path = await send(pool, { path: '/a b' });
  t.equal(path.error?.code, 'UND_ERR_INVALID_ARG', 'a path with a space');
  t.equal(server.requests.length, 0, 'nothing was sent');
  t.equal(server.connections, 0);
});

const EVENT_A = 'data: {"text":"a"}\n\n';
const EVENT_B = 'data: {"text":"b"}\n\n';
const hex = (s: string): string => Buffer.byteLength(s).toString(16);

t.test('content-length, chunked with extensions and trailers, close-delimited bodies', async (t) => {
  const answers = [
    okResponse('{"k":"v"}', 'X-Mixed-Case: Yes\r\nset-cookie: a=1\r\nSet-Cookie: b=2\r\n'),
    'HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n' +
      `${hex(EVENT_A)};seq=1\r\n${EVENT_A}\r\n` +
      `${hex(EVENT_B)} ; seq=2 ; last\r\n${EVENT_B}\r\n` +
      '0\r\nX-Checksum: 42\r\n\r\n',
    'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end',
  ];
  const server = await startRawServer((s, req) => {
    const a = answers[server.requests.length - 1]!;
    if (req.index >= 0) s.write(a);
    if (a.includes('until the end')) s.end();
  });
  const pool = new FastPool(server.origin, OPTS);
  t.teardown(async () => {
    await pool.destroy();
    await server.close();
  });
  const cl = await send(pool);
  t.equal(cl.body.toString(), '{"k":"v"}');
  t.same(cl.rawHeaders, ['content-type', 'application/json', 'content-length', '9', 'X-Mixed-Case', 'Yes', 'set-cookie', 'a=1', 'Set-Cookie', 'b=2'], 'case and repeats kept');
  t.same(cl.trailers, null);
  const ch = await send(pool);
  t.equal(ch.body.toString(), 'data: {"text":"a"}\n\ndata: {"text":"b"}\n\n');
  t.ok(ch.chunks >= 2, 'each chunk handed on as it was read');
  t.same(ch.trailers, ['X-Checksum', '42']);
  t.equal(server.connections, 1, 'content-length and chunked responses keep the connection');
  const cd = await send(pool);
  t.equal(cd.body.toString(), 'until the end');
  t.same(cd.calls.at(-1), 'onComplete', 'a close-delimited body completes at the end of the connection');
  await until(() => pool.connections === 0, 2000, 'close-delimited connection dropped');
});

t.test('a response written one byte per TCP write', async (t) => {
  const sse = ['data: {"text":"x"}\n\n', 'data: {"text":"xy"}\n\n', 'data: [DONE]\n\n'];
  const chunked = 'HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n' + sse.map((e) => `${Buffer.byteLength(e).toString(16)};e=1\r\n${e}\r\n`).join('') + '0\r\nX-T: done\r\n\r\n';
  const server = await startRawServer((s, req) => {
    void trickle(s, req.index === 0 ? okResponse('{"text":"one byte at a time"}', 'X-Case: Kept\r\n') : chunked);
  });
  const pool = new FastPool(server.origin, OPTS);
  t.teardown(async () => {
    await pool.destroy();
    await server.close();
  });
  const a = await send(pool);
  t.equal(a.status, 200);
  t.equal(a.body.toString(), '{"text":"one byte at a time"}');
  t.same(a.rawHeaders.slice(-2), ['X-Case', 'Kept']);
  const b = await send(pool);
  t.equal(b.body.toString(), sse.join(''));
  t.same(b.trailers, ['X-T', 'done']);
  t.ok(b.chunks > 10, `body handed on in ${b.chunks} pieces as bytes arrived`);
  t.equal(server.connections, 1, 'and the connection is reused after');
});

t.test('1xx answers are ignored; HEAD, 204 and 304 have no body and keep the connection', async (t) => {
  const server = await startRawServer((s, req) => {
    if (req.method === 'HEAD') s.write('HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n');
    else if (req.path === '/continue') s.write('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n' + okResponse('final'));
    else if (req.path === '/204') s.write('HTTP/1.1 204 No Content\r\n\r\n');
    else s.write('HTTP/1.1 304 Not Modified\r\ncontent-length: 50\r\n\r\n');
  });
  const pool = new FastPool(server.origin, OPTS);
  t.teardown(async () => {
    await pool.destroy();
    await server.close();
  });
  const c = await send(pool, { path: '/continue' });
  t.equal(c.status, 200);
  t.equal(c.body.toString(), 'final');
  t.equal(c.calls.filter((x) => x === 'onHeaders').length, 1, 'only the final head reaches the handler');
  const h = await send(pool, { method: 'HEAD', path: '/head', body: null });
  t.equal(h.status, 200);
  t.equal(h.body.length, 0);
  t.same(h.calls, ['onConnect', 'onHeaders', 'onComplete']);
  const n = await send(pool, { path: '/204' });
  t.equal(n.status, 204);
  t.same(n.calls, ['onConnect', 'onHeaders', 'onComplete']);
  const m = await send(pool, { method: 'GET', path: '/304', body: null });
  t.equal(m.status, 304);
  t.equal(m.body.length, 0);
  t.equal(server.connections, 1, 'one connection for all four');
});

t.test('bytes after the end of a response are an error; the connection is not reused', async (t) => {
  const server = await startRawServer((s, req) => {
    if (req.path === '/extra') s.write(okResponse('ok') + 'HTTP/1.1 200 OK\r\n');
    else if (req.path === '/later') {
      s.write(okResponse('fine'));
      setTimeout(() => s.write('unsolicited'), 50);
    } else s.write(okResponse('ok'));
  });
  const pool = new FastPool(server.origin, OPTS);
  t.teardown(async () => {
    await pool.destroy();
    await server.close();
  });
  const x = await send(pool, { path: '/extra' });
  t.equal(x.error?.name, 'HTTPParserError', 'pipelined bytes in the same read fail the request');
  t.match(x.error?.message ?? '', /after the end of the response/);
  await until(() => pool.connections === 0, 2000, 'connection dropped');
  const later = await send(pool, { path: '/later' });
  t.equal(later.body.toString(), 'fine');
  await until(() => server.closed >= 2, 2000, 'an idle connection that receives bytes is closed');
  t.equal(pool.connections, 0);
  const next = await send(pool);
  t.equal(next.status, 200, 'a new connection serves the next request');
});

t.test('an oversized response head fails with HeadersOverflowError (bounded buffering)', async (t) => {
  const server = await startRawServer((s) => {
    s.write(`HTTP/1.1 200 OK\r\n`);
    // A head that never ends: the client must give up at its bound, not buffer forever.
    const line = `X-Filler: ${'f'.repeat(1000)}\r\n`;
    let n = 0;
    const timer = setInterval(() => {
      if (s.destroyed || n++ > 200) return clearInterval(timer);
      s.write(line);
    }, 1);
  });
  const pool = new FastPool(server.origin, { ...OPTS, maxHeaderSize: 8 * 1024 });
  t.teardown(async () => {
    await pool.destroy();
    await server.close();
  });
  const x = await send(pool);
  t.equal(x.error?.code, 'UND_ERR_HEADERS_OVERFLOW');
  await until(() => server.closed === 1, 2000, 'the connection closed');
});

t.test('malformed responses fail the request with HTTPParserError and close the connection', async (t) => {
  const bad = ['HTTP/1.1 200 OK\r\nX-A: one\r\n folded\r\ncontent-length: 0\r\n\r\n', 'HTTP/1.1 200 OK\r\nX-A : one\r\ncontent-length: 0\r\n\r\n', 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nnothex\r\n'];
  const server = await startRawServer((s) => s.write(bad[server.requests.length - 1]!));
  const pool = new FastPool(server.origin, OPTS);
  t.teardown(async () => {
    await pool.destroy();
    await server.close();
  });
  for (let i = 0; i < bad.length; i++) {
    const x = await send(pool);
    t.equal(x.error?.name, "HTTPParserError", x.error?.message ?? "no error");
  }
  await until(() => server.closed === bad.length, 2000, 'every connection closed');
});
