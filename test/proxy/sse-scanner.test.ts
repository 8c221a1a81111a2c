import t from 'tap';
import { SseScanner, readTokenCounts } from '../../src/proxy/sse-scanner.js';

const sglangChunk = (text: string, done: boolean) =>
  `data: ${JSON.stringify({ text, meta_info: { id: 'r1', prompt_tokens: 7, completion_tokens: text.length / 4, cached_tokens: 4, finish_reason: done ? { type: 'length', length: 3 } : null, queue_time: 0.01 } })}\n\n`;

t.test('sglang stream: TTFT, gaps, last meta_info', async (t) => {
  const s = new SseScanner();
  s.push(Buffer.from(sglangChunk(' the', false)), 10);
  s.push(Buffer.from(sglangChunk(' the and', false)), 15);
  s.push(Buffer.from(sglangChunk(' the and for', true) + 'data: [DONE]\n\n'), 23);
  t.equal(s.events, 3);
  t.equal(s.contentEvents, 3);
  t.equal(s.firstContentAt, 10);
  t.equal(s.lastContentAt, 23);
  t.same(s.gaps, [5, 8]);
  t.ok(s.sawDone);
  const counts = readTokenCounts(s.lastEvent());
  t.same(counts, { promptTokens: 7, completionTokens: 3, cachedTokens: 4, queueTime: 0.01, finishReason: 'length' });
});

t.test('events split at every byte boundary give the same result', async (t) => {
  const stream = sglangChunk(' a b', false) + ': keep-alive\n\n' + sglangChunk(' a b c d', true) + 'data: [DONE]\n\n';
  const bytes = Buffer.from(stream);
  for (let cut = 1; cut < bytes.length; cut++) {
    const s = new SseScanner();
    s.push(bytes.subarray(0, cut), 1);
    s.push(bytes.subarray(cut), 2);
    if (s.events !== 2 || !s.sawDone || readTokenCounts(s.lastEvent())?.completionTokens !== 2) {
      t.fail(`cut at ${cut}: events=${s.events} done=${s.sawDone}`);
      return;
    }
  }
  // one byte at a time, CRLF line endings
  const crlf = Buffer.from(stream.replace(/\n/g, '\r\n'));
  const s = new SseScanner();
  for (let i = 0; i < crlf.length; i++) s.push(crlf.subarray(i, i + 1), i);
  t.equal(s.events, 2);
  t.ok(s.sawDone);
  t.equal(readTokenCounts(s.lastEvent())?.cachedTokens, 4);
});

t.test('openai chat: role-only delta is not the first token; usage chunk is not content', async (t) => {
  const ev = (o: unknown) => `data: ${JSON.stringify(o)}\n\n`;
  const s = new SseScanner();
  s.push(Buffer.from(ev({ object: 'chat.completion.chunk', choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] })), 1);
  s.push(Buffer.from(ev({ object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: 'Hi' }, finish_reason: null }] })), 4);
  s.push(Buffer.from(ev({ object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: ' there' }, finish_reason: 'stop' }] })), 6);
  s.push(Buffer.from(ev({ object: 'chat.completion.chunk', choices: [], usage: { prompt_tokens: 9, completion_tokens: 2, total_tokens: 11, prompt_tokens_details: { cached_tokens: 8 } } }) + 'data: [DONE]\n\n'), 7);
  t.equal(s.firstContentAt, 4, 'TTFT at the first non-empty delta');
  t.equal(s.contentEvents, 2);
  t.same(s.gaps, [2]);
  t.same(readTokenCounts(s.lastEvent()), { promptTokens: 9, completionTokens: 2, cachedTokens: 8, queueTime: undefined, finishReason: undefined });
});

t.test('error events and garbage', async (t) => {
  const s = new SseScanner();
  s.push(Buffer.from('data: {"error":{"message":"boom","code":500}}\n\n'), 1);
  t.same(s.error, { message: 'boom', code: 500 });
  t.equal(s.firstContentAt, 0);
  const g = new SseScanner();
  g.push(Buffer.from('data: not json\n\nevent: x\ndata: {"text":"ok"}\n\n'), 3);
  t.equal(g.firstContentAt, 3);
  t.equal(g.events, 2);
  t.equal(new SseScanner().lastEvent(), undefined);
  t.equal(readTokenCounts(null), undefined);
  t.equal(readTokenCounts({ foo: 1 }), undefined);
  t.equal(readTokenCounts([{ meta_info: { completion_tokens: 5 } }])?.completionTokens, 5, 'batch: last element');
});
