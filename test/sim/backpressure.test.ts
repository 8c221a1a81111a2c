/**
 * Slow clients: when a client stops reading, the server stops writing to it (uWS write returned
 * false) and coalesces; the engine does not wait for the client; the stream stays valid.
 */
import t from 'tap';
import http from 'node:http';
import { startSimFleet } from '../../src/sim/fleet.js';
import { parseSse, waitFor } from './helpers.js';

/** Starts a streaming request whose response the client stops reading after the first bytes. */
function pausedStream(url: string, body: unknown): { resume: () => void; result: Promise<string> } {
  let res!: http.IncomingMessage;
  let resolveResult!: (s: string) => void;
  const result = new Promise<string>((r) => (resolveResult = r));
  let data = '';
  let paused = false;
  const req = http.request(url, { method: 'POST', agent: false, headers: { 'content-type': 'application/json' } }, (r) => {
    res = r;
    r.setEncoding('utf8');
    r.on('data', (d: string) => {
      data += d;
      if (!paused) {
        paused = true;
        r.pause();
      }
    });
    r.on('end', () => resolveResult(data));
  });
  req.end(JSON.stringify(body));
  return { resume: () => res.resume(), result };
}

t.test('a paused /generate stream is coalesced and stays valid', async (t) => {
  const fleet = await startSimFleet({ port: 0, timeScale: 0.001 });
  t.teardown(() => fleet.close());
  const server = fleet.servers[0]!;
  const n = 4000;
  const s = pausedStream(`${fleet.urls[0]}/generate`, { text: 'slow reader', stream: true, sampling_params: { max_new_tokens: n, ignore_eos: true } });
  await waitFor(() => server.stats().blockedStreams === 1, 15000, 'the stream to be blocked by backpressure');
  await waitFor(() => server.stats().totals.finished === 1, 15000, 'the engine to finish without waiting for the client');
  s.resume();
  const { events, done } = parseSse(await s.result);
  t.ok(done, 'ends with [DONE]');
  t.ok(events.length < n, `${events.length} chunks for ${n} tokens: coalesced`);
  for (let i = 1; i < events.length; i++) {
    if (!events[i].text.startsWith(events[i - 1].text)) {
      t.fail(`chunk ${i} is not cumulative`);
      break;
    }
  }
  const last = events[events.length - 1];
  t.equal(last.meta_info.completion_tokens, n);
  t.equal(last.text.length, 4 * n);
  t.same(last.meta_info.finish_reason, { type: 'length', length: n });
  t.equal(server.stats().blockedStreams, 0);
});

t.test('a paused multi-prompt completions stream coalesces deltas per choice without losing text', async (t) => {
  const fleet = await startSimFleet({ port: 0, timeScale: 0.001 });
  t.teardown(() => fleet.close());
  const server = fleet.servers[0]!;
  // 16 choices per step: ~16 delta chunks per step fill the socket buffers in a few thousand steps.
  const prompts = 16;
  const n = 2500;
  const s = pausedStream(`${fleet.urls[0]}/v1/completions`, {
    prompt: Array.from({ length: prompts }, (_, i) => `slow reader ${i}`),
    stream: true,
    max_tokens: n,
    ignore_eos: true,
    stream_options: { include_usage: true },
  });
  await waitFor(() => server.stats().blockedStreams === 1, 20000, 'the stream to be blocked by backpressure');
  s.resume();
  const { events, done } = parseSse(await s.result);
  t.ok(done);
  t.ok(events.length < prompts * n, `${events.length} chunks for ${prompts * n} tokens: coalesced`);
  const texts = new Array<string>(prompts).fill('');
  for (const e of events) for (const c of e.choices) texts[c.index] += c.text;
  t.ok(
    texts.every((x) => x.length === 4 * n),
    'each choice’s deltas add up to its whole text',
  );
  t.equal(events.at(-1).usage.completion_tokens, prompts * n);
  t.equal(events.filter((e) => e.choices[0]?.finish_reason === 'length').length, prompts, 'one finish chunk per choice');
  t.equal(server.stats().blockedStreams, 0);
});
