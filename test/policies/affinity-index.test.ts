/** Prefix chains and the remote prefix index: what replicas exchange, and the bounded index that holds it. */
import t from 'tap';
import { commonBlocks, PrefixChainHasher, isValidBlockChars } from '../../src/policies/prefix-chain.js';
import { packWorker, RemotePrefixIndex } from '../../src/policies/remote-prefix-index.js';
import { shardKeyOf, shardOf } from '../../src/policies/sharded-host.js';
import { Rng } from '../../src/util/rng.js';

function chainOf(h: PrefixChainHasher, text: string, model?: string): bigint[] {
  const n = h.hash(text, model);
  const out: bigint[] = [];
  for (let k = 0; k < n; k++) out.push((BigInt((h.chain[2 * k] as number) >>> 0) << 32n) | BigInt((h.chain[2 * k + 1] as number) >>> 0));
  return out;
}

function randomText(rng: Rng, n: number): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz ABCDEFGHIJ0123456789.,';
  let s = '';
  for (let i = 0; i < n; i++) s += alphabet[rng.int(0, alphabet.length - 1)];
  return s;
}

t.test('a chain names prefixes: equal up to the first differing block, different from there on', async (t) => {
  const h = new PrefixChainHasher(64);
  const rng = new Rng(7);
  const shared = randomText(rng, 64 * 5);
  const a = chainOf(h, shared + randomText(rng, 64 * 3));
  const b = chainOf(h, shared + randomText(rng, 64 * 3 + 10));
  t.equal(a.length, 8);
  t.equal(b.length, 8, 'only full blocks count (10 trailing characters ignored)');
  t.same(a.slice(0, 5), b.slice(0, 5), 'the shared five blocks hash alike');
  for (let k = 5; k < 8; k++) t.not(a[k], b[k], `block ${k} differs`);
  t.same(chainOf(h, shared), a.slice(0, 5), 'the prefix alone has the same chain');
  t.equal(h.hash('x'.repeat(63), undefined), 0, 'shorter than a block: no chain');
  t.not(chainOf(h, shared, 'model-a')[0], chainOf(h, shared, 'model-b')[0], 'the model seeds the chain');
  t.same(chainOf(h, shared, ''), chainOf(h, shared, undefined), 'no model = the default model');
});

t.test('every single-character change of a block changes its hash and every later one', async (t) => {
  const h = new PrefixChainHasher(32);
  const rng = new Rng(3);
  const base = randomText(rng, 32 * 3);
  const ref = chainOf(h, base);
  const seen = new Set<bigint>(ref);
  let changes = 0;
  for (let pos = 0; pos < base.length; pos++) {
    for (const c of ['a', 'Z', '\u00e9', '\u4e2d', '\ud83d', '\u0000']) {
      if (base[pos] === c) continue;
      const mutated = chainOf(h, base.slice(0, pos) + c + base.slice(pos + 1));
      const block = Math.floor(pos / 32);
      for (let k = 0; k < block; k++) if (mutated[k] !== ref[k]) t.fail(`block ${k} changed by a change in block ${block}`);
      for (let k = block; k < 3; k++) {
        if (mutated[k] === ref[k]) t.fail(`position ${pos} -> ${c.charCodeAt(0)}: block ${k} unchanged`);
        seen.add(mutated[k] as bigint);
      }
      changes++;
    }
  }
  t.ok(changes > 500);
  // a collision between any two of these would show as fewer distinct values than hashes made
  t.ok(seen.size > changes, `${seen.size} distinct hashes over ${changes} mutations, no collision`);
});

t.test('a 200 KB prompt: every block hashed, in a reused buffer', async (t) => {
  const h = new PrefixChainHasher(128);
  const text = randomText(new Rng(1), 200_000);
  t.equal(h.hash(text, undefined), Math.floor(200_000 / 128));
  const first = chainOf(h, text);
  t.same(chainOf(h, text.slice(0, 128 * 100)), first.slice(0, 100), 'the chain of a prefix is the prefix of the chain');
  t.equal(new Set(first).size, first.length, 'no two blocks of one text share a hash');
});

t.test('prefix reuse: texts sharing a start get the chain a fresh hasher computes', async (t) => {
  const rng = new Rng(21);
  const reusing = new PrefixChainHasher(32, 4);
  const fresh = new PrefixChainHasher(32, 0);
  const bases = Array.from({ length: 6 }, () => randomText(rng, 32 * 40));
  let checked = 0;
  for (let i = 0; i < 400; i++) {
    const base = bases[rng.int(0, bases.length - 1)]!;
    // keep a random prefix (cut anywhere, not only on block boundaries), then a random tail
    const text = base.slice(0, rng.int(0, base.length)) + randomText(rng, rng.int(0, 32 * 10));
    const model = rng.int(0, 3) === 0 ? 'other-model' : undefined;
    const a = chainOf(reusing, text, model);
    const b = chainOf(fresh, text, model);
    if (a.length !== b.length || a.some((x, k) => x !== b[k])) {
      t.fail(`text ${i} (${text.length} chars): reused chain differs`);
      break;
    }
    checked += a.length;
  }
  t.ok(reusing.reusedBlocks > checked / 8, `${reusing.reusedBlocks} of ${checked} block hashes reused`);
  t.equal(fresh.reusedBlocks, 0);
});

t.test('commonBlocks: leading blocks two texts share', async (t) => {
  const a = 'a'.repeat(16 * 10);
  t.equal(commonBlocks(a, a, 16, 10), 10, 'the same string');
  for (const at of [0, 1, 15, 16, 17, 80, 159]) {
    const b = a.slice(0, at) + 'b' + a.slice(at + 1);
    t.equal(commonBlocks(a, b, 16, 10), Math.floor(at / 16), `difference at ${at}`);
  }
  t.equal(commonBlocks(a, a.slice(0, 50), 16, 3), 3, 'bounded by max');
});

t.test('block sizes: multiples of 8 in [16, 65536]', async (t) => {
  t.ok(isValidBlockChars(128));
  t.ok(isValidBlockChars(16));
  t.notOk(isValidBlockChars(100));
  t.notOk(isValidBlockChars(8));
  t.notOk(isValidBlockChars(1.5));
  t.throws(() => new PrefixChainHasher(12), RangeError);
});

t.test('shard keys: the same key a sharded host routes by', async (t) => {
  const text = 'You are a careful assistant. '.repeat(4);
  for (const n of [2, 3, 8]) t.equal(shardOf(text, n), shardKeyOf(text) % n);
  t.ok(shardKeyOf(text) >= 0);
});

function chainArray(pairs: readonly [number, number][]): Int32Array {
  const a = new Int32Array(pairs.length * 2);
  pairs.forEach(([hi, lo], i) => {
    a[2 * i] = hi;
    a[2 * i + 1] = lo;
  });
  return a;
}

t.test('remote index: match walks consecutive blocks and reports each worker its depth', async (t) => {
  const idx = new RemotePrefixIndex({ maxEntries: 100, ttlMs: 60_000 });
  idx.setMembers([
    { slot: 0, generation: 1 },
    { slot: 3, generation: 2 },
  ]);
  const w0 = packWorker(0, 1);
  const w3 = packWorker(3, 2);
  const chain = chainArray([
    [1, 10],
    [2, 20],
    [3, 30],
    [4, 40],
  ]);
  const now = 1_000_000;
  // worker 0 holds blocks 0-2 (a shared system prompt); worker 3 holds blocks 0-1 and then its own
  for (let k = 0; k < 3; k++) idx.add(chain[2 * k]!, chain[2 * k + 1]!, w0, now);
  idx.add(1, 10, w3, now);
  idx.add(2, 20, w3, now);
  const depth = new Int32Array(4);
  t.equal(idx.match(chain, 4, depth, now), 3, 'three consecutive blocks known');
  t.same([...depth], [3, 0, 0, 2]);
  // a gap stops the walk
  depth.fill(0);
  const gap = chainArray([
    [1, 10],
    [9, 9],
    [3, 30],
  ]);
  t.equal(idx.match(gap, 3, depth, now), 1);
  t.same([...depth], [1, 0, 0, 1]);
  // a departed worker, or its slot reused by another generation, no longer matches
  idx.setMembers([{ slot: 3, generation: 3 }]);
  depth.fill(0);
  t.equal(idx.match(chain, 4, depth, now), 0, 'entries naming only stale workers end the walk');
  t.same([...depth], [0, 0, 0, 0]);
});

t.test('remote index: entries expire after the TTL unless used', async (t) => {
  const idx = new RemotePrefixIndex({ maxEntries: 100, ttlMs: 10_000 });
  idx.setMembers([{ slot: 1, generation: 0 }]);
  const w = packWorker(1, 0);
  const chain = chainArray([
    [5, 6],
    [7, 8],
  ]);
  idx.add(5, 6, w, 0);
  idx.add(7, 8, w, 0);
  const depth = new Int32Array(2);
  t.equal(idx.match(chain, 2, depth, 8_000), 2, 'fresh at 8 s');
  t.equal(idx.match(chain, 2, depth, 17_000), 2, 'used at 8 s, so still live at 17 s');
  t.equal(idx.match(chain, 2, depth, 40_000), 0, 'idle for 23 s: expired');
  t.notOk(idx.has(5, 6, 40_000));
  idx.add(5, 6, w, 40_000);
  t.ok(idx.has(5, 6, 40_000), 're-adding revives it');
  t.equal(idx.stats().expired, 1);
});

t.test('remote index: bounded, and CLOCK keeps what lookups use', async (t) => {
  const idx = new RemotePrefixIndex({ maxEntries: 1000, ttlMs: 1e9, initialSlots: 16 });
  idx.setMembers([{ slot: 0, generation: 0 }]);
  const w = packWorker(0, 0);
  for (let i = 0; i < 1000; i++) idx.add(i, i * 7 + 1, w, 0);
  t.equal(idx.size, 1000);
  t.equal(idx.stats().slots, 2048, 'grown to twice the bound, no further');
  // the first 100 entries are used by lookups
  const hot = chainArray(Array.from({ length: 100 }, (_, i) => [i, i * 7 + 1] as [number, number]));
  t.equal(idx.match(hot, 100, new Int32Array(1), 0), 100);
  for (let i = 1000; i < 1500; i++) idx.add(i, i * 7 + 1, w, 0);
  t.equal(idx.size, 1000, 'the bound holds');
  t.equal(idx.stats().evicted, 500);
  let hotLeft = 0;
  for (let i = 0; i < 100; i++) if (idx.has(i, i * 7 + 1, 0)) hotLeft++;
  t.equal(hotLeft, 100, 'every entry used since it was added survived the evictions');
  t.equal(idx.stats().slots, 2048);
  t.ok(idx.stats().bytes <= 2048 * 21 + 1024, 'memory is the table: ~21 bytes per slot');
});

t.test('remote index: consistent under heavy churn (backward-shift deletion keeps every entry findable)', async (t) => {
  const rng = new Rng(11);
  const idx = new RemotePrefixIndex({ maxEntries: 64, ttlMs: 1e9, initialSlots: 16, tagged: true });
  idx.setMembers([
    { slot: 0, generation: 0 },
    { slot: 1, generation: 0 },
  ]);
  const ws = [packWorker(0, 0), packWorker(1, 0)];
  for (let i = 0; i < 20_000; i++) {
    // few distinct hi values so that probe sequences collide a lot
    const hi = rng.int(0, 40);
    const lo = rng.int(0, 400);
    idx.add(hi, lo, ws[i % 2]!, 0, hi + lo);
    if (!idx.has(hi, lo, 0)) {
      t.fail(`entry ${hi}/${lo} missing right after its add (op ${i})`);
      break;
    }
    if (idx.size > 64) {
      t.fail(`size ${idx.size} over the bound`);
      break;
    }
    if (i % 1000 === 0) {
      let live = 0;
      let bad = 0;
      idx.forEachLive(0, (h, l, _w, tag) => {
        live++;
        if (!idx.has(h, l, 0) || tag !== h + l) bad++;
      });
      if (bad > 0 || live !== idx.size) t.fail(`scan at op ${i}: ${live} live, ${bad} unreachable or mistagged, size ${idx.size}`);
    }
  }
  t.equal(idx.size, 64);
});
