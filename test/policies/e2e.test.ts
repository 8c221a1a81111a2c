/**
 * The policies end to end: a real router (startRouter) in front of simulated SGLang workers (time-scaled),
 * real sockets on port 0. Routing is read back from X-SGLang-Worker and the completion records.
 */
import t, { type Test } from 'tap';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSimFleetInThread, type SimFleet } from '../../src/sim/fleet.js';
import type { CompletionRecord } from '../../src/proxy/completion.js';
import type { StartedRouter } from '../../src/router.js';
import { startTestRouter } from '../helpers/router.js';
import { post } from '../helpers/client.js';
import { EXAMPLE_PLUGIN_FILE } from './conformance.js';

t.setTimeout(600_000);

interface Setup {
  fleet: SimFleet;
  router: StartedRouter;
  records: CompletionRecord[];
}

async function setup(t: Test, count: number, args: string[], sim: Parameters<typeof startSimFleetInThread>[0] = {}): Promise<Setup> {
  const fleet = await startSimFleetInThread({ count, timeScale: 0.02, seed: 7, ...sim });
  const records: CompletionRecord[] = [];
  let router: StartedRouter;
  try {
    router = await startTestRouter(['--worker-urls', ...fleet.urls, '--seed', '7', ...args], { sinks: [{ record: (r) => records.push(r) }] });
  } catch (err) {
    await fleet.close();
    throw err;
  }
  t.teardown(async () => {
    await router.close(0);
    await fleet.close();
  });
  await router.ctx.policy.ready();
  return { fleet, router, records };
}

function generate(url: string, text: string, maxNewTokens = 4, headers: Record<string, string> = {}): Promise<{ status: number; worker: string; id: string; body: string }> {
  return post(`${url}/generate`, { text, sampling_params: { max_new_tokens: maxNewTokens, ignore_eos: true } }, headers).then((r) => ({
    status: r.status,
    worker: String(r.headers['x-sglang-worker'] ?? ''),
    id: String(r.headers['x-request-id'] ?? ''),
    body: r.body,
  }));
}

const FAMILIES = [
  'You are a meticulous legal assistant. Read the contract below and answer precisely. ',
  'Eres un asistente de cocina. Responde con recetas cortas y claras para cada pregunta. ',
  'System: you translate English technical documentation into plain German, keeping code. ',
].map((p) => p.repeat(6));

for (const shards of [1, 2]) {
  t.test(`cache_aware${shards > 1 ? ` over ${shards} shards` : ''}: each prefix family sticks to one worker; the sim reports cache hits`, async (t) => {
    const { router, records } = await setup(t, 4, ['--policy', 'cache_aware', '--policy-shards', String(shards)]);
    t.equal(router.ctx.policy.placement, 'actor');
    const byFamily = FAMILIES.map(() => new Set<string>());
    for (let round = 0; round < 6; round++) {
      const rs = await Promise.all(FAMILIES.map((f, i) => generate(router.url, `${f} Question ${round} about part ${i}.`)));
      rs.forEach((r, i) => {
        t.equal(r.status, 200);
        byFamily[i]!.add(r.worker);
      });
    }
    byFamily.forEach((s, i) => t.equal(s.size, 1, `family ${i} went to one worker (${[...s].join(', ')})`));
    await new Promise((r) => setTimeout(r, 50));
    const later = records.filter((r) => r.scores?.['cache_hit'] === 1);
    t.ok(later.length >= 15, `${later.length} of 18 decisions were cache hits`);
    t.ok(later.every((r) => r.reason.startsWith('cache_hit: match ')), 'reasons say why');
    t.ok(later.filter((r) => r.cachedTokens > 0).length >= 12, 'and the workers reused their prefix cache');
    const snap = (await router.ctx.policy.snapshot()) as { state?: { tree_size: Record<string, number>; cache_hits: number }; actor?: { state: { tree_size: Record<string, number>; cache_hits: number } } };
    const state = snap.state ?? snap.actor?.state;
    t.ok(state !== undefined && Object.values(state.tree_size).some((n) => n > 0), 'tree sizes per worker in the snapshot');
    t.equal(state?.cache_hits, later.length);
  });
}

t.test('shortest_queue: a slow worker builds a queue and stops getting traffic', async (t) => {
  // worker 0 is ten times slower: its requests stay in flight longer
  const { router, fleet } = await setup(t, 3, ['--policy', 'shortest_queue'], { slowFactor: [10, 1, 1] });
  const counts = new Map<string, number>();
  let inFlight = 0;
  let sent = 0;
  await new Promise<void>((resolve, reject) => {
    const next = (): void => {
      if (sent >= 90) {
        if (inFlight === 0) resolve();
        return;
      }
      sent++;
      inFlight++;
      generate(router.url, `request ${sent} ${'x'.repeat(200)}`, 24).then((r) => {
        inFlight--;
        if (r.status !== 200) reject(new Error(`status ${r.status}`));
        counts.set(r.worker, (counts.get(r.worker) ?? 0) + 1);
        next();
      }, reject);
    };
    for (let i = 0; i < 9; i++) next();
  });
  const slow = counts.get(fleet.urls[0]!) ?? 0;
  t.ok(slow < 25, `the slow worker got ${slow} of 90 (a fair share would be 30): ${JSON.stringify(Object.fromEntries(counts))}`);
  t.equal([...counts.values()].reduce((a, b) => a + b, 0), 90);
});

t.test('marginal_utility through the router: the decisions CSV has real ids and numbers in every gradient column', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mu-e2e-'));
  const csv = join(dir, 'decisions.csv');
  const { router } = await setup(t, 2, ['--policy', 'marginal_utility', '--decisions-csv', csv]);
  const ids: string[] = [];
  for (let wave = 0; wave < 12; wave++) {
    const rs = await Promise.all([0, 1, 2, 3].map((i) => generate(router.url, `wave ${wave} item ${i}`, 8 + wave, { 'x-request-id': `mu-${wave}-${i}` })));
    for (const r of rs) {
      t.equal(r.status, 200);
      ids.push(r.id);
    }
  }
  await router.close(1000); // flushes the CSV from the policy actor
  const lines = readFileSync(csv, 'utf8').trimEnd().split('\n');
  t.equal(lines[0], 'timestamp,worker_url,request_id,throughput_gradient,latency_gradient,score,outstanding_requests,avg_throughput,avg_latency,window_size,selection_reason');
  const rows = lines.slice(1).map((l) => l.split(','));
  t.equal(rows.length, 96, '48 decisions and 48 completions');
  const seenIds = new Set(rows.map((r) => r[2]));
  t.same([...seenIds].sort(), [...ids].sort(), 'every row names a real request id, and every request is there');
  for (const r of rows) for (const c of [3, 4, 5]) if (r[c] === '' || !Number.isFinite(Number(r[c]))) t.fail(`not a number: ${r.join(',')}`);
  t.ok(rows.some((r) => r[10] === 'gradient_based' && Number(r[3]) !== 0), 'gradients recorded once history exists');
  t.ok(rows.some((r) => r[10] === 'completion_record' && Number(r[7]) > 0), 'completions carry throughput');
});

t.test('--policy-module: the shipped example plugin routes traffic through a real router', async (t) => {
  const { router, records } = await setup(t, 3, ['--policy-module', EXAMPLE_PLUGIN_FILE]);
  t.equal(router.ctx.policy.name, 'throughput_latency');
  t.equal(router.ctx.policy.placement, 'actor', 'the plugin runs in a policy actor');
  const seen = new Set<string>();
  for (let i = 0; i < 12; i++) {
    const r = await generate(router.url, `plugin request ${i}`, 6);
    t.equal(r.status, 200);
    seen.add(r.worker);
  }
  t.equal(seen.size, 3, 'every worker was measured');
  await new Promise((r) => setTimeout(r, 50));
  t.ok(records.every((r) => r.policy === 'throughput_latency' && r.reason.startsWith('throughput_latency: score ')), 'decided by the plugin, not a fallback');
  await t.rejects(startTestRouter(['--worker-urls', 'http://127.0.0.1:9', '--policy', 'random', '--policy-module', EXAMPLE_PLUGIN_FILE]), /conflicts with --policy-module/);
});

t.test('size-aware admission: large inputs go to the multi-GPU worker, the rest to single ones', async (t) => {
  const fleet = await startSimFleetInThread({ count: 3, timeScale: 0.02, seed: 3 });
  const multi = fleet.urls[2]!;
  const records: CompletionRecord[] = [];
  const router = await startTestRouter(['--worker-urls', ...fleet.urls, '--policy', 'round_robin', '--worker-groups', `${multi}=multi`], { sinks: [{ record: (r) => records.push(r) }] });
  t.teardown(async () => {
    await router.close(0);
    await fleet.close();
  });
  const seen: [number, string][] = [];
  for (const tokens of [100, 9000, 200, 12_000, 300, 400]) {
    const r = await generate(router.url, 'word '.repeat(Math.ceil((tokens * 4) / 5)), 2);
    t.equal(r.status, 200);
    seen.push([tokens, r.worker]);
  }
  for (const [tokens, worker] of seen) {
    if (tokens > 8000) t.equal(worker, multi, `${tokens} tokens -> multi`);
    else t.not(worker, multi, `${tokens} tokens -> single`);
  }
  await new Promise((r) => setTimeout(r, 50));
  const large = records.find((r) => r.inputTokens > 8000)!;
  t.match(large.reason, /^admission: large_input: \d+ > 8000 tokens -> multi; round_robin: counter \d+ mod 1$/);
  const counts = router.ctx.admission!.snapshot().counts;
  t.same(counts.actions, { single: 4, multi: 2 });
  t.equal(counts.by_action['multi']?.['large_input'], 2);
});

t.test('power_of_two and random through the router: every request answered by some worker', async (t) => {
  for (const policy of ['power_of_two', 'random']) {
    const { router } = await setup(t, 3, ['--policy', policy]);
    const rs = await Promise.all(Array.from({ length: 20 }, (_, i) => generate(router.url, `p ${i}`)));
    t.ok(rs.every((r) => r.status === 200 && r.worker !== ''), `${policy}: all 200`);
  }
});

t.test('startRouter resolves once the policy actor decides: the first request is not a fallback', async (t) => {
  const fleet = await startSimFleetInThread({ count: 2, timeScale: 0.02, seed: 7 });
  const records: CompletionRecord[] = [];
  const router = await startTestRouter(['--worker-urls', ...fleet.urls, '--policy', 'cache_aware', '--policy-shards', '2'], { sinks: [{ record: (r) => records.push(r) }] });
  t.teardown(async () => {
    await router.close(0);
    await fleet.close();
  });
  const shards = (router.ctx.policy as unknown as { shards: readonly { available: boolean }[] }).shards;
  t.same(shards.map((s) => s.available), [true, true], 'every policy actor is up when startRouter resolves');
  const r = await generate(router.url, 'the very first request');
  t.equal(r.status, 200);
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.match(records[0]?.reason, /^cache_(hit|miss): /, `decided by the policy: ${records[0]?.reason}`);
});
