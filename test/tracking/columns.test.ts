/** The store's per-slot columns for text and scores: round trips, spills, growth, clearing. */
import t from 'tap';
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
