/** Policy hosts: placement, inline behaviour, the actor host's fallback, restart and membership replay. */
import t from 'tap';
import { fileURLToPath } from 'node:url';
import { WorkerTable } from '../../src/actors/worker-table.js';
import { ActorPolicyHost, CHUNK_TEXT_ABOVE, createPolicyHost, FALLBACK_RESTARTING, InlinePolicyHost, type PolicyHost } from '../../src/policies/host.js';
import { registerPolicyModule } from '../../src/policies/registry.js';
import type { CacheAwareState } from '../../src/policies/cache-aware.js';
import type { CompletionFeedback, Decision, RequestFeatures } from '../../src/policies/types.js';
import { Rng } from '../../src/util/rng.js';
import { addWorkers, decideAsync, makeRequest, TEST_ACTOR } from './conformance.js';
import { TEST_PLUGIN_NAME } from './fixtures/test-plugin.js';

await registerPolicyModule(TEST_PLUGIN_NAME, fileURLToPath(new URL('./fixtures/test-plugin.js', import.meta.url)));

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const rng = new Rng(1);
const req = (text?: string): RequestFeatures => (text === undefined ? makeRequest(rng.int(0, 1000), rng) : { ...makeRequest(0, rng), text });
const feedback = (url: string, slot: number): CompletionFeedback => ({
  requestId: 'r',
  url,
  slot,
  success: true,
  sentAt: 1,
  firstTokenAt: 2,
  finishedAt: 3,
  inputTokens: 10,
  outputTokens: 5,
  cachedTokens: 0,
});

interface PluginSnapshot {
  observed: number;
  ticks: number;
  membership: number;
  membershipChanges: number;
}

t.test('createPolicyHost: stateless inline, stateful in an actor, placement override', async (t) => {
  const table = WorkerTable.create(4);
  const hosts: PolicyHost[] = [
    createPolicyHost('random', {}, table),
    createPolicyHost('round_robin', { seed: 3 }, table),
    createPolicyHost(TEST_PLUGIN_NAME, { seed: 3 }, table, undefined, { actor: TEST_ACTOR }),
    createPolicyHost('random', {}, table, undefined, { placement: 'actor', actor: TEST_ACTOR }),
    createPolicyHost(TEST_PLUGIN_NAME, {}, table, undefined, { placement: 'inline' }),
  ];
  t.same(
    hosts.map((h) => [h.name, h.placement]),
    [
      ['random', 'inline'],
      ['round_robin', 'inline'],
      [TEST_PLUGIN_NAME, 'actor'],
      ['random', 'actor'],
      [TEST_PLUGIN_NAME, 'inline'],
    ],
  );
  t.type(hosts[0], InlinePolicyHost);
  t.type(hosts[2], ActorPolicyHost);
  await Promise.all(hosts.map((h) => h.ready()));
  await Promise.all(hosts.map((h) => h.close()));
});

t.test('inline host: synchronous callback, observe, tick, fallback when the policy throws', async (t) => {
  const table = WorkerTable.create(4);
  const ws = addWorkers(table, 3);
  const host = createPolicyHost(TEST_PLUGIN_NAME, { seed: 1 }, table, undefined, { placement: 'inline', tickIntervalMs: 5 });
  t.teardown(() => host.close());
  host.setWorkers(ws);
  let got: Decision | null | undefined;
  host.decide(req(), (_err, d) => {
    got = d;
  });
  t.not(got, undefined, 'the callback ran before decide returned');
  t.match(got?.reason, /^test_stateful: least loaded/);

  let thrown: Decision | null | undefined;
  host.decide(req('__throw__'), (err, d) => {
    t.equal(err, null);
    thrown = d;
  });
  t.match(thrown?.reason, /^fallback: policy error: policy refused; least loaded/);
  t.ok(ws.some((w) => w.slot === thrown?.slot));

  host.observe(feedback(ws[0]!.url, ws[0]!.slot));
  host.observe(feedback(ws[1]!.url, ws[1]!.slot));
  await sleep(60);
  const snap = (await host.snapshot()) as { placement: string; errors: number; state: PluginSnapshot };
  t.equal(snap.placement, 'inline');
  t.equal(snap.errors, 1);
  t.equal(snap.state.observed, 2);
  t.equal(snap.state.membership, 3);
  t.ok(snap.state.ticks > 0, `tick ran (${snap.state.ticks})`);
});

t.test('actor host: observe and tick reach the policy in its thread; policy errors fall back', async (t) => {
  const table = WorkerTable.create(4);
  const ws = addWorkers(table, 3);
  const host = createPolicyHost(TEST_PLUGIN_NAME, { seed: 1 }, table, undefined, { tickIntervalMs: 5, actor: TEST_ACTOR });
  t.teardown(() => host.close());
  await host.ready();
  host.setWorkers(ws);
  for (let i = 0; i < 3; i++) host.observe(feedback(ws[0]!.url, ws[0]!.slot));
  const d = await decideAsync(host, req());
  t.match(d?.reason, /^test_stateful/);
  const bad = await decideAsync(host, req('__throw__'));
  t.match(bad?.reason, /^fallback: policy error: policy refused/);
  type Snap = { placement: string; actor: { decisions: number; observed: number; workers: number; state: PluginSnapshot } };
  let snap = (await host.snapshot()) as Snap;
  const deadline = Date.now() + 60_000; // the thread may be starved for a while on a loaded machine
  while (snap.actor.state.ticks === 0 && Date.now() < deadline) {
    await sleep(30);
    snap = (await host.snapshot()) as Snap;
  }
  t.equal(snap.placement, 'actor');
  t.equal(snap.actor.observed, 3);
  t.equal(snap.actor.state.observed, 3);
  t.equal(snap.actor.workers, 3);
  t.ok(snap.actor.state.ticks > 0, `tick ran in the actor thread (${snap.actor.state.ticks})`);
});

t.test('actor host: feedback is not shipped to a policy that does not observe', async (t) => {
  const table = WorkerTable.create(4);
  const ws = addWorkers(table, 2);
  const host = createPolicyHost('round_robin', {}, table, undefined, { placement: 'actor', actor: TEST_ACTOR }) as ActorPolicyHost;
  t.teardown(() => host.close());
  await host.ready();
  host.setWorkers(ws);
  await decideAsync(host, req());
  const sent = host.actor.stats().callsSent;
  host.observe(feedback(ws[0]!.url, ws[0]!.slot));
  await decideAsync(host, req());
  t.equal(host.actor.stats().callsSent - sent, 1, 'only the decision crossed');
});

t.test('actor host: a crash falls back at once, restarts, and replays the current membership', async (t) => {
  const table = WorkerTable.create(8);
  const ws = addWorkers(table, 4);
  const host = createPolicyHost(TEST_PLUGIN_NAME, { seed: 2 }, table, undefined, { actor: TEST_ACTOR }) as ActorPolicyHost;
  t.teardown(() => host.close());
  await host.ready();
  host.setWorkers(ws);
  t.match((await decideAsync(host, req()))?.reason, /^test_stateful/);

  // decisions in the same crossing as the fatal one are answered by the fallback, not left hanging
  const inFlight = [decideAsync(host, req()), decideAsync(host, req('__exit__')), decideAsync(host, req())];
  const answered = await Promise.all(inFlight);
  const reasons = answered.map((d) => d?.reason ?? 'null');
  t.ok(
    reasons.slice(1).every((r) => r.startsWith(FALLBACK_RESTARTING)),
    `the fatal decision and those after it fell back: ${reasons.join(' | ')}`,
  );
  for (const d of answered) t.ok(d !== null && ws.some((w) => w.slot === d.slot), 'still routed to a member');

  // while the thread restarts: membership changes, and routing keeps going on the fallback
  t.equal(host.available, false);
  const shrunk = ws.slice(0, 2);
  table.release(ws[3]!.slot);
  host.setWorkers(shrunk);
  const meanwhile = await decideAsync(host, req());
  t.match(meanwhile?.reason, /^fallback: policy actor restarting; least loaded/);
  t.ok(shrunk.some((w) => w.slot === meanwhile?.slot), 'the fallback uses the current membership');

  await host.ready();
  t.equal(host.actor.restarts, 1);
  const after = await decideAsync(host, req());
  t.match(after?.reason, /^test_stateful/, 'the policy decides again');
  t.ok(shrunk.some((w) => w.slot === after?.slot));
  const snap = (await host.snapshot()) as { restarts: number; fallbacks: number; actor: { workers: number; state: PluginSnapshot } };
  t.equal(snap.actor.workers, 2, 'the new thread has the membership set while it was down');
  t.equal(snap.actor.state.membership, 2);
  t.equal(snap.restarts, 1);
  t.ok(snap.fallbacks >= 3);
});

t.test('a decision made stale by a removal is detectable by the caller', async (t) => {
  const table = WorkerTable.create(4);
  const ws = addWorkers(table, 2);
  for (const placement of ['inline', 'actor'] as const) {
    const host = createPolicyHost('round_robin', {}, table, undefined, { placement, actor: TEST_ACTOR });
    await host.ready();
    host.setWorkers(ws);
    const d = (await decideAsync(host, req())) as Decision;
    t.ok(table.isCurrent(d));
    await host.close();
  }
  const d = { slot: ws[0]!.slot, generation: ws[0]!.generation };
  table.release(d.slot);
  table.allocate();
  t.notOk(table.isCurrent(d), 'isCurrent tells the caller to decide again');
  t.notOk(table.acquire(d, 1), 'and acquire refuses to count it');
});

t.test('actor host after close: decisions still answer (fallback), snapshot still works', async (t) => {
  const table = WorkerTable.create(4);
  const ws = addWorkers(table, 2);
  const host = createPolicyHost(TEST_PLUGIN_NAME, {}, table, undefined, { actor: TEST_ACTOR });
  await host.ready();
  host.setWorkers(ws);
  await host.close();
  const d = await decideAsync(host, req());
  t.match(d?.reason, /^fallback: policy host closed/);
  const snap = (await host.snapshot()) as { available: boolean; actor: unknown };
  t.equal(snap.available, false);
  t.equal(snap.actor, null);
});

t.test('actor host: a hung policy thread is terminated by the watchdog; routing falls back meanwhile', async (t) => {
  const table = WorkerTable.create(4);
  const ws = addWorkers(table, 2);
  const host = createPolicyHost(TEST_PLUGIN_NAME, {}, table, undefined, { actor: { ...TEST_ACTOR, watchdogMs: 150 } }) as ActorPolicyHost;
  t.teardown(() => host.close());
  await host.ready();
  host.setWorkers(ws);
  const started = Date.now();
  const stuck = await decideAsync(host, req('__spin__'));
  t.match(stuck?.reason, new RegExp(`^${FALLBACK_RESTARTING}`));
  t.ok(Date.now() - started < 20_000, 'answered by the fallback once the watchdog fired');
  await host.ready();
  t.match((await decideAsync(host, req()))?.reason, /^test_stateful/);
  t.equal(host.actor.restarts, 1);
});

t.test('actor host: decisions beyond the actor queue bound fall back instead of failing', async (t) => {
  const table = WorkerTable.create(4);
  const ws = addWorkers(table, 2);
  const host = createPolicyHost(TEST_PLUGIN_NAME, {}, table, undefined, {
    actor: { ...TEST_ACTOR, maxBatch: 1, maxBatchesInFlight: 1, maxQueuedCalls: 2 },
  });
  t.teardown(() => host.close());
  await host.ready();
  host.setWorkers(ws);
  const ds = await Promise.all(Array.from({ length: 10 }, () => decideAsync(host, req())));
  const overloaded = ds.filter((d) => d?.reason.startsWith('fallback: policy actor overloaded')).length;
  const decided = ds.filter((d) => d?.reason.startsWith('test_stateful')).length;
  t.ok(overloaded > 0, `${overloaded} fell back as overloaded`);
  t.ok(decided > 0, `${decided} decided by the policy`);
  t.equal(overloaded + decided, 10);
});

t.test('fallback decisions respect size-aware admission groups (actor restarting, closed, inline error)', async (t) => {
  const table = WorkerTable.create(8);
  // two single workers, idle; one multi worker, the busiest: a group-blind least-loaded fallback never picks it
  const ws = addWorkers(table, 3).map((w, i) => ({ ...w, group: i === 2 ? 'multi' : 'single' }));
  const multi = ws[2]!;
  table.acquire(multi, 1);
  table.acquire(multi, 1);
  t.teardown(() => {
    table.releaseLoad(multi, 1, true);
    table.releaseLoad(multi, 1, true);
  });
  const admitted = (text: string): RequestFeatures => ({ ...req(text), group: 'multi', admission: 'admission: large_input: 9000 > 8000 tokens -> multi' });

  const host = createPolicyHost(TEST_PLUGIN_NAME, { seed: 5 }, table, undefined, { actor: TEST_ACTOR }) as ActorPolicyHost;
  t.teardown(() => host.close());
  await host.ready();
  host.setWorkers(ws);
  t.equal((await decideAsync(host, admitted('hello')))?.slot, multi.slot, 'the policy decides within the group');
  // the fatal decision itself, then decisions while the thread restarts
  const fatal = await decideAsync(host, admitted('__exit__'));
  t.equal(fatal?.slot, multi.slot, 'a decision failed by the crash falls back within its group');
  t.match(fatal?.reason, /^admission: large_input: 9000 > 8000 tokens -> multi; fallback: policy actor restarting; least loaded/);
  t.equal(host.available, false);
  for (let i = 0; i < 10; i++) {
    const d = await decideAsync(host, admitted(`while down ${i}`));
    t.equal(d?.slot, multi.slot, 'while restarting: still the multi group');
    t.match(d?.reason, /^admission: .*; fallback: policy actor restarting/);
  }
  const ungrouped = await decideAsync(host, req('no group'));
  t.not(ungrouped?.slot, multi.slot, 'a request outside any group falls back to the least loaded member');
  await host.ready();
  await host.close();
  t.equal((await decideAsync(host, admitted('after close')))?.slot, multi.slot, 'closed host: within the group');

  // the group has no available member: every member is a candidate, as for policies
  table.setHealthy(multi.slot, false);
  const spilled = await decideAsync(host, admitted('group down'));
  t.ok(spilled !== null && spilled.slot !== multi.slot, 'no multi worker available -> another group');
  table.setHealthy(multi.slot, true);

  // inline host: a policy that throws falls back within the group as well
  const inline = createPolicyHost(TEST_PLUGIN_NAME, { seed: 5 }, table, undefined, { placement: 'inline' });
  inline.setWorkers(ws);
  const thrown = await decideAsync(inline, admitted('__throw__'));
  t.equal(thrown?.slot, multi.slot);
  t.match(thrown?.reason, /^admission: .*; fallback: policy error/);
  await inline.close();
});

t.test('a long text crosses into the actor in pieces: cache_aware matches it piecewise, a plugin reads it whole', async (t) => {
  const table = WorkerTable.create(8);
  const ws = addWorkers(table, 4);
  const body = 'A long shared document about routing. '.repeat(1500); // ~57k characters: over CHUNK_TEXT_ABOVE
  t.ok(body.length > CHUNK_TEXT_ABOVE);
  const host = createPolicyHost('cache_aware', { seed: 4 }, table, undefined, { placement: 'actor', actor: TEST_ACTOR });
  t.teardown(() => host.close());
  await host.ready();
  host.setWorkers(ws);
  const first = (await decideAsync(host, req(`${body} question one`))) as Decision;
  t.equal(first.scores?.['text_chars'], body.length + 13);
  const second = (await decideAsync(host, req(`${body} question two`))) as Decision;
  t.equal(second.slot, first.slot, 'the shared document is a cache hit on the same worker');
  t.equal(second.scores?.['matched_chars'], body.length + 10, 'matched up to where the questions differ');
  const snap = (await host.snapshot()) as { actor: { state: CacheAwareState } };
  t.equal(snap.actor.state.tree_size[ws[first.slot]!.url], body.length + 13 + 3, 'the tree holds both texts once');

  // a plugin reads req.text: joined on first read, equal to what the front end had
  const plugin = createPolicyHost(TEST_PLUGIN_NAME, {}, table, undefined, { actor: TEST_ACTOR });
  t.teardown(() => plugin.close());
  await plugin.ready();
  plugin.setWorkers(ws);
  const d = await decideAsync(plugin, req(`${'x'.repeat(CHUNK_TEXT_ABOVE * 3)}__len__`));
  t.equal(d?.scores?.['text_length'], CHUNK_TEXT_ABOVE * 3 + 7);
});
