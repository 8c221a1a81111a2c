/** The store's per-slot columns for text, repeated strings and scores: round trips, spills, growth, clearing. */
import t from 'tap';
import { CodeColumn, SparseStrings, StringTable } from '../../src/tracking/code-columns.js';
import { InlineStrings } from '../../src/tracking/inline-strings.js';
import { INLINE_SCORES, ScoreColumns } from '../../src/tracking/score-columns.js';

t.test('inline strings: ASCII up to the stride as bytes, others spilled; null; overwrite; growth keeps', async (t) => {
  const c = new InlineStrings(8);
  c.grow(4);
  t.equal(c.get(0), null, 'a new slot holds null');
  c.set(0, 'round_rb');
  c.set(1, 'longer than eight');
  c.set(2, 'ünï');
  c.set(3, '');
  t.equal(c.get(0), 'round_rb');
  t.equal(c.get(1), 'longer than eight');
  t.equal(c.get(2), 'ünï');
  t.equal(c.get(3), '');
  t.equal(c.spilledCount, 2);
  c.set(1, 'short');
  t.equal(c.get(1), 'short', 'a spilled slot overwritten inline');
  t.equal(c.spilledCount, 1, 'its spilled string is dropped');
  c.grow(16);
  t.equal(c.get(0), 'round_rb', 'growth keeps the strings');
  t.equal(c.get(2), 'ünï');
  t.equal(c.get(10), null);
  c.set(2, null);
  t.equal(c.get(2), null);
  t.equal(c.spilledCount, 0);
});

t.test('score columns: objects round trip with keys in order; null; more keys than fit spill', async (t) => {
  const c = new ScoreColumns();
  c.grow(3);
  t.equal(c.get(0), null);
  c.set(0, { counter: 8812, available: 4, pick: 0 });
  c.set(1, { match_rate: 0.8125, nan: Number.NaN, neg: -1.5 });
  t.same(c.get(0), { counter: 8812, available: 4, pick: 0 });
  t.same(Object.keys(c.get(0)!), ['counter', 'available', 'pick'], 'keys keep their order');
  t.same(c.get(1), { match_rate: 0.8125, nan: Number.NaN, neg: -1.5 });
  const many = Object.fromEntries(Array.from({ length: INLINE_SCORES + 2 }, (_, i) => [`k${i}`, i]));
  c.set(2, many);
  t.same(c.get(2), many, 'more keys than the inline pairs: kept whole');
  t.equal(c.spilledCount, 1);
  const got = c.get(2)!;
  got['k0'] = 99;
  t.equal(c.get(2)!['k0'], 0, 'answers are copies');
  c.set(2, {});
  t.same(c.get(2), {}, 'empty scores are not null');
  t.equal(c.spilledCount, 0);
  c.grow(10);
  t.same(c.get(0), { counter: 8812, available: 4, pick: 0 }, 'growth keeps the scores');
  c.set(0, null);
  t.equal(c.get(0), null);
});

t.test('score columns: past the bound on distinct key names, new names spill, known ones stay inline', async (t) => {
  const c = new ScoreColumns();
  c.grow(1100);
  for (let i = 0; i < 1100; i++) c.set(i, { [`key${i}`]: i });
  let wrong = 0;
  for (let i = 0; i < 1100; i++) if (c.get(i)?.[`key${i}`] !== i) wrong++;
  t.equal(wrong, 0, 'every slot reads back');
  t.equal(c.spilledCount, 1100 - 1024, 'names beyond the first 1,024 are kept as objects');
  c.set(0, { key5: 1 });
  t.equal(c.spilledCount, 1100 - 1024, 'a known name stays inline');
});

t.test('code columns: repeated strings share one code; null and unset slots read null', async (t) => {
  const table = new StringTable();
  const urls = new CodeColumn(table);
  const routes = new CodeColumn(table);
  urls.grow(8);
  routes.grow(4);
  t.equal(urls.get(7), null, 'a new slot holds null');
  urls.set(0, 'http://w0:1');
  urls.set(1, 'http://w1:1');
  urls.set(2, 'http://w0:1');
  routes.set(0, 'generate');
  routes.set(1, 'http://w1:1'); // the same text in another column: the same code
  t.equal(table.size, 3, 'one table entry per distinct string, across columns');
  t.same([urls.get(0), urls.get(1), urls.get(2), routes.get(0), routes.get(1)], ['http://w0:1', 'http://w1:1', 'http://w0:1', 'generate', 'http://w1:1']);
  urls.set(1, null);
  t.equal(urls.get(1), null);
  urls.set(1, 'http://w0:1'); // the column's last-written cache must not leak across slots
  urls.set(2, 'http://w2:1');
  t.same([urls.get(0), urls.get(1), urls.get(2)], ['http://w0:1', 'http://w0:1', 'http://w2:1']);
  urls.grow(16);
  t.same([urls.get(0), urls.get(2), urls.get(15)], ['http://w0:1', 'http://w2:1', null], 'growing keeps values; new slots null');
});

t.test('code columns: past the table bound, values are kept per slot and still read back', async (t) => {
  const table = new StringTable();
  const col = new CodeColumn(table);
  col.grow(4);
  for (let i = 0; table.codeOf(`filler-${i}`) >= 0; i++);
  t.equal(table.codeOf('one more'), -1, 'the table is full');
  col.set(0, 'spilled-a');
  col.set(1, 'filler-7'); // already coded: still a code
  col.set(2, 'spilled-b');
  t.equal(col.spilledCount, 2);
  t.same([col.get(0), col.get(1), col.get(2)], ['spilled-a', 'filler-7', 'spilled-b']);
  col.set(0, 'filler-8');
  col.set(2, null);
  t.equal(col.spilledCount, 0, 'overwriting a spilled value frees it');
  t.same([col.get(0), col.get(2)], ['filler-8', null]);
});

t.test('sparse strings: only non-null values are held', async (t) => {
  const m = new SparseStrings();
  m.set(3, null);
  t.equal(m.size, 0);
  m.set(3, 'upstream timed out after 30000 ms');
  m.set(9, 'connection refused');
  t.equal(m.get(3), 'upstream timed out after 30000 ms');
  t.equal(m.get(4), null);
  m.set(3, null);
  t.same([m.get(3), m.get(9), m.size], [null, 'connection refused', 1]);
});
