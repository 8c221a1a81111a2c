/** Behaviour of random and round_robin, the shared helpers and the registry. */
import t from 'tap';
import { WorkerTable, Field, BreakerState } from '../../src/actors/worker-table.js';
import { collectAvailable, leastLoadedDecision, leastLoadedIndex, monotonicNow } from '../../src/policies/common.js';
import { createPolicyHost } from '../../src/policies/host.js';
import {
  createPolicy,
  createPolicyFromSpec,
  isPolicyName,
  KNOWN_POLICY_NAMES,
  policyNames,
  policySpec,
  registerPolicy,
  unregisterPolicy,
} from '../../src/policies/registry.js';
import { createRandomPolicy } from '../../src/policies/random.js';
import { SwitchyardError } from '../../src/errors.js';
import type { Policy, PolicyContext, WorkerInfo } from '../../src/policies/types.js';
import { Rng } from '../../src/util/rng.js';
import { addWorkers, decideAsync, makeRequest, TEST_ACTOR } from './conformance.js';

function ctxFor(table: WorkerTable, workers: readonly WorkerInfo[], seed = 1): PolicyContext {
  return { table, workers, rng: new Rng(seed), now: monotonicNow };
}

const REQ = makeRequest(0, new Rng(1));

t.test('round_robin visits every available worker in turn, as SGLang does (counter mod available)', async (t) => {
  const table = WorkerTable.create(8);
  const ws = addWorkers(table, 5);
  const rr = createPolicy('round_robin');
  const ctx = ctxFor(table, ws);
  const slots: number[] = [];
  for (let i = 0; i < 10; i++) {
    const d = rr.select(REQ, ctx);
    slots.push(d?.slot ?? -1);
    t.equal(d?.reason, `round_robin: counter ${i} mod 5`);
    t.same(d?.scores, { counter: i, available: 5, pick: i % 5 });
  }
  t.same(slots, [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]);

  // an unhealthy worker is skipped; the counter keeps counting, now modulo 4
  table.setHealthy(ws[2]!.slot, false);
  const next: number[] = [];
  for (let i = 0; i < 8; i++) next.push(rr.select(REQ, ctx)?.slot ?? -1);
  // counters 10..17 mod 4 -> 2,3,0,1,2,3,0,1 over the available list [0,1,3,4]
  t.same(next, [3, 4, 0, 1, 3, 4, 0, 1]);
  t.notOk(next.includes(ws[2]!.slot), 'the unhealthy worker is never visited');

  // an open breaker counts as unavailable too; none available -> null and the counter does not move
  for (const w of ws) table.set(w.slot, Field.Breaker, BreakerState.Open);
  t.equal(rr.select(REQ, ctx), null);
  table.set(ws[0]!.slot, Field.Breaker, BreakerState.Closed);
  t.equal(rr.select(REQ, ctx)?.reason, 'round_robin: counter 18 mod 1');
  t.same(rr.snapshot?.(), { counter: 19 });
});

t.test('round_robin through the actor host keeps its turn order', async (t) => {
  const table = WorkerTable.create(8);
  const ws = addWorkers(table, 4);
  const host = createPolicyHost('round_robin', { seed: 1 }, table, undefined, { placement: 'actor', actor: TEST_ACTOR });
  t.teardown(() => host.close());
  await host.ready();
  host.setWorkers(ws);
  const ds = await Promise.all(Array.from({ length: 12 }, () => decideAsync(host, REQ)));
  t.same(
    ds.map((d) => d?.slot),
    [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3],
  );
});

t.test('random is roughly uniform over the available workers and seeded', async (t) => {
  const table = WorkerTable.create(16);
  const ws = addWorkers(table, 9);
  table.setHealthy(ws[8]!.slot, false);
  const random = createRandomPolicy({ seed: 42 });
  const ctx = ctxFor(table, ws, 42);
  const counts = new Map<number, number>();
  const N = 16_000;
  let nulls = 0;
  for (let i = 0; i < N; i++) {
    const d = random.select(REQ, ctx);
    if (d === null) nulls++;
    else counts.set(d.slot, (counts.get(d.slot) ?? 0) + 1);
  }
  t.equal(nulls, 0);
  t.equal(counts.size, 8, 'every available worker chosen; the unhealthy one never');
  t.notOk(counts.has(ws[8]!.slot));
  // chi-square against uniform, 7 degrees of freedom: p = 0.001 at 24.3
  const expected = N / 8;
  let chi = 0;
  for (const c of counts.values()) chi += (c - expected) ** 2 / expected;
  t.ok(chi < 24.3, `chi-square ${chi.toFixed(2)} < 24.3`);
  const d = random.select(REQ, ctx);
  t.match(d?.reason, /^random: pick \d of 8 available$/);
});

t.test('collectAvailable keeps membership order and skips stale generations', async (t) => {
  const table = WorkerTable.create(8);
  const ws = addWorkers(table, 4);
  const out: WorkerInfo[] = [];
  t.equal(collectAvailable(table, [ws[3]!, ws[0]!, ws[2]!], out), 3);
  t.same(
    out.map((w) => w.slot),
    [3, 0, 2],
  );
  table.release(ws[0]!.slot);
  table.allocate(); // reuses slot 0 under a new generation
  t.equal(collectAvailable(table, ws, out), 3, 'the old generation of slot 0 is not a candidate');
  t.same(
    out.slice(0, 3).map((w) => w.slot),
    [1, 2, 3],
  );
});

t.test('leastLoadedIndex breaks ties at random, never by index', async (t) => {
  const table = WorkerTable.create(8);
  const ws = addWorkers(table, 4);
  const rng = new Rng(9);
  const counts = [0, 0, 0, 0];
  for (let i = 0; i < 4000; i++) counts[leastLoadedIndex(table, ws, 4, rng)]!++;
  for (const c of counts) t.ok(c > 800 && c < 1200, `tie share ${c} of 4000 near 1000`);
  // a strictly lower load always wins
  for (const w of ws) table.acquire(w, 1);
  table.releaseLoad(ws[2]!, 1, true);
  for (let i = 0; i < 50; i++) t.equal(leastLoadedIndex(table, ws, 4, rng), 2);
  // reported load counts when larger than our own count
  table.setReported(ws[2]!.slot, { queue: 5, running: 0, tokens: 0 }, 0);
  const picks = new Set<number>();
  for (let i = 0; i < 200; i++) picks.add(leastLoadedIndex(table, ws, 4, rng));
  t.same([...picks].sort(), [0, 1, 3]);
  t.equal(leastLoadedIndex(table, ws, 0, rng), -1);
  const d = leastLoadedDecision(table, ws, [], rng, 'fallback: test');
  t.match(d?.reason, /^fallback: test; least loaded \(load 1\) of 4 available$/);
  t.equal(leastLoadedDecision(table, [], [], rng, 'x'), null);
});

t.test('registry: names, unknown names, plugins', async (t) => {
  t.same(policyNames().slice(0, 2), ['random', 'round_robin']);
  t.ok(isPolicyName('random'));
  t.notOk(isPolicyName('cache_awar'));
  t.same(KNOWN_POLICY_NAMES.slice(0, 4), ['random', 'round_robin', 'power_of_two', 'cache_aware'], "SGLang's names first");
  const err = t.throws(() => createPolicy('cache_awar')) as SwitchyardError;
  t.type(err, SwitchyardError);
  t.equal(err.code, 'invalid_request');
  t.match(err.message, /unknown policy "cache_awar"; valid policies: random, round_robin/);
  t.notMatch(err.message, /not available yet/, 'every known policy is built in now');
  t.same(policyNames().slice(0, KNOWN_POLICY_NAMES.length), [...KNOWN_POLICY_NAMES]);
  t.same(err.details?.['valid'], policyNames());
  t.throws(() => policySpec('nope'), /unknown policy "nope"/);
  t.throws(() => createPolicyHost('nope', {}, WorkerTable.create(1)), /unknown policy "nope"/);
  t.equal((await createPolicyFromSpec({ name: 'cache_aware', options: {} })).name, 'cache_aware');
  await t.rejects(createPolicyFromSpec({ name: 'mine', options: {} }), /registerPolicyModule/);
  await t.rejects(createPolicyFromSpec({ name: 'mine', options: {}, module: 'file:///nonexistent/plugin.js' }), /cannot load policy module/);

  t.throws(() => registerPolicy('Bad-Name', createRandomPolicy), /invalid policy name/);
  t.throws(() => registerPolicy('random', createRandomPolicy), /already registered/);
  t.throws(() => registerPolicy('rel', createRandomPolicy, { module: './relative.js' }), /absolute path or a file: URL/);

  // an inline-only plugin: fine inline, refused in an actor (the thread could not build it)
  const inlineOnly = (): Policy => ({ name: 'inline_only', stateful: true, select: () => null });
  registerPolicy('inline_only', inlineOnly);
  t.teardown(() => unregisterPolicy('inline_only'));
  t.ok(policyNames().includes('inline_only'));
  t.equal(policySpec('inline_only').module, undefined);
  t.equal((await createPolicyFromSpec({ name: 'inline_only', options: {} })).name, 'inline_only');
  t.throws(() => createPolicyHost('inline_only', {}, WorkerTable.create(1)), /registered without a module/);
  const inline = createPolicyHost('inline_only', {}, WorkerTable.create(1), undefined, { placement: 'inline' });
  t.equal(inline.placement, 'inline');
  await inline.close();

  // a factory that lies about its name is caught
  registerPolicy('liar', () => createRandomPolicy());
  t.teardown(() => unregisterPolicy('liar'));
  t.throws(() => createPolicy('liar'), /built a policy named "random"/);
  t.equal(unregisterPolicy('random'), false, 'built-ins cannot be removed');
});
