/** cache_aware: SGLang's decision rule in scripted sequences, the locality improvement, trees, eviction, snapshot. */
import t from 'tap';
import { WorkerTable } from '../../src/actors/worker-table.js';
import { cacheAwareOptions, createCacheAwarePolicy, mergeCacheAwareStates, type CacheAwareState } from '../../src/policies/cache-aware.js';
import { monotonicNow } from '../../src/policies/common.js';
import { createPolicyHost } from '../../src/policies/host.js';
import { SwitchyardError } from '../../src/errors.js';
import type { Decision, PolicyContext, RequestFeatures, WorkerInfo } from '../../src/policies/types.js';
import { Rng } from '../../src/util/rng.js';
import { addWorkers, decideAsync, TEST_ACTOR } from './conformance.js';

function ctxFor(table: WorkerTable, workers: readonly WorkerInfo[], seed = 1, now: () => number = monotonicNow): PolicyContext {
  return { table, workers, rng: new Rng(seed), now };
}

let n = 0;
function req(text: string, model?: string): RequestFeatures {
  return { requestId: `r${n++}`, route: 'generate', text, inputTokens: Math.ceil(text.length / 4), maxNewTokens: 16, stream: false, model };
}

/** Put `count` requests in flight on a worker (the router's own counter). */
function load(table: WorkerTable, w: WorkerInfo, count: number): void {
  for (let i = 0; i < count; i++) table.acquire(w, 1);
}

const SYSTEM = 'You are a careful assistant who answers questions about the shipping manifest. '.repeat(4);

t.test('shared prefixes stick to one worker while loads are balanced', async (t) => {
  const table = WorkerTable.create(8);
  const ws = addWorkers(table, 4);
  const p = createCacheAwarePolicy();
  p.onWorkersChanged?.(ws);
  const ctx = ctxFor(table, ws);
  const first = p.select(req(`${SYSTEM} question 0`), ctx) as Decision;
  t.match(first.reason, /^cache_miss: match 0\.00 <= 0\.30; least loaded /, 'an empty tree: least loaded');
  const chosen = new Set<number>();
  for (let i = 1; i < 40; i++) {
    const d = p.select(req(`${SYSTEM} question ${i}`), ctx) as Decision;
    chosen.add(d.slot);
    t.equal(d.scores?.['cache_hit'], 1);
    t.match(d.reason, /^cache_hit: match [01]\.\d\d > 0\.30 on worker http:\/\/127\.0\.0\.1:\d+ \(load 0\)$/);
  }
  t.same([...chosen], [first.slot], 'every request with the shared prefix went to the first worker');
  // another prefix family lands on some worker and then sticks there too
  const other = p.select(req('Translate into French, keeping the formatting of the table: row 1'), ctx) as Decision;
  for (let i = 2; i < 10; i++) t.equal(p.select(req(`Translate into French, keeping the formatting of the table: row ${i}`), ctx)?.slot, other.slot);
  const snap = p.snapshot?.() as CacheAwareState;
  t.equal(snap.cache_hits + snap.cache_misses, snap.decisions);
  t.equal(snap.imbalanced, 0);
  t.ok((snap.tree_size[ws[first.slot]!.url] ?? 0) > SYSTEM.length, 'tree_size per worker URL');
});

t.test('an overloaded worker stops receiving its prefix (SGLang thresholds: abs 64 AND rel 1.5)', async (t) => {
  const table = WorkerTable.create(8);
  const ws = addWorkers(table, 3);
  const [a, b, c] = ws as [WorkerInfo, WorkerInfo, WorkerInfo];
  const p = createCacheAwarePolicy({ balanceKeepLocality: false });
  p.onWorkersChanged?.(ws);
  const ctx = ctxFor(table, ws, 3);
  load(table, b, 1);
  load(table, c, 1);
  t.equal(p.select(req(`${SYSTEM} q0`), ctx)?.slot, a.slot, 'least loaded first');
  // a's load grows: not imbalanced while the gap is <= 64 or the ratio <= 1.5
  load(table, a, 65); // a 65, b 1, c 1: gap 64, not > 64
  let d = p.select(req(`${SYSTEM} q1`), ctx) as Decision;
  t.equal(d.slot, a.slot, 'gap of exactly 64 is balanced: the prefix sticks');
  t.equal(d.scores?.['imbalanced'], 0);
  load(table, a, 1); // gap 65 > 64 and 66 > 1.5
  d = p.select(req(`${SYSTEM} q2`), ctx) as Decision;
  t.not(d.slot, a.slot, 'imbalanced: the overloaded worker stops receiving its prefix');
  t.equal(d.scores?.['imbalanced'], 1);
  t.equal(d.scores?.['max_load'], 66);
  t.equal(d.scores?.['min_load'], 1);
  t.match(d.reason, /^imbalanced: max 66 min 1 -> least loaded http:\/\/127\.0\.0\.1:\d+ \(load 1\)$/);
  // the relative threshold alone does not make it imbalanced: 100 vs 80 is a gap of 20
  const table2 = WorkerTable.create(4);
  const ws2 = addWorkers(table2, 2);
  const p2 = createCacheAwarePolicy({ balanceAbsThreshold: 10 });
  p2.onWorkersChanged?.(ws2);
  const ctx2 = ctxFor(table2, ws2);
  load(table2, ws2[0]!, 100);
  load(table2, ws2[1]!, 80);
  t.equal(p2.select(req('x'), ctx2)?.scores?.['imbalanced'], 0, 'gap 20 > 10 but 100 < 80 * 1.5');
  load(table2, ws2[0]!, 30);
  t.equal(p2.select(req('x'), ctx2)?.scores?.['imbalanced'], 1, '130 > 120 and gap 50 > 10');
});

t.test('keep-locality (ours): when imbalanced, the longest match among workers near the minimum', async (t) => {
  const table = WorkerTable.create(8);
  const ws = addWorkers(table, 4);
  const [a, b, c, d4] = ws as [WorkerInfo, WorkerInfo, WorkerInfo, WorkerInfo];
  for (const keep of [true, false]) {
    const p = createCacheAwarePolicy({ balanceKeepLocality: keep, balanceAbsThreshold: 8 });
    p.onWorkersChanged?.(ws);
    const ctx = ctxFor(table, ws, 5);
    // teach the tree: b is the least loaded, so the prefix goes there
    load(table, a, 2);
    load(table, c, 2);
    load(table, d4, 2);
    t.equal(p.select(req(`${SYSTEM} teach`), ctx)?.slot, b.slot);
    // now a is overloaded (30); b at 5 is within 8 of the minimum (c and d at 2)
    load(table, a, 28);
    load(table, b, 5);
    const dec = p.select(req(`${SYSTEM} question`), ctx) as Decision;
    t.equal(dec.scores?.['imbalanced'], 1);
    if (keep) {
      t.equal(dec.slot, b.slot, 'locality kept: b holds the prefix and is within the bound');
      t.equal(dec.scores?.['cache_hit'], 1);
      t.match(dec.reason, /^imbalanced: max 30 min 2; cache_hit among loads <= 10: match 0\.\d\d > 0\.30 on worker /);
    } else {
      t.ok(dec.slot === c.slot || dec.slot === d4.slot, 'SGLang exact: the least loaded, locality thrown away');
      t.equal(dec.scores?.['cache_hit'], 0);
    }
    // b beyond the bound: least loaded even with locality on
    load(table, b, 6); // b at 11 > min 2 + 8
    const far = p.select(req(`${SYSTEM} question 2`), ctx) as Decision;
    t.not(far.slot, b.slot, 'a worker beyond min + abs does not get the prefix');
    t.not(far.slot, a.slot);
    // reset loads for the next round
    for (const w of ws) while (table.inFlight(w.slot) > 0) table.releaseLoad(w, 1, false);
  }
});

t.test('below the cache threshold: least loaded, ties broken at random (seeded), never by index', async (t) => {
  const table = WorkerTable.create(8);
  const ws = addWorkers(table, 4);
  const p = createCacheAwarePolicy({ cacheThreshold: 0.99 });
  p.onWorkersChanged?.(ws);
  const counts = new Map<number, number>();
  const ctx = ctxFor(table, ws, 42);
  for (let i = 0; i < 4000; i++) {
    const d = p.select(req(`completely different text ${i * 7919}`), ctx) as Decision;
    counts.set(d.slot, (counts.get(d.slot) ?? 0) + 1);
  }
  for (const w of ws) {
    const c = counts.get(w.slot) ?? 0;
    t.ok(c > 800 && c < 1200, `worker ${w.slot} got ${c} of 4000 equal-load decisions`);
  }
  // and the same seed gives the same sequence
  const run = (): number[] => {
    const q = createCacheAwarePolicy({ cacheThreshold: 0.99 });
    q.onWorkersChanged?.(ws);
    const c = ctxFor(table, ws, 9);
    return Array.from({ length: 50 }, (_, i) => q.select(req(`t${i}`), c)?.slot ?? -1);
  };
  t.same(run(), run());
  // equal longest matches (two workers hold the same prefix): random between them, not the lower index
  const q = createCacheAwarePolicy();
  const two = ws.slice(0, 2);
  q.onWorkersChanged?.(two);
  const c2 = ctxFor(table, two, 7);
  const seen = new Set<number>();
  const prefix = 'shared system prompt that both workers have served before; ';
  // teach both workers the prefix through imbalance: load one, then the other
  load(table, two[0]!, 100);
  q.select(req(prefix + 'a'), c2); // imbalanced -> worker 1
  table.releaseLoad(two[0]!, 1, false);
  for (let i = 0; i < 99; i++) table.releaseLoad(two[0]!, 1, false);
  load(table, two[1]!, 100);
  q.select(req(prefix + 'b'), c2); // imbalanced -> worker 0
  for (let i = 0; i < 100; i++) table.releaseLoad(two[1]!, 1, false);
  for (let i = 0; i < 60; i++) seen.add((q.select(req(prefix + String.fromCharCode(0x4e00 + i) + 'zz'), c2) as Decision).slot);
  t.equal(seen.size, 2, 'both holders of the longest match are chosen');
});

t.test('one tree per model; removed workers leave every tree; a reused slot starts clean', async (t) => {
  const table = WorkerTable.create(8);
  let ws = addWorkers(table, 3);
  const p = createCacheAwarePolicy();
  p.onWorkersChanged?.(ws);
  const ctx = { ...ctxFor(table, ws, 2), workers: ws };
  const a = p.select(req(`${SYSTEM} m1`, 'model-a'), ctx) as Decision;
  const sameModel = p.select(req(`${SYSTEM} m2`, 'model-a'), ctx) as Decision;
  t.equal(sameModel.slot, a.slot);
  t.equal(sameModel.scores?.['cache_hit'], 1);
  const otherModel = p.select(req(`${SYSTEM} m3`, 'model-b'), ctx) as Decision;
  t.equal(otherModel.scores?.['cache_hit'], 0, 'another model has its own tree');
  t.equal(otherModel.scores?.['matched_chars'], 0);
  let snap = p.snapshot?.() as CacheAwareState;
  t.same(snap.trees.map((x) => x.model).sort(), ['model-a', 'model-b']);
  // remove the worker holding model-a's prefix; its slot is reused by a new worker at once
  const victim = ws.find((w) => w.slot === a.slot)!;
  table.release(victim.slot);
  const ref = table.allocate({ healthy: true });
  const fresh: WorkerInfo = { slot: ref.slot, generation: ref.generation, url: 'http://10.0.0.9:1', nodeId: 9 };
  ws = [...ws.filter((w) => w !== victim), fresh];
  p.onWorkersChanged?.(ws);
  snap = p.snapshot?.() as CacheAwareState;
  t.equal(snap.tree_size['http://10.0.0.9:1'], 0, 'the new worker in the old slot holds nothing');
  t.notOk(victim.url in snap.tree_size, 'the removed worker is gone from tree_size');
  const after = p.select(req(`${SYSTEM} m4`, 'model-a'), { ...ctx, workers: ws }) as Decision;
  t.equal(after.scores?.['cache_hit'], 0, 'nobody holds the prefix any more');
});

t.test('eviction: on the interval, and the max_tree_size bound on every insert', async (t) => {
  const table = WorkerTable.create(4);
  const ws = addWorkers(table, 1);
  let clock = 1000;
  const p = createCacheAwarePolicy({ maxTreeSize: 1000, evictionIntervalSecs: 10 });
  p.onWorkersChanged?.(ws);
  const ctx = ctxFor(table, ws, 1, () => clock);
  for (let i = 0; i < 50; i++) {
    p.select(req(`${i.toString(36)}-${'x'.repeat(100)}`), ctx);
    clock += 1;
    const size = (p.snapshot?.() as CacheAwareState).tree_size[ws[0]!.url] ?? 0;
    if (size > 1000) t.fail(`tree grew to ${size} > 1000 between evictions`);
  }
  t.ok(((p.snapshot?.() as CacheAwareState).tree_size[ws[0]!.url] ?? 0) <= 1000, 'bounded on insert');
  p.tick?.(clock); // first tick arms the interval
  p.tick?.(clock + 5000);
  t.equal((p.snapshot?.() as CacheAwareState).evictions.runs, 0, 'not before the interval');
  p.tick?.(clock + 10_000);
  t.equal((p.snapshot?.() as CacheAwareState).evictions.runs, 1, 'once the interval has passed');
});

t.test('options: SGLang defaults, validation with stable codes', async (t) => {
  t.same(cacheAwareOptions(), { cacheThreshold: 0.3, balanceAbsThreshold: 64, balanceRelThreshold: 1.5, evictionIntervalSecs: 120, maxTreeSize: 2 ** 26, balanceKeepLocality: true, tieTolerance: 0.01, hotPrefixFactor: 1.1, affinity: null });
  for (const bad of [{ cacheThreshold: 2 }, { balanceRelThreshold: 0.5 }, { maxTreeSize: 0 }, { balanceAbsThreshold: -1 }, { evictionIntervalSecs: 0 }, { balanceKeepLocality: 'yes' }, { cacheThreshold: 'x' }, { tieTolerance: 1 }, { hotPrefixFactor: 0.5 }, { hotPrefixFactor: -1 }, { affinity: { blockChars: 100 } }, { affinity: 'on' }]) {
    const err = t.throws(() => createCacheAwarePolicy(bad)) as SwitchyardError;
    t.equal(err.code, 'invalid_request', JSON.stringify(bad));
  }
  const p = createCacheAwarePolicy();
  const table = WorkerTable.create(2);
  t.equal(p.select(req('x'), ctxFor(table, [])), null, 'no workers: null');
  const ws = addWorkers(table, 1);
  p.onWorkersChanged?.(ws);
  const d = p.select(req(''), ctxFor(table, ws)) as Decision;
  t.equal(d.scores?.['text_chars'], 0, 'empty text: decided by load, nothing inserted');
  t.equal((p.snapshot?.() as CacheAwareState).trees[0]?.chars ?? 0, 0);
});

t.test('many models share an overflow tree beyond the bound', async (t) => {
  const table = WorkerTable.create(2);
  const ws = addWorkers(table, 1);
  const p = createCacheAwarePolicy();
  p.onWorkersChanged?.(ws);
  const ctx = ctxFor(table, ws);
  for (let i = 0; i < 100; i++) p.select(req('hello', `m${i}`), ctx);
  const snap = p.snapshot?.() as CacheAwareState;
  t.equal(snap.trees.length, 65, '64 models and one overflow tree');
  t.ok(snap.trees.some((x) => x.model === '(overflow)'));
});

t.test('sharded: same first block, same shard; snapshot merges tree sizes and hit counts', async (t) => {
  const table = WorkerTable.create(8);
  const ws = addWorkers(table, 4);
  const host = createPolicyHost('cache_aware', { seed: 5 }, table, undefined, { placement: 'actor', shards: 3, actor: TEST_ACTOR });
  t.teardown(() => host.close());
  await host.ready();
  host.setWorkers(ws);
  const families = ['alpha ', 'beta ', 'gamma ', 'delta ', 'epsilon '].map((f) => f.repeat(20));
  const slots = new Map<string, Set<number>>();
  for (let round = 0; round < 6; round++) {
    const ds = await Promise.all(families.map((f, i) => decideAsync(host, req(`${f} question ${round}-${i}`))));
    ds.forEach((d, i) => {
      const key = families[i] as string;
      if (!slots.has(key)) slots.set(key, new Set());
      slots.get(key)!.add(d!.slot);
    });
  }
  for (const [family, s] of slots) t.equal(s.size, 1, `${family.slice(0, 8)}: one worker across shards`);
  const snap = (await host.snapshot()) as { shards: number; state: CacheAwareState; shard: unknown[] };
  t.equal(snap.shards, 3);
  t.equal(snap.shard.length, 3);
  t.equal(snap.state.decisions, 30);
  t.equal(snap.state.cache_hits, 25, 'every family missed once, then hit');
  const total = Object.values(snap.state.tree_size).reduce((a, b) => a + b, 0);
  t.ok(total > 5 * families[0]!.length, 'tree sizes summed over shards');
  t.equal(mergeCacheAwareStates([null, null]), null);
});

t.test('a prompt every worker holds: near-equal matches tie, so a few characters of question do not decide', async (t) => {
  const table = WorkerTable.create(8);
  const ws = addWorkers(table, 4);
  const shared = 'The one system prompt every request of this application starts with. '.repeat(30);
  for (const [tolerance, spread] of [
    [0.01, true],
    [0, false],
  ] as const) {
    const p = createCacheAwarePolicy({ tieTolerance: tolerance, balanceAbsThreshold: 1000 });
    p.onWorkersChanged?.(ws);
    const rng = new Rng(3);
    const ctx = ctxFor(table, ws, 4);
    // every worker learns the prompt (one request each, steered by load), worker 0 with many questions
    for (const [i, w] of ws.entries()) {
      for (const other of ws) if (other !== w) load(table, other, 2000);
      const d = p.select(req(`${shared} first question ${i}`), ctx) as Decision;
      t.equal(d.slot, w.slot);
      for (const other of ws) if (other !== w) for (let k = 0; k < 2000; k++) table.releaseLoad(other, 1, false);
    }
    for (let k = 0; k < 200; k++) {
      for (const other of ws.slice(1)) load(table, other, 2000);
      p.select(req(`${shared} ${k.toString(36)} ${rng.int(0, 1e9)}`), ctx);
      for (const other of ws.slice(1)) for (let j = 0; j < 2000; j++) table.releaseLoad(other, 1, false);
    }
    // loads equal again: random questions
    const counts = new Map<number, number>();
    for (let k = 0; k < 400; k++) {
      const d = p.select(req(`${shared} ${String.fromCharCode(97 + rng.int(0, 25))}${rng.int(0, 1e9)} what now?`), ctx) as Decision;
      counts.set(d.slot, (counts.get(d.slot) ?? 0) + 1);
    }
    const first = counts.get(ws[0]!.slot) ?? 0;
    if (spread) t.ok(first < 200 && counts.size === 4, `tolerance ${tolerance}: spread over every holder ${JSON.stringify([...counts])}`);
    else t.ok(first > 300, `tolerance 0: the worker with the most question history takes most (${first} of 400)`);
  }
});

/**
 * A closed little fleet: each decision puts a request in flight on the chosen worker; after it, every
 * worker finishes one of its requests with probability `serve` (the same speed for all). Returns the
 * requests each worker got over the last `measured` decisions, and the policy's snapshot.
 */
function simulate(options: Record<string, unknown>, texts: (i: number) => string, decisions: number, measured: number): { counts: number[]; snap: CacheAwareState; slots: number[] } {
  const table = WorkerTable.create(16);
  const ws = addWorkers(table, 8);
  const p = createCacheAwarePolicy(options);
  p.onWorkersChanged?.(ws);
  const ctx = ctxFor(table, ws, 11);
  const rng = new Rng(5);
  const counts = new Array<number>(8).fill(0);
  const inFlight = new Array<number>(8).fill(0);
  for (let i = 0; i < decisions; i++) {
    const d = p.select(req(texts(i)), ctx) as Decision;
    const k = ws.findIndex((w) => w.slot === d.slot);
    table.acquire(ws[k]!, 1);
    inFlight[k]!++;
    if (i >= decisions - measured) counts[k]!++;
    for (let j = 0; j < 8; j++) {
      if (inFlight[j]! > 0 && rng.next() < 0.16) {
        table.releaseLoad(ws[j]!, 1, true);
        inFlight[j]!--;
      }
    }
  }
  return { counts, snap: p.snapshot?.() as CacheAwareState, slots: ws.map((w) => w.slot) };
}

t.test('hot-prefix replication (ours): one prompt for every request spreads over the fleet; SGLang rule lets it pile up', async (t) => {
  const hot = (i: number): string => `${SYSTEM.repeat(20)} question ${i} ${'x'.repeat(i % 7)}`;
  const fair = 1000 / 8;
  const replicated = simulate({}, hot, 3000, 1000);
  const max = Math.max(...replicated.counts) / fair;
  t.ok(max <= 1.25, `default: busiest worker ${max.toFixed(2)}x its fair share (${replicated.counts.join(' ')})`);
  t.ok(Math.min(...replicated.counts) > 0, 'every worker took part');
  t.ok(replicated.snap.hot_prefix_spills >= 7 && replicated.snap.hot_prefix_spills < 100, `${replicated.snap.hot_prefix_spills} spills: the prompt was replicated, then hits again`);
  t.ok(replicated.snap.cache_hits / replicated.snap.decisions > 0.95, 'and nearly every decision still followed the cache');
  const sglang = simulate({ hotPrefixFactor: 0 }, hot, 3000, 1000);
  const maxSglang = Math.max(...sglang.counts) / fair;
  // SGLang's rule spreads only once a holder is 64 requests ahead, and leaves workers out
  t.ok(maxSglang > 1.25 && maxSglang > max, `--hot-prefix-factor 0: busiest worker ${maxSglang.toFixed(2)}x (${sglang.counts.join(' ')})`);
  t.ok(Math.min(...sglang.counts) < Math.min(...replicated.counts) / 2, 'and the idlest worker far below');
  t.equal(sglang.snap.hot_prefix_spills, 0);
});

t.test('hot-prefix replication leaves many distinct prefixes alone: no spill, each group on one worker', async (t) => {
  const groups = Array.from({ length: 80 }, (_, g) => `group ${g} ${SYSTEM.repeat(3)}`);
  const order = new Rng(9);
  const picks: number[] = [];
  const text = (i: number): string => {
    const g = order.int(0, 79);
    picks[i] = g;
    return `${groups[g]} question ${i}`;
  };
  const { snap } = simulate({}, text, 4000, 1000);
  t.equal(snap.hot_prefix_spills, 0, 'no group is hot: 1/80 of the traffic each');
  t.ok(snap.cache_hits / snap.decisions > 0.97, `hit rate ${(snap.cache_hits / snap.decisions).toFixed(3)}`);
});
