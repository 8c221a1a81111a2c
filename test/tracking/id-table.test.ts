/** The trace store's id index: ids as bytes or strings, collisions, deletion by backward shift, growth. */
import t from 'tap';
import { IdTable, INLINE_BYTES, hashBytes, hashString } from '../../src/tracking/id-table.js';

const bytes = (s: string): Buffer => Buffer.from(s, 'latin1');

t.test('a string and its bytes hash alike; insert and find either way', async (t) => {
  for (const id of ['a', 'sy-1x2y-abc-1', 'x'.repeat(INLINE_BYTES), 'y'.repeat(INLINE_BYTES + 1), 'é-ü']) {
    t.equal(hashString(id), hashBytes(bytes(id), 0, id.length), `hash of ${id.slice(0, 12)}`);
  }
  const ids = new IdTable();
  ids.grow(8);
  const long = 'L'.repeat(128);
  ids.insert(0, 'alpha');
  ids.insertBytes(1, bytes('--beta--'), 2, 4); // "beta", from the middle of a buffer
  ids.insert(2, long);
  ids.insertBytes(3, bytes(`z${long}z`), 1, 128);
  ids.insert(4, 'é-1');
  t.equal(ids.count, 5);
  t.equal(ids.find('alpha'), 0);
  t.equal(ids.findBytes(bytes('alpha'), 0, 5), 0);
  t.equal(ids.find('beta'), 1);
  t.equal(ids.find(long), 2, 'a long id kept as a string is found as a string');
  t.equal(ids.findBytes(bytes(long), 0, 128), 2, '... and as bytes');
  t.equal(ids.find('L'.repeat(128)), 2);
  t.equal(ids.find('é-1'), 4, 'a non-ASCII id');
  t.equal(ids.find('alph'), -1);
  t.equal(ids.find('alphaa'), -1);
  t.equal(ids.find(''), -1);
  t.equal(ids.idOf(1), 'beta');
  t.equal(ids.idOf(3), long);
  t.equal(ids.idOf(4), 'é-1');
  t.throws(() => ids.insert(0, 'again'), /already holds/);
  t.throws(() => ids.insert(8, 'out'), /outside/);
  t.throws(() => ids.idOf(5), /holds no id/);
});

t.test('compare orders ids as strings compare, short, long and prefixes', async (t) => {
  const list = ['b', 'a', 'ab', 'abc', 'B', 'z'.repeat(60), 'z'.repeat(59), 'a0'];
  const ids = new IdTable();
  ids.grow(list.length);
  list.forEach((id, s) => ids.insert(s, id));
  for (let a = 0; a < list.length; a++) {
    for (let b = 0; b < list.length; b++) {
      const x = list[a] as string;
      const y = list[b] as string;
      t.equal(ids.compare(a, b), x < y ? -1 : x > y ? 1 : 0, `${x.slice(0, 5)} vs ${y.slice(0, 5)}`);
    }
  }
});

t.test('churn: random inserts and removes agree with a Map, across growth', async (t) => {
  // A deterministic generator: the same sequence every run.
  let seed = 12345;
  const rand = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  const ids = new IdTable();
  let capacity = 4;
  ids.grow(capacity);
  const model = new Map<string, number>();
  const free: number[] = [0, 1, 2, 3];
  let next = 0;
  let mismatches = 0;
  for (let step = 0; step < 40_000; step++) {
    if (free.length === 0 || (model.size > 0 && rand(3) === 0)) {
      // remove a random held id
      const keys = [...model.keys()];
      const id = keys[rand(keys.length)] as string;
      const s = model.get(id) as number;
      ids.remove(s);
      model.delete(id);
      free.push(s);
    } else {
      if (free.length === 1 && capacity < 4096) {
        ids.grow(capacity * 2);
        for (let s = capacity; s < capacity * 2; s++) free.push(s);
        capacity *= 2;
      }
      const s = free.pop() as number;
      // short ids, a few long ones; some share long prefixes (same-length near-collisions)
      const id = rand(50) === 0 ? `long-${'q'.repeat(INLINE_BYTES)}-${next++}` : `sy-abc-${next++}`;
      if (rand(2) === 0) ids.insert(s, id);
      else ids.insertBytes(s, bytes(id), 0, id.length);
      model.set(id, s);
    }
    if (step % 97 === 0) {
      for (const [id, s] of model) if (ids.find(id) !== s || ids.findBytes(bytes(id), 0, id.length) !== s) mismatches++;
      if (ids.count !== model.size) mismatches++;
    }
  }
  t.equal(mismatches, 0, 'every held id found at its slot, count right, at every check');
  t.equal(ids.find('sy-abc-999999'), -1);
  for (const [id, s] of model) t.equal(ids.idOf(s), id, 'ids read back') || t.fail(id);
});

t.test('removing the middle of a probe run keeps the rest findable (backward shift)', async (t) => {
  // Many ids into a small table: long probe runs, wrapping around the end of the table.
  const ids = new IdTable();
  ids.grow(1000);
  const list = Array.from({ length: 1000 }, (_, i) => `k${i}`);
  list.forEach((id, s) => ids.insert(s, id));
  for (let s = 0; s < 1000; s += 3) ids.remove(s);
  let wrong = 0;
  list.forEach((id, s) => {
    if (ids.find(id) !== (s % 3 === 0 ? -1 : s)) wrong++;
  });
  t.equal(wrong, 0);
  t.equal(ids.count, 666);
  ids.remove(0); // already removed: nothing happens
  t.equal(ids.count, 666);
});
