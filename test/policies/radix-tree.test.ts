import t from 'tap';
import v8 from 'node:v8';
import vm from 'node:vm';
import { chunkText, HotnessProbe, RadixTree, MAX_TENANT_ID, TEXT_CHUNK_CHARS, type RadixSnapshot } from '../../src/policies/radix-tree.js';
import { Rng } from '../../src/util/rng.js';

// ---- brute-force helpers over a snapshot (independent of the tree's own walks) ----

function lcp(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  let k = 0;
  while (k < n && a.charCodeAt(k) === b.charCodeAt(k)) k++;
  return k;
}

/** Root-to-node text of every node, and the tenants tagging it. */
function pathsOf(snap: RadixSnapshot): { path: string; tenants: number[]; seqs: number[] }[] {
  const out: { path: string; tenants: number[]; seqs: number[] }[] = [];
  for (let i = 0; i < snap.parents.length; i++) {
    const p = snap.parents[i] as number;
    const path = (p === -1 ? '' : (out[p] as { path: string }).path) + (snap.labels[i] as string);
    const tenants: number[] = [];
    const seqs: number[] = [];
    for (let e = snap.entryStart[i] as number; e < (snap.entryStart[i + 1] as number); e++) {
      tenants.push(snap.entryTenant[e] as number);
      seqs.push(snap.entrySeq[e] as number);
    }
    out.push({ path, tenants, seqs });
  }
  return out;
}

/** Canonical form: sorted "path -> tenant@seq" lines (independent of sibling order). */
function canonical(snap: RadixSnapshot): string[] {
  return pathsOf(snap)
    .map(({ path, tenants, seqs }) => `${path} -> ${tenants.map((x, j) => `${x}@${seqs[j] as number}`).sort().join(',')}`)
    .sort();
}

function recount(snap: RadixSnapshot): Map<number, number> {
  const chars = new Map<number, number>();
  for (let i = 0; i < snap.parents.length; i++) {
    for (let e = snap.entryStart[i] as number; e < (snap.entryStart[i + 1] as number); e++) {
      const tenant = snap.entryTenant[e] as number;
      chars.set(tenant, (chars.get(tenant) ?? 0) + (snap.labels[i] as string).length);
    }
  }
  return chars;
}

function randomText(rng: Rng, stems: readonly string[], maxLen: number): string {
  // shared stems make splits and multi-tenant nodes common; a small alphabet makes divergence mid-edge common
  let s = stems.length > 0 && rng.next() < 0.7 ? (stems[rng.int(0, stems.length - 1)] as string) : '';
  const extra = rng.int(0, maxLen);
  for (let i = 0; i < extra; i++) s += 'abcd'[rng.int(0, 3)] as string;
  return s;
}

// ---- basics ----

t.test('insert, split and match', async (t) => {
  const tree = new RadixTree();
  tree.insert('hello world', 0, 1);
  t.same(tree.prefixMatch('hello there'), { matchedChars: 6, tenant: 0 });
  t.same(tree.prefixMatch('hello world and more'), { matchedChars: 11, tenant: 0 });
  t.same(tree.prefixMatch('xyz'), { matchedChars: 0, tenant: -1 });
  t.same(tree.prefixMatch(''), { matchedChars: 0, tenant: -1 });
  t.equal(tree.size.nodes, 1);
  tree.insert('hello there', 0, 2);
  t.equal(tree.size.nodes, 3, '"hello " + "world" + "there"');
  t.equal(tree.size.totalChars, 16);
  t.equal(tree.tenantSize(0), 16);
  t.same(tree.prefixMatch('hello thermos'), { matchedChars: 10, tenant: 0 });
  // a text ending inside an edge splits it too
  tree.insert('hel', 1, 3);
  t.equal(tree.size.nodes, 4);
  t.equal(tree.tenantSize(1), 3);
  t.equal(tree.prefixMatchTenant('hello', 1), 3);
  t.equal(tree.prefixMatchTenant('hello', 0), 5);
  t.equal(tree.prefixMatchTenant('hello', 7), 0, 'unknown tenant');
  tree.insert('', 2, 4);
  t.equal(tree.tenantSize(2), 0, 'empty text is a no-op');
  tree.checkInvariants();
});

t.test('multi-tenant tags and per-tenant counts as SGLang counts them', async (t) => {
  const tree = new RadixTree();
  tree.insert('abc', 0, 1);
  tree.insert('abd', 1, 2);
  // nodes: "ab" {0,1}, "c" {0}, "d" {1}
  t.equal(tree.size.nodes, 3);
  t.equal(tree.size.totalChars, 4);
  t.equal(tree.size.entries, 4);
  t.equal(tree.tenantSize(0), 3);
  t.equal(tree.tenantSize(1), 3);
  t.same(tree.stats().tenants, [
    { tenant: 0, chars: 3, nodes: 2 },
    { tenant: 1, chars: 3, nodes: 2 },
  ]);
  const out = new Int32Array(4).fill(99);
  t.equal(tree.prefixMatchTenants('abcz', out), 3);
  t.same([...out], [3, 2, 0, 0]);
  const plain: number[] = [7, 7];
  t.equal(tree.prefixMatchTenants('abd', plain), 3);
  t.same(plain, [2, 3], 'tenants beyond out.length are skipped; the rest is overwritten');
  t.equal(tree.prefixMatchTenants('zzz', out), 0);
  t.same([...out], [0, 0, 0, 0]);
  tree.checkInvariants();
});

t.test('tie rule: the most recently used tenant at the deepest node', async (t) => {
  const tree = new RadixTree();
  tree.insert('shared prompt', 3, 1);
  tree.insert('shared prompt', 5, 2);
  t.equal(tree.prefixMatch('shared prompt!').tenant, 5);
  tree.insert('shared prompt', 3, 3);
  t.equal(tree.prefixMatch('shared prompt!').tenant, 3);
  // a shorter text re-sent by 5 refreshes only the upper part: 3 is still the most recent at full depth
  tree.insert('shared', 5, 4);
  t.equal(tree.prefixMatch('shared prompt').tenant, 3);
  t.equal(tree.prefixMatch('shared').tenant, 5);
  // a deeper match wins over recency
  tree.insert('shared prompt, longer', 9, 5);
  tree.insert('shared prompt', 3, 6);
  t.same(tree.prefixMatch('shared prompt, longer still'), { matchedChars: 21, tenant: 9 });
  // prefixMatch with a clock touches the chosen tenant's path (SGLang does)
  tree.insert('shared prompt', 5, 7);
  t.equal(tree.prefixMatch('shared prompt').tenant, 5);
  t.equal(tree.prefixMatchTenant('shared prompt', 3, 8), 13, 'touching 3');
  t.equal(tree.prefixMatch('shared prompt').tenant, 3);
  tree.checkInvariants();
});

// ---- eviction ----

t.test('eviction removes least-recently-used leaves first', async (t) => {
  const tree = new RadixTree();
  tree.insert('aaaa', 0, 1);
  tree.insert('bbbb', 0, 2);
  tree.insert('cccc', 0, 3);
  tree.insert('aaaa', 0, 4); // refresh
  tree.insert('bbbb', 1, 5); // another tenant's use does not refresh tenant 0's tag
  t.same(tree.evictTenantsBySize(8), { evictedChars: 4, evictedEntries: 1, removedNodes: 0 }, 'bbbb kept for tenant 1');
  t.equal(tree.prefixMatchTenant('bbbb', 0), 0);
  t.equal(tree.prefixMatchTenant('bbbb', 1), 4);
  t.equal(tree.prefixMatchTenant('aaaa', 0), 4);
  t.equal(tree.prefixMatchTenant('cccc', 0), 4);
  t.same(tree.evictTenantsBySize(4), { evictedChars: 4, evictedEntries: 1, removedNodes: 1 }, 'cccc; tenant 1 is within');
  t.equal(tree.prefixMatchTenant('aaaa', 0), 4);
  t.equal(tree.prefixMatchTenant('cccc', 0), 0);
  t.equal(tree.tenantSize(0), 4);
  t.equal(tree.tenantSize(1), 4);
  tree.checkInvariants();
});

t.test('a parent is never evicted before its children', async (t) => {
  const tree = new RadixTree();
  tree.insert('abcdef', 0, 1);
  tree.insert('abcxyz', 0, 2);
  tree.insert('abc', 0, 3); // refreshes the parent only: it is the newest tag, its children still go first
  t.equal(tree.evictTenantsBySize(5).evictedChars, 6, 'def, then xyz');
  t.equal(tree.prefixMatchTenant('abcdef', 0), 3);
  t.equal(tree.prefixMatchTenant('abcxyz', 0), 3);
  t.equal(tree.size.nodes, 1);
  t.equal(tree.evictTenantsBySize(0).removedNodes, 1);
  t.equal(tree.size.nodes, 0);
  t.equal(tree.size.totalChars, 0);
  tree.checkInvariants();
  t.throws(() => tree.evictTenantsBySize(-1), RangeError);
  t.throws(() => tree.evictTenantsBySize(Number.NaN), RangeError);
});

t.test('the insert-time bound holds after every insert', async (t) => {
  const rng = new Rng(7);
  const bound = 300;
  const tree = new RadixTree({ maxTenantChars: bound });
  const stems = ['system: be brief. ', 'system: be verbose and careful. ', 'tool call: '];
  for (let op = 0; op < 3000; op++) {
    const tenant = rng.int(0, 3);
    const text = randomText(rng, stems, 120);
    tree.insert(text, tenant, op);
    if (tree.tenantSize(tenant) > bound) t.fail(`tenant ${tenant} holds ${tree.tenantSize(tenant)} > ${bound}`);
    // LRU: the text just inserted is the last to go, so it survives whole when it fits
    if (text.length <= bound && tree.prefixMatchTenant(text, tenant) !== text.length) t.fail('most recent text was evicted');
  }
  for (let tenant = 0; tenant < 4; tenant++) t.ok(tree.tenantSize(tenant) <= bound);
  tree.checkInvariants();
  // a text longer than the bound cannot be kept whole; the bound still holds
  tree.insert('z'.repeat(bound * 2), 0, 4000);
  t.ok(tree.tenantSize(0) <= bound);
  tree.checkInvariants();
  const none = new RadixTree({ maxTenantChars: 0 });
  none.insert('anything', 1, 1);
  t.equal(none.size.nodes, 0, 'bound 0 keeps nothing');
  t.throws(() => new RadixTree({ maxTenantChars: -1 }), RangeError);
  t.throws(() => new RadixTree({ maxTenantChars: 1.5 }), RangeError);
});

t.test('removeTenant drops a worker and keeps the others', async (t) => {
  const tree = new RadixTree();
  tree.insert('common prefix A', 0, 1);
  tree.insert('common prefix B', 1, 2);
  tree.insert('only zero', 0, 3);
  tree.insert('common prefix A', 2, 4);
  const r = tree.removeTenant(0);
  t.equal(r.evictedChars, 9 + 14 + 1);
  t.equal(tree.tenantSize(0), 0);
  t.equal(tree.prefixMatchTenant('only zero', 0), 0);
  t.same(tree.prefixMatch('only zero'), { matchedChars: 0, tenant: -1 });
  t.equal(tree.prefixMatchTenant('common prefix B', 1), 15);
  t.same(tree.prefixMatch('common prefix A'), { matchedChars: 15, tenant: 2 });
  t.same(
    tree.stats().tenants.map((x) => x.tenant),
    [1, 2],
  );
  t.same(tree.removeTenant(0), { evictedChars: 0, evictedEntries: 0, removedNodes: 0 }, 'idempotent');
  t.same(tree.removeTenant(40), { evictedChars: 0, evictedEntries: 0, removedNodes: 0 }, 'unknown tenant');
  tree.removeTenant(1);
  tree.removeTenant(2);
  t.same(tree.size, { nodes: 0, totalChars: 0, entries: 0 });
  // the slot can be reused by a new worker
  tree.insert('fresh', 0, 5);
  t.same(tree.prefixMatch('fresh'), { matchedChars: 5, tenant: 0 });
  tree.checkInvariants();
});

// ---- property test ----

t.test('random operations agree with a brute-force model', async (t) => {
  const rng = new Rng(20240611);
  const tenants = 6;
  const tree = new RadixTree({ maxTenantChars: 1e9 });
  const stems = ['<|system|>You are helpful.', '<|system|>You are terse.', '<|user|>', 'abab'];
  // the model: what each tenant has inserted (no eviction in this phase)
  const model: Set<string>[] = Array.from({ length: tenants }, () => new Set<string>());
  const out = new Int32Array(tenants + 2);
  let checks = 0;
  for (let op = 0; op < 6000; op++) {
    const roll = rng.next();
    if (roll < 0.55) {
      const tenant = rng.int(0, tenants - 1);
      const text = randomText(rng, stems, 30);
      tree.insert(text, tenant, op);
      if (text.length > 0) (model[tenant] as Set<string>).add(text);
    } else if (roll < 0.985) {
      // queries: often a known text extended, sometimes fresh
      const base = rng.next() < 0.6 ? [...(model[rng.int(0, tenants - 1)] as Set<string>)] : [];
      const query = base.length > 0 ? (base[rng.int(0, base.length - 1)] as string) + randomText(rng, [], 5) : randomText(rng, stems, 30);
      const expected = model.map((set) => {
        let best = 0;
        for (const s of set) best = Math.max(best, lcp(s, query));
        return best;
      });
      const longest = Math.max(0, ...expected);
      const match = tree.prefixMatch(query);
      if (match.matchedChars !== longest) t.fail(`prefixMatch ${match.matchedChars} != ${longest} for ${JSON.stringify(query)}`);
      if (longest > 0 && expected[match.tenant] !== longest) t.fail('prefixMatch names a tenant without the longest match');
      if (longest === 0 && match.tenant !== -1) t.fail('no match must name no tenant');
      if (tree.prefixMatchTenants(query, out) !== longest) t.fail('prefixMatchTenants longest');
      for (let x = 0; x < tenants; x++) {
        if (out[x] !== expected[x]) t.fail(`prefixMatchTenants[${x}] ${out[x]} != ${expected[x]}`);
        if (tree.prefixMatchTenant(query, x) !== expected[x]) t.fail(`prefixMatchTenant(${x}) != ${expected[x]}`);
      }
      checks++;
    } else {
      const tenant = rng.int(0, tenants - 1);
      tree.removeTenant(tenant);
      (model[tenant] as Set<string>).clear();
    }
    if (op % 500 === 0) {
      tree.checkInvariants();
      const counted = recount(tree.snapshot());
      for (let x = 0; x < tenants; x++) if ((counted.get(x) ?? 0) !== tree.tenantSize(x)) t.fail(`tenant ${x} count`);
    }
  }
  tree.checkInvariants();
  t.ok(checks > 2000, `${checks} query checks`);
  t.ok(tree.size.nodes > 100, `a non-trivial tree (${tree.size.nodes} nodes)`);
});

t.test('random operations with eviction keep every invariant', async (t) => {
  const rng = new Rng(99);
  const tenants = 5;
  const bound = 400;
  const tree = new RadixTree({ maxTenantChars: bound });
  const stems = ['system prompt one. ', 'system prompt two! ', 'xyxyxy'];
  const inserted: Set<string>[] = Array.from({ length: tenants }, () => new Set<string>());
  for (let op = 0; op < 5000; op++) {
    const roll = rng.next();
    if (roll < 0.8) {
      const tenant = rng.int(0, tenants - 1);
      const text = randomText(rng, stems, 60);
      tree.insert(text, tenant, op);
      (inserted[tenant] as Set<string>).add(text);
      if (tree.tenantSize(tenant) > bound) t.fail('insert-time bound');
    } else if (roll < 0.95) {
      tree.prefixMatch(randomText(rng, stems, 60), op); // touches
    } else if (roll < 0.99) {
      tree.evictTenantsBySize(rng.int(0, bound));
    } else {
      const tenant = rng.int(0, tenants - 1);
      tree.removeTenant(tenant);
      (inserted[tenant] as Set<string>).clear();
    }
    if (op % 250 === 0 || op === 4999) {
      tree.checkInvariants();
      const snap = tree.snapshot();
      const counted = recount(snap);
      for (let x = 0; x < tenants; x++) if ((counted.get(x) ?? 0) !== tree.tenantSize(x)) t.fail(`tenant ${x} count`);
      const paths = pathsOf(snap);
      for (const { path, tenants: tagged } of paths) {
        if (tagged.length === 0) t.fail('a node without a tenant');
        // nothing invented: every tagged path is a prefix of something that tenant inserted
        for (const x of tagged) {
          if (![...(inserted[x] as Set<string>)].some((s) => s.startsWith(path))) t.fail(`tenant ${x} holds ${path}`);
        }
      }
      // matches agree with a brute force over what is still present
      for (let q = 0; q < 20; q++) {
        const query = randomText(rng, stems, 60);
        for (let x = 0; x < tenants; x++) {
          let best = 0;
          for (const { path, tenants: tagged } of paths) if (tagged.includes(x)) best = Math.max(best, lcp(path, query));
          if (tree.prefixMatchTenant(query, x) !== best) t.fail(`tenant ${x}: match of a present path`);
        }
      }
    }
  }
  t.pass('done');
});

// ---- scale and stack safety ----

t.test('a 200 KB prompt: insert, match, split, evict without recursion', async (t) => {
  const rng = new Rng(3);
  let big = '';
  const parts: string[] = [];
  for (let i = 0; i < 200_000; i++) parts.push(String.fromCharCode(97 + rng.int(0, 25)));
  big = parts.join('');
  const tree = new RadixTree();
  tree.insert(big, 0, 1);
  const variant = big.slice(0, 150_000) + 'Z' + big.slice(150_001);
  tree.insert(variant, 1, 2);
  t.same(tree.prefixMatch(big + 'tail'), { matchedChars: 200_000, tenant: 0 });
  t.same(tree.prefixMatch(variant), { matchedChars: 200_000, tenant: 1 });
  const out = new Int32Array(2);
  t.equal(tree.prefixMatchTenants(variant.slice(0, 180_000), out), 180_000);
  t.same([...out], [150_000, 180_000]);
  // a mismatch deep inside a long edge (exercises the chunked native compare)
  for (const at of [17, 4097, 100_003, 199_999]) {
    const probe = big.slice(0, at) + '#' + big.slice(at + 1);
    t.equal(tree.prefixMatchTenant(probe, 0), at, `mismatch at ${at}`);
  }
  t.equal(tree.prefixMatchTenant(big.slice(0, 123_457), 0), 123_457, 'text ending inside an edge');
  t.equal(tree.tenantSize(0), 200_000);
  tree.checkInvariants();
  const bounded = new RadixTree({ maxTenantChars: 100_000 });
  bounded.insert(big, 0, 1);
  t.ok(bounded.tenantSize(0) <= 100_000);
  tree.removeTenant(0);
  t.equal(tree.prefixMatchTenant(variant, 1), 200_000);
  tree.checkInvariants();
});

t.test('a 1M-deep chain of single-character nodes', async (t) => {
  const depth = 1_000_000;
  const labels: string[] = new Array<string>(depth);
  const parents = new Int32Array(depth);
  for (let i = 0; i < depth; i++) {
    labels[i] = i % 2 === 0 ? 'a' : 'b';
    parents[i] = i - 1;
  }
  const entryStart = new Int32Array(depth + 1);
  for (let i = 0; i <= depth; i++) entryStart[i] = i;
  const snapshot: RadixSnapshot = {
    version: 1,
    seq: 1,
    parents,
    labels,
    entryStart,
    entryTenant: new Int32Array(depth),
    entrySeq: new Float64Array(depth).fill(1),
    entryTime: new Float64Array(depth),
  };
  const tree = RadixTree.restore(snapshot, { maxTenantChars: 2 * depth });
  t.equal(tree.size.nodes, depth);
  const text = 'ab'.repeat(depth / 2);
  t.same(tree.prefixMatch(text + 'x', 5), { matchedChars: depth, tenant: 0 });
  t.equal(tree.prefixMatchTenant(text, 0, 6), depth);
  const out = [0, 0];
  t.equal(tree.prefixMatchTenants(text, out), depth);
  t.same(out, [depth, 0]);
  tree.insert(text.slice(0, depth - 1) + 'x', 1, 7); // walks the whole chain, splits nothing, adds a leaf
  t.equal(tree.prefixMatchTenant(text, 1), depth - 1);
  tree.checkInvariants();
  const again = tree.snapshot();
  t.equal(again.parents.length, depth + 1);
  t.equal(tree.removeTenant(1).evictedChars, depth, 'the whole chain, leaf first');
  t.equal(tree.prefixMatchTenant(text, 0), depth, 'tenant 0 keeps its path');
  // evict tenant 0 down to 10 characters: one O(1) step per leaf, from the bottom up
  const r = tree.evictTenantsBySize(10);
  t.equal(r.evictedChars, depth - 10);
  t.equal(tree.prefixMatchTenant(text, 0), 10);
  t.equal(tree.size.nodes, 10);
  tree.removeTenant(0);
  t.same(tree.size, { nodes: 0, totalChars: 0, entries: 0 });
});

// ---- snapshot / restore ----

t.test('snapshot and restore round-trip', async (t) => {
  const rng = new Rng(11);
  const tree = new RadixTree({ maxTenantChars: 500 });
  const stems = ['alpha beta ', 'alpha gamma ', 'delta '];
  for (let op = 0; op < 800; op++) tree.insert(randomText(rng, stems, 40), rng.int(0, 3), op);
  tree.prefixMatch('alpha beta ab', 900);
  const snap = tree.snapshot();
  const copy = RadixTree.restore(snap, { maxTenantChars: 500 });
  copy.checkInvariants();
  t.same(canonical(copy.snapshot()), canonical(snap));
  t.same(copy.stats(), tree.stats());
  for (let q = 0; q < 200; q++) {
    const query = randomText(rng, stems, 40);
    if (copy.prefixMatch(query).tenant !== tree.prefixMatch(query).tenant) t.fail(`restored tree answers ${query} differently`);
  }
  // the LRU order survives: both evict the same leaves
  tree.evictTenantsBySize(150);
  copy.evictTenantsBySize(150);
  t.same(canonical(copy.snapshot()), canonical(tree.snapshot()));
  // and both keep evolving alike (same recency counter)
  tree.insert('alpha beta new', 2, 1000);
  copy.insert('alpha beta new', 2, 1000);
  t.same(canonical(copy.snapshot()), canonical(tree.snapshot()));
  // restoring under a smaller bound evicts down to it
  const small = RadixTree.restore(snap, { maxTenantChars: 50 });
  for (const x of small.stats().tenants) t.ok(x.chars <= 50);
  small.checkInvariants();
});

t.test('restore rejects malformed snapshots', async (t) => {
  const base = (): RadixSnapshot => ({
    version: 1,
    seq: 3,
    parents: Int32Array.from([-1, 0]),
    labels: ['ab', 'c'],
    entryStart: Int32Array.from([0, 1, 2]),
    entryTenant: Int32Array.from([0, 0]),
    entrySeq: Float64Array.from([2, 1]),
    entryTime: Float64Array.from([0, 0]),
  });
  t.equal(RadixTree.restore(base()).prefixMatchTenant('abc', 0), 3, 'the base is valid');
  // a counter older than the entries is raised: later operations stay the most recent
  const behind = RadixTree.restore({ ...base(), seq: 0 });
  behind.insert('abx', 1, 9);
  t.equal(behind.prefixMatch('ab').tenant, 1);
  behind.checkInvariants();
  const cases: [string, Partial<RadixSnapshot>][] = [
    ['version', { version: 2 as 1 }],
    ['lengths', { labels: ['ab'] }],
    ['entry lengths', { entrySeq: Float64Array.from([1]) }],
    ['entry ranges', { entryStart: Int32Array.from([0, 1, 1]) }],
    ['parent order', { parents: Int32Array.from([-1, 1]) }],
    ['empty label', { labels: ['ab', ''] }],
    ['duplicate first char', { parents: Int32Array.from([-1, -1]), labels: ['ab', 'ac'] }],
    ['no tenant', { entryStart: Int32Array.from([0, 2, 2]), entryTenant: Int32Array.from([0, 1]) }],
    ['tenant range', { entryTenant: Int32Array.from([0, MAX_TENANT_ID + 1]) }],
    ['twice', { entryStart: Int32Array.from([0, 2, 2]), entryTenant: Int32Array.from([0, 0]) }],
    ['child tag without parent tag', { entryTenant: Int32Array.from([0, 1]) }],
    ['child newer than parent', { entrySeq: Float64Array.from([1, 2]) }],
    ['non-finite', { entryTime: Float64Array.from([0, Number.NaN]) }],
    ['seq', { seq: Number.NaN }],
  ];
  // equal recency on one node (only a snapshot can say so): the lowest tenant id answers
  const tie = RadixTree.restore({
    ...base(),
    labels: ['ab', 'c'],
    entryStart: Int32Array.from([0, 2, 4]),
    entryTenant: Int32Array.from([4, 2, 2, 4]),
    entrySeq: Float64Array.from([5, 5, 3, 3]),
    entryTime: Float64Array.from([0, 0, 0, 0]),
  });
  t.same(tie.prefixMatch('abc'), { matchedChars: 3, tenant: 2 });
  tie.insert('abc', 4, 1);
  t.same(tie.prefixMatch('abc'), { matchedChars: 3, tenant: 4 });
  tie.checkInvariants();
  for (const [name, patch] of cases) t.throws(() => RadixTree.restore({ ...base(), ...patch }), RangeError, name);
});

// ---- arguments ----

t.test('bad arguments throw', async (t) => {
  const tree = new RadixTree();
  for (const bad of [-1, 1.5, MAX_TENANT_ID + 1, Number.NaN]) {
    t.throws(() => tree.insert('x', bad, 0), RangeError);
    t.throws(() => tree.prefixMatchTenant('x', bad), RangeError);
    t.throws(() => tree.removeTenant(bad), RangeError);
  }
  t.throws(() => tree.insert(42 as unknown as string, 0, 0), TypeError);
  t.throws(() => tree.prefixMatch(null as unknown as string), TypeError);
  t.throws(() => tree.prefixMatchTenants(undefined as unknown as string, []), TypeError);
  tree.insert('ok', MAX_TENANT_ID, 0);
  t.equal(tree.tenantSize(MAX_TENANT_ID), 2);
  t.equal(tree.tenantSize(123), 0);
});

t.test('wide nodes switch to an indexed child lookup and back', async (t) => {
  const tree = new RadixTree();
  const key = (c: number): string => String.fromCharCode(0x4e00 + c);
  for (let c = 0; c < 300; c++) tree.insert(key(c) + 'tail', c % 3, c);
  t.equal(tree.size.nodes, 300);
  tree.checkInvariants();
  for (let c = 0; c < 300; c++) if (tree.prefixMatch(key(c) + 'tai').matchedChars !== 4) t.fail(`child ${c}`);
  // split a child of the indexed root: the index must point at the new upper node
  tree.insert(key(4) + 'taX', 2, 400);
  t.equal(tree.size.nodes, 302);
  t.equal(tree.prefixMatchTenant(key(4) + 'tail', 2), 3);
  t.equal(tree.prefixMatchTenant(key(4) + 'tail', 1), 5);
  tree.checkInvariants();
  tree.removeTenant(2);
  t.equal(tree.size.nodes, 201, "tenant 2's nodes go, the split pieces stay with tenant 1");
  tree.removeTenant(0);
  tree.checkInvariants();
  t.equal(tree.size.nodes, 101);
  tree.evictTenantsBySize(5 * 2);
  tree.checkInvariants();
  t.equal(tree.size.nodes, 2, 'down to the two most recent, the index dropped');
  t.equal(tree.prefixMatch(key(298) + 'tail').matchedChars, 5);
  t.equal(tree.prefixMatch(key(295) + 'tail').matchedChars, 5);
});

// ---- memory ----

t.test('evicted prompts are freed: labels do not pin the strings they were cut from', async (t) => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const tree = new RadixTree();
  const size = 8_000_000;
  const fill = (seed: number): void => {
    const rng = new Rng(seed);
    const parts: string[] = [];
    for (let i = 0; i < size / 1000; i++) parts.push(String.fromCharCode(97 + rng.int(0, 25)).repeat(1000));
    const big = parts.join('');
    tree.insert(big, 1, 1);
    // tenant 2 shares a short prefix and a short middle piece: the split keeps small pieces of `big` alive
    tree.insert(big.slice(0, 20) + '!', 2, 2);
    tree.insert(big.slice(0, 5000) + '?', 2, 3);
  };
  gc();
  const before = process.memoryUsage().heapUsed;
  fill(5);
  gc();
  const loaded = process.memoryUsage().heapUsed;
  t.ok(loaded - before > size * 0.8, 'the prompt is held while tenant 1 has it');
  tree.removeTenant(1);
  gc();
  const after = process.memoryUsage().heapUsed;
  t.equal(tree.tenantSize(2), 5000 + 2);
  t.ok(after - before < size / 4, `freed after removeTenant (${((after - before) / 1e6).toFixed(1)} MB still held)`);
  tree.checkInvariants();
});

t.test('checkInvariants detects corruption', async (t) => {
  interface Internals {
    tenantChars: number[];
    charCount: number;
    lruHead: ({ node: { memberCount: number } } | null)[];
    unlink(m: unknown, tenant: number): void;
    linkBefore(m: unknown, tenant: number, cursor: unknown): void;
  }
  const build = (): { tree: RadixTree; internals: Internals } => {
    const tree = new RadixTree();
    tree.insert('abc', 0, 1);
    tree.insert('abd', 0, 2);
    tree.checkInvariants();
    return { tree, internals: tree as unknown as Internals };
  };
  let { tree, internals } = build();
  (internals.tenantChars[0] as number)++;
  t.throws(() => tree.checkInvariants(), /tenant 0 chars/);
  ({ tree, internals } = build());
  internals.charCount++;
  t.throws(() => tree.checkInvariants(), /charCount/);
  ({ tree, internals } = build());
  const head = internals.lruHead[0];
  internals.unlink(head, 0);
  internals.linkBefore(head, 0, null); // a leaf behind its parent
  t.throws(() => tree.checkInvariants(), /parent before its child/);
  ({ tree, internals } = build());
  const leaf = (internals.lruHead[0] as NonNullable<Internals['lruHead'][number]>).node;
  leaf.memberCount = 0;
  t.throws(() => tree.checkInvariants(), /without a tenant/);
});

t.test('texts in pieces (insertChunks, prefixMatchTenantsChunks) agree with whole texts', async (t) => {
  const rng = new Rng(77);
  const tenants = 5;
  const whole = new RadixTree({ maxTenantChars: 1e9 });
  const pieces = new RadixTree({ maxTenantChars: 1e9 });
  const stems = ['<|system|>You are helpful.', '<|system|>You are terse.', 'abab'];
  const cut = (text: string): string[] => {
    // arbitrary piece sizes (1..9 characters), not only TEXT_CHUNK_CHARS: every boundary case of the walk
    const out: string[] = [];
    for (let i = 0; i < text.length; ) {
      const n = rng.int(1, 9);
      out.push(text.slice(i, i + n));
      i += n;
    }
    return out;
  };
  const a = new Int32Array(tenants);
  const b = new Int32Array(tenants);
  const known: string[] = [];
  for (let op = 0; op < 4000; op++) {
    if (rng.next() < 0.5) {
      const tenant = rng.int(0, tenants - 1);
      const text = randomText(rng, stems, 30);
      whole.insert(text, tenant, op);
      pieces.insertChunks(cut(text), tenant, op);
      known.push(text);
    } else {
      const query = known.length > 0 && rng.next() < 0.6 ? (known[rng.int(0, known.length - 1)] as string) + randomText(rng, [], 5) : randomText(rng, stems, 30);
      const la = whole.prefixMatchTenants(query, a);
      const lb = pieces.prefixMatchTenantsChunks(cut(query), b);
      if (la !== lb || a.some((x, i) => x !== b[i])) t.fail(`pieces ${lb} [${b.join(',')}] != whole ${la} [${a.join(',')}] for ${JSON.stringify(query)}`);
    }
    if (op % 500 === 0) pieces.checkInvariants();
  }
  pieces.checkInvariants();
  for (let x = 0; x < tenants; x++) t.equal(pieces.tenantSize(x), whole.tenantSize(x), `tenant ${x} holds as many characters`);

  // 200 KB prompts: chunkText's pieces; the new part is stored as a chain of TEXT_CHUNK_CHARS labels
  const big = new RadixTree();
  const body = randomText(new Rng(3), [], 0) + 'lorem ipsum dolor '.repeat(11_000);
  const p1 = `${body} first question`;
  const p2 = `${body} second question, longer`;
  big.insertChunks(chunkText(p1), 1, 1);
  t.ok(big.snapshot().labels.every((l) => l.length <= TEXT_CHUNK_CHARS), 'no label longer than a piece');
  t.equal(big.size.nodes, Math.ceil(p1.length / TEXT_CHUNK_CHARS));
  const out = new Int32Array(4);
  t.equal(big.prefixMatchTenantsChunks(chunkText(p2), out), body.length + 1, 'the shared body matches across every piece boundary');
  t.equal(out[1], body.length + 1);
  big.insertChunks(chunkText(p2), 2, 2);
  t.equal(big.prefixMatchTenantsChunks(chunkText(p2), out), p2.length);
  t.same([out[1], out[2]], [body.length + 1, p2.length]);
  t.equal(big.prefixMatchTenants(p2, out), p2.length, 'and the whole-text walk reads the same tree');
  big.checkInvariants();
  t.equal(big.removeTenant(1).evictedChars, p1.length, 'eviction frees the chain');
  big.checkInvariants();
});

t.test('hotness probe: the share of recent walks crossing the prefix, and its holders', async (t) => {
  const tree = new RadixTree();
  const probe = new HotnessProbe(16);
  const out = new Int32Array(4);
  const stem = 'the shared system prompt, long enough to count. ';
  tree.insert(`${stem}q0`, 0, 0);
  tree.insert(`${stem}q1`, 1, 0);
  for (let i = 0; i < 200; i++) {
    probe.minChars = 10;
    tree.prefixMatchTenants(`${stem}question ${i}`, out, probe);
  }
  t.ok(probe.share > 0.99 && probe.share <= 1, `every walk crossed the stem: share ${probe.share.toFixed(3)}`);
  t.equal(probe.holders, 2);
  for (let i = 0; i < 64; i++) tree.prefixMatchTenants(`another text ${i}`, out, probe);
  probe.minChars = 10;
  tree.prefixMatchTenants(`${stem}again`, out, probe);
  t.ok(probe.share < 0.11, `after 4 half-lives elsewhere (1/16 + this walk): ${probe.share.toFixed(3)}`);
  probe.minChars = stem.length + 5;
  tree.prefixMatchTenants(`${stem}again`, out, probe);
  t.same([probe.share, probe.holders], [0, 0], 'no node of the path reaches minChars');
  t.throws(() => new HotnessProbe(0), RangeError);
});
