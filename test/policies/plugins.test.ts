/** Plugins: the route() adapter's views and answers, --policy-module loading, and the shipped example. */
import t from 'tap';
import { fileURLToPath } from 'node:url';
import { WorkerTable } from '../../src/actors/worker-table.js';
import { monotonicNow } from '../../src/policies/common.js';
import { createPolicyHost } from '../../src/policies/host.js';
import { createPluginPolicy } from '../../src/policies/plugin.js';
import { createPolicy, loadPolicyModule, policySpec, unregisterPolicy } from '../../src/policies/registry.js';
import { shardOf, SHARD_BLOCK_CHARS } from '../../src/policies/sharded-host.js';
import { SwitchyardError } from '../../src/errors.js';
import type { CompletionFeedback, Decision, PolicyContext, RequestFeatures, WorkerInfo } from '../../src/policies/types.js';
import { Rng } from '../../src/util/rng.js';
import { addWorkers, decideAsync, EXAMPLE_PLUGIN_FILE, TEST_ACTOR } from './conformance.js';
import { offered } from './fixtures/route-plugin.js';

const ROUTE_PLUGIN = fileURLToPath(new URL('./fixtures/route-plugin.js', import.meta.url));

function req(text: string): RequestFeatures {
  return { requestId: 'r', route: 'generate', text, inputTokens: 1, maxNewTokens: 8, stream: false };
}

function ctxFor(table: WorkerTable, workers: readonly WorkerInfo[]): PolicyContext {
  return { table, workers, rng: new Rng(1), now: monotonicNow };
}

function fb(w: WorkerInfo, latencyMs: number, tokens: number, ttftMs: number): CompletionFeedback {
  return { requestId: 'f', url: w.url, slot: w.slot, success: true, sentAt: 1000, firstTokenAt: 1000 + ttftMs, finishedAt: 1000 + latencyMs, inputTokens: 5, outputTokens: tokens, cachedTokens: 0 };
}

t.test('route() plugins see available workers with loads, health and recent latency/throughput', async (t) => {
  const name = await loadPolicyModule(ROUTE_PLUGIN);
  t.teardown(() => unregisterPolicy(name));
  t.equal(name, 'test_route', 'the module names itself');
  t.equal(await loadPolicyModule(ROUTE_PLUGIN), name, 'loading it again is a no-op');
  t.equal(policySpec(name).module?.startsWith('file:'), true);
  const table = WorkerTable.create(8);
  const ws = addWorkers(table, 3);
  const p = createPolicy(name);
  p.onWorkersChanged?.(ws);
  table.setHealthy(ws[2]!.slot, false);
  for (let i = 0; i < 3; i++) table.acquire(ws[0]!, 100);
  table.setReported(ws[1]!.slot, { queue: 4, running: 2, tokens: 777, tokenUsage: 0.5 }, Math.floor(Date.now() / 1000));
  p.observe?.(fb(ws[0]!, 2000, 100, 200));
  p.observe?.(fb(ws[0]!, 1000, 100, 100));
  const ctx = ctxFor(table, ws);
  const d = p.select(req('hi'), ctx) as Decision;
  const views = offered.at(-1)!;
  t.same(views.map((v) => v.url), [ws[0]!.url, ws[1]!.url], 'only available workers are offered');
  const [v0, v1] = views as [(typeof views)[number], (typeof views)[number]];
  t.same(
    { inFlight: v0.inFlight, inFlightTokens: v0.inFlightTokens, queueDepth: v0.queueDepth, samples: v0.samples, latencyMs: v0.latencyMs, ttftMs: v0.ttftMs, throughput: v0.throughput, healthy: v0.healthy },
    { inFlight: 3, inFlightTokens: 300, queueDepth: 3, samples: 2, latencyMs: 1500, ttftMs: 150, throughput: 75, healthy: true },
  );
  t.same({ waiting: v1.waiting, running: v1.running, queueDepth: v1.queueDepth, reportedTokens: v1.reportedTokens, tokenUsage: v1.tokenUsage, samples: v1.samples }, { waiting: 4, running: 2, queueDepth: 6, reportedTokens: 777, tokenUsage: 0.5, samples: 0 });
  t.equal(d.slot, ws[0]!.slot, 'queue depth 3 < 6');
  t.equal(d.reason, 'test_route: lowest queue depth 3 at a time');
  t.same(d.scores, { depth: 3 }, 'non-finite scores are dropped');
  t.equal(p.select(req('__bare__'), ctx)?.reason, `test_route: chose ${ws[0]!.url} (queue depth 3)`, 'a bare view is a choice too');
  t.match(p.select(req('__null__'), ctx)?.reason, /^test_route: no preference; least loaded http/, 'null: the least loaded of those offered');
  t.throws(() => p.select(req('__foreign__'), ctx), /not one of the workers it was offered/);
  t.same(p.snapshot?.(), { plugin: 'test_route', members: 3, window: 20, skipped_feedback: 0 });
  for (const w of ws) table.setHealthy(w.slot, false);
  const before = offered.length;
  t.equal(p.select(req('x'), ctx), null, 'nothing available: null without asking the plugin');
  t.equal(offered.length, before);
  t.throws(() => createPluginPolicy('p', 5 as never), SwitchyardError);
  t.throws(() => createPluginPolicy('p', () => null, { pluginWindow: 1 }), SwitchyardError);
});

t.test('a plugin that throws or answers nonsense falls back in its actor; the router keeps routing', async (t) => {
  const name = await loadPolicyModule(ROUTE_PLUGIN);
  t.teardown(() => unregisterPolicy(name));
  const table = WorkerTable.create(8);
  const ws = addWorkers(table, 2);
  const host = createPolicyHost(name, { seed: 1 }, table, undefined, { placement: 'actor', actor: TEST_ACTOR });
  t.teardown(() => host.close());
  await host.ready();
  host.setWorkers(ws);
  t.match((await decideAsync(host, req('ok')))?.reason, /^test_route: /);
  t.match((await decideAsync(host, req('__throw__')))?.reason, /^fallback: policy error: plugin refused/);
  t.match((await decideAsync(host, req('__foreign__')))?.reason, /^fallback: policy error: plugin test_route returned something/);
});

t.test('--policy-module loading: names, errors', async (t) => {
  const name = await loadPolicyModule(EXAMPLE_PLUGIN_FILE);
  t.equal(name, 'throughput_latency');
  const fixture = fileURLToPath(new URL('./fixtures/test-plugin.js', import.meta.url));
  const factoryName = await loadPolicyModule(fixture);
  t.equal(factoryName, 'test_stateful', 'a factory module is named by the policy it builds');
  await t.rejects(loadPolicyModule('/nonexistent/x.js'), /cannot load policy module/);
  await t.rejects(loadPolicyModule('relative.js'), /absolute path/);
  await t.rejects(loadPolicyModule(fileURLToPath(new URL('./fixtures/not-a-plugin.js', import.meta.url))), /exports no factory/);
});

t.test('the example plugin (seed 004) measures every worker, then prefers throughput / latency', async (t) => {
  await loadPolicyModule(EXAMPLE_PLUGIN_FILE);
  const table = WorkerTable.create(8);
  const ws = addWorkers(table, 3);
  const p = createPolicy('throughput_latency');
  p.onWorkersChanged?.(ws);
  const ctx = ctxFor(table, ws);
  const first = new Set<number>();
  // unmeasured workers first: each decision is fed back before the next
  for (let i = 0; i < 3; i++) {
    const d = p.select(req('x'), ctx) as Decision;
    first.add(d.slot);
    const slow = d.slot === ws[2]!.slot;
    p.observe?.(fb(ws.find((w) => w.slot === d.slot)!, slow ? 4000 : 1000, 100, 50));
  }
  t.equal(first.size, 3, 'every worker measured once');
  // worker 2 is slow (25 tok/s over 4 s): never preferred while the others are idle
  for (let i = 0; i < 20; i++) t.not(p.select(req('x'), ctx)?.slot, ws[2]!.slot);
  t.match(p.select(req('x'), ctx)?.reason, /^throughput_latency: score \S+ on http/);
});

t.test('shards: the first block picks the shard', async (t) => {
  const block = 'b'.repeat(SHARD_BLOCK_CHARS);
  for (let n = 2; n <= 8; n++) {
    const s = shardOf(block + 'one', n);
    t.equal(shardOf(block + 'two, a different tail', n), s, `same first ${SHARD_BLOCK_CHARS} characters, same shard of ${n}`);
    t.ok(s >= 0 && s < n);
  }
  t.equal(shardOf('anything', 1), 0);
  const counts = new Array<number>(4).fill(0);
  for (let i = 0; i < 4000; i++) counts[shardOf(`prefix ${i} of a request`, 4)]!++;
  for (const c of counts) t.ok(c > 800 && c < 1200, `spread over shards: ${counts.join(', ')}`);
  t.throws(() => createPolicyHost('cache_aware', {}, WorkerTable.create(1), undefined, { shards: 0 }), /policy shards must be an integer/);
  t.throws(() => createPolicyHost('cache_aware', {}, WorkerTable.create(1), undefined, { shards: 65 }), /policy shards must be an integer/);
});
