import t from 'tap';
import { RadixCache } from '../../src/sim/radix-cache.js';

const ids = (...xs: number[]): Uint32Array => Uint32Array.from(xs);

t.test('insert and match share prefixes; edges split where sequences diverge', async (t) => {
  const c = new RadixCache();
  t.equal(c.insert(ids(1, 2, 3, 4)).added, 4);
  t.equal(c.insert(ids(1, 2, 5, 6, 7)).added, 3, 'only the new suffix is added');
  t.equal(c.totalSize, 7);
  t.equal(c.match(ids(1, 2, 3, 9)).length, 3);
  t.equal(c.match(ids(1, 2, 5, 6, 7, 8)).length, 5);
  t.equal(c.match(ids(9, 1, 2)).length, 0);
  t.equal(c.match(ids(1, 2, 5, 6), 2).length, 2, 'limit caps the match');
  t.equal(c.insert(ids(1, 2, 3, 4)).added, 0, 're-inserting adds nothing');
  t.equal(c.totalSize, 7, 'splits do not change the size');
  t.equal(c.evictableSize, 7);
});

t.test('locked paths are not evicted; eviction is LRU over unlocked leaves', async (t) => {
  const c = new RadixCache();
  const a = c.insert(ids(10, 11, 12, 13)).node; // oldest
  c.insert(ids(20, 21, 22, 23));
  c.insert(ids(30, 31, 32, 33));
  c.lock(a);
  t.equal(c.lockedSize, 4);
  t.equal(c.evictableSize, 8);
  c.match(ids(20, 21)); // touches b's path: c is now the least recently used
  t.equal(c.evict(1), 4, 'evicts a whole leaf');
  t.equal(c.match(ids(30, 31, 32, 33)).length, 0, 'the LRU unlocked leaf went first');
  t.equal(c.match(ids(20, 21, 22, 23)).length, 4);
  t.equal(c.evict(100), 4, 'only unlocked tokens can go');
  t.equal(c.match(ids(10, 11, 12, 13)).length, 4, 'the locked path survives');
  c.unlock(a);
  t.equal(c.evictableSize, 4);
  c.reset();
  t.equal(c.totalSize, 0);
  t.equal(c.nodeCount(), 0);
});

t.test('locking a node inside a split path protects exactly that prefix', async (t) => {
  const c = new RadixCache();
  c.insert(ids(1, 2, 3, 4, 5, 6));
  const m = c.match(ids(1, 2, 3, 7));
  t.equal(m.length, 3);
  c.lock(m.node);
  t.equal(c.lockedSize, 3);
  t.equal(c.evict(10), 3, 'the unlocked tail of the split edge is evictable');
  t.equal(c.totalSize, 3);
  t.throws(() => {
    c.unlock(m.node);
    c.unlock(m.node);
  }, /unlock of an unlocked node/);
});

t.test('evicting a leaf can make its parent an eviction candidate', async (t) => {
  const c = new RadixCache();
  c.insert(ids(1, 2));
  c.insert(ids(1, 2, 3, 4));
  c.insert(ids(1, 2, 5, 6));
  t.equal(c.totalSize, 6);
  t.equal(c.evict(6), 6, 'children first, then the parent');
  t.equal(c.totalSize, 0);
  t.equal(c.evictedTotal, 6);
});
