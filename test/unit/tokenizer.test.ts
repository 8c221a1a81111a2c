import t from 'tap';
import { tokenize, countTokens, outputWord, CHARS_PER_TOKEN, OUTPUT_WORDS } from '../../src/util/tokenizer.js';
import { Rng } from '../../src/util/rng.js';

t.test('four characters per token, prefix-preserving', async (t) => {
  t.equal(countTokens(''), 0);
  t.equal(countTokens('abc'), 1);
  t.equal(countTokens('abcd'), 1);
  t.equal(countTokens('abcde'), 2);
  const a = tokenize('You are a helpful assistant. Question one?');
  const b = tokenize('You are a helpful assistant. Question two!');
  t.equal(a.length, countTokens('You are a helpful assistant. Question one?'));
  let shared = 0;
  while (shared < a.length && a[shared] === b[shared]) shared++;
  t.ok(shared >= Math.floor('You are a helpful assistant. Question '.length / CHARS_PER_TOKEN), 'shared prefix shares tokens');
  t.same(tokenize('hello world'), tokenize('hello world'), 'deterministic');
});

t.test('output words re-tokenize to one token each', async (t) => {
  for (const w of OUTPUT_WORDS) t.equal(w.length, CHARS_PER_TOKEN);
  let text = '';
  for (let k = 0; k < 50; k++) text += outputWord(7, k);
  t.equal(countTokens(text), 50);
  t.equal(outputWord(7, 3), outputWord(7, 3));
});

t.test('rng is seeded and distributions have the right means', async (t) => {
  const a = new Rng(42);
  const b = new Rng(42);
  t.equal(a.next(), b.next());
  const r = new Rng(1);
  let sum = 0;
  const n = 20000;
  for (let i = 0; i < n; i++) sum += r.exponential(2);
  t.ok(Math.abs(sum / n - 2) < 0.1, `exponential mean ${sum / n}`);
  sum = 0;
  for (let i = 0; i < n; i++) sum += r.gamma(0.5, 4);
  t.ok(Math.abs(sum / n - 2) < 0.15, `gamma mean ${sum / n}`);
  for (let i = 0; i < 100; i++) {
    const v = r.int(3, 5);
    t.ok(v >= 3 && v <= 5);
  }
});
