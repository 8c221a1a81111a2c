import t from 'tap';
import { extractObjectAfterKey, extractAccounting } from '../../src/proxy/json-tail.js';
import { readTokenCounts } from '../../src/proxy/sse-scanner.js';

t.test('finds the last meta_info object, skipping mentions inside strings', async (t) => {
  const body = Buffer.from(JSON.stringify({ text: 'he said "meta_info": {"x":1} } and {', output_ids: [1], meta_info: { id: 'r', completion_tokens: 5, cached_tokens: 2, prompt_tokens: 9, nested: { a: '}' } } }));
  const meta = extractObjectAfterKey(body, 'meta_info');
  t.same(meta, { id: 'r', completion_tokens: 5, cached_tokens: 2, prompt_tokens: 9, nested: { a: '}' } });
  t.equal(readTokenCounts(extractAccounting(body))?.completionTokens, 5);
});

t.test('openai usage; pretty-printed; absent; broken', async (t) => {
  const usage = Buffer.from(JSON.stringify({ id: 'x', choices: [{ text: 'usage' }], usage: { prompt_tokens: 3, completion_tokens: 4, prompt_tokens_details: { cached_tokens: 1 } } }, null, 2));
  t.same(readTokenCounts(extractAccounting(usage)), { promptTokens: 3, completionTokens: 4, cachedTokens: 1, queueTime: undefined, finishReason: undefined });
  t.equal(extractAccounting(Buffer.from('{"text":"x"}')), undefined);
  t.equal(extractAccounting(Buffer.from('{"meta_info": {"a": ')), undefined);
  t.equal(extractObjectAfterKey(Buffer.from('{"meta_info": [1]}'), 'meta_info'), undefined);
  t.equal(extractObjectAfterKey(Buffer.from('{"meta_info": {bad json}}'), 'meta_info'), undefined);
  t.same(extractObjectAfterKey(Buffer.from('{"meta_info":{"s":"a\\"}b"}}'), 'meta_info'), { s: 'a"}b' }, 'escaped quotes');
});
