import t from 'tap';
import { CodeColumn, SparseStrings, StringTable } from '../../src/tracking/code-columns.js';

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
