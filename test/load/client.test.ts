/**
 * The load client holds response chunks unparsed until the scheduler asks for the outcome (parsing
 * happens in slack, not between sends), and switches a long stream to parsing on arrival so a cumulative
 * SSE stream is never held whole. Either way the outcome is the same: events timed by their chunks.
 */
import t from 'tap';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { LoadClient, sendAndParse, type Exchange } from '../../src/load/client.js';

async function server(events: number, eventBytes: number, gapMs: number): Promise<{ url: string; close: () => Promise<void> }> {
  const srv = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'x-sglang-worker': 'http://w:1' });
      let i = 0;
      const next = (): void => {
        i++;
        // cumulative SGLang text: each event repeats everything so far
        const text = 'x'.repeat(i * eventBytes);
        res.write(`data: ${JSON.stringify({ text, meta_info: { prompt_tokens: 3, completion_tokens: i } })}\n\n`);
        if (i === events) res.end('data: [DONE]\n\n');
        else setTimeout(next, gapMs);
      };
      setTimeout(next, gapMs);
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as AddressInfo).port;
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((r) => srv.close(() => r())) };
}

t.test('a short stream is held unparsed until asked, then parsed with its arrival stamps', async (t) => {
  const s = await server(5, 10, 5);
  t.teardown(() => s.close());
  const client = new LoadClient({ origin: s.url, connections: 1, timeoutMs: 10_000, headers: {} });
  t.teardown(() => client.close());
  const ex = await new Promise<Exchange>((resolve) => client.send('/generate', Buffer.from('{}'), 'r1', true, (e: Exchange) => resolve(e), undefined));
  const held = ex as unknown as { parts: Buffer[] };
  t.ok(held.parts.length >= 1, 'chunks kept, not parsed yet');
  const o = ex.outcome();
  t.equal(o.error, '');
  t.equal(o.streamed, true);
  t.equal(o.workerUrl, 'http://w:1');
  t.equal(o.counts.completionTokens, 5);
  t.equal(o.gaps.length, 4, '5 content events: 4 gaps');
  const stamps = (ex as unknown as { stamps: number[] }).stamps;
  t.ok(o.firstContentAt >= stamps[0]! && o.firstContentAt <= stamps[stamps.length - 1]!, 'TTFT is a chunk arrival stamp, not the parse time');
  t.ok(o.firstContentAt < o.completedAt);
  t.equal(held.parts.length, 0, 'chunks released once parsed');
  t.equal(ex.outcome(), o, 'parsed once');
});

t.test('a stream past 256 KB is parsed on arrival and gives the same figures', async (t) => {
  // 60 events of cumulative text growing by 200 bytes: ~370 KB in all
  const s = await server(60, 200, 1);
  t.teardown(() => s.close());
  const client = new LoadClient({ origin: s.url, connections: 1, timeoutMs: 10_000, headers: {} });
  t.teardown(() => client.close());
  const ex = await new Promise<Exchange>((resolve) => client.send('/generate', Buffer.from('{}'), 'r2', true, (e: Exchange) => resolve(e), undefined));
  const held = ex as unknown as { parts: Buffer[]; reader: unknown };
  t.ok(held.reader !== undefined, 'switched to parsing on arrival');
  t.equal(held.parts.length, 0, 'nothing held');
  const o = ex.outcome();
  t.equal(o.error, '');
  t.equal(o.counts.completionTokens, 60);
  t.equal(o.gaps.length, 59);
  t.equal(o.generatedChars, 60 * 200, 'cumulative text counted once');
  const again = await sendAndParse(client, '/generate', Buffer.from('{}'), 'r3', true);
  t.equal(again.gaps.length, 59);
});

t.test('a connection error is an outcome with the error, whenever it is asked for', async (t) => {
  const client = new LoadClient({ origin: 'http://127.0.0.1:1', connections: 1, timeoutMs: 2000, headers: {} });
  t.teardown(() => client.destroy());
  const o = await sendAndParse(client, '/generate', Buffer.from('{}'), 'r4', true);
  t.equal(o.status, 0);
  t.match(o.error, /ECONNREFUSED|connect/i);
});

t.test('chunks held without copying stay intact while other responses arrive', async (t) => {
  const srv = http.createServer((req, res) => {
    req.resume();
    const n = Number(String(req.headers['x-request-id']).slice(1));
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    let i = 0;
    const next = (): void => {
      i++;
      res.write(`data: ${JSON.stringify({ text: String.fromCharCode(97 + (n % 26)).repeat(i * (n + 1)), meta_info: { completion_tokens: i } })}\n\n`);
      if (i === 3) res.end('data: [DONE]\n\n');
      else setImmediate(next);
    };
    next();
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => srv.close(() => r())));
  const client = new LoadClient({ origin: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`, connections: 4, timeoutMs: 10_000, headers: {} });
  t.teardown(() => client.close());
  // Every exchange completes before any is parsed.
  const exchanges = await Promise.all(Array.from({ length: 40 }, (_, n) => new Promise<Exchange>((resolve) => client.send('/generate', Buffer.from('{}'), `r${n}`, true, (e: Exchange) => resolve(e), undefined))));
  exchanges.forEach((ex, n) => {
    const o = ex.outcome();
    t.equal(o.error, '', `r${n}`);
    t.equal(o.generatedChars, 3 * (n + 1), `r${n}: its own text, intact`);
    t.equal(o.counts.completionTokens, 3);
  });
});
