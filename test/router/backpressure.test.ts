/**
 * A slow client must not make the router buffer the whole upstream stream: the relay pauses the upstream
 * when uWS buffers, so the backend itself feels the backpressure. Then every byte still arrives in order.
 */
import t from 'tap';
import http from 'node:http';
import { startFixtureBackend } from '../helpers/fixture-backend.js';
import { startTestRouter } from '../helpers/router.js';
import { waitFor } from '../helpers/client.js';

const EVENT = `data: ${JSON.stringify({ text: 'y'.repeat(1000), meta_info: { completion_tokens: 1 } })}\n\n`;
const EVENTS = 40_000; // ~41 MB

// What the backend managed to write while the client read nothing is the direct evidence: the kernel
// buffers of both hops and uWS's buffer hold a few MB; without backpressure the router would take it all.
t.test('slow client: upstream paused, memory bounded, bytes intact', async (t) => {
  const b = await startFixtureBackend();
  let written = 0;
  let finished = false;
  b.handler = (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    let i = 0;
    const pump = () => {
      while (i < EVENTS) {
        i++;
        written += EVENT.length;
        if (!res.write(EVENT)) {
          res.once('drain', pump);
          return;
        }
      }
      finished = true;
      res.end('data: [DONE]\n\n');
    };
    pump();
  };
  const r = await startTestRouter(['--worker-urls', b.url, '--policy', 'round_robin']);
  t.teardown(async () => {
    await r.close(0);
    await b.close();
  });
  let received = 0;
  let ok = true;
  let resRef: http.IncomingMessage | undefined;
  const done = new Promise<void>((resolve, reject) => {
    const req = http.request(`${r.url}/generate`, { method: 'POST', headers: { 'content-type': 'application/json' }, agent: false }, (res) => {
      resRef = res;
      res.pause(); // a client that does not read
      let tail = '';
      res.on('data', (c: Buffer) => {
        received += c.length;
        const s = tail + c.toString('latin1');
        // every complete event must be the same bytes
        const parts = s.split('\n\n');
        tail = parts.pop() ?? '';
        for (const p of parts) if (p !== EVENT.slice(0, -2) && p !== 'data: [DONE]') ok = false;
      });
      res.on('end', () => resolve());
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(JSON.stringify({ text: 'stream please', stream: true }));
  });
  await waitFor(() => resRef !== undefined, 5000, 'response headers');
  await new Promise((res) => setTimeout(res, 1500));
  const writtenWhilePaused = written;
  const total = EVENTS * EVENT.length;
  t.ok(!finished, 'backend could not finish while the client was not reading');
  t.ok(writtenWhilePaused < total / 2, `backend wrote ${(writtenWhilePaused / 1e6).toFixed(1)} MB of ${(total / 1e6).toFixed(1)} MB while the client paused`);
  resRef!.resume();
  await done;
  t.equal(received, total + 'data: [DONE]\n\n'.length, 'every byte arrived');
  t.ok(ok, 'events intact and in order');
  t.equal(r.ctx.table.inFlight(0), 0);
});
