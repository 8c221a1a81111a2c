/**
 * Cache-aware affinity across replicas over the in-memory bus: each "replica" is a cache_aware policy with
 * its own worker table (slots in a different order, as on separate machines) and its own AffinityRelay on
 * a shared InMemoryAffinityHub. Same path as in a router: policy -> BroadcastChannel -> relay -> bus.
 */
import t from 'tap';
import { WorkerTable } from '../../src/actors/worker-table.js';
import { createCacheAwarePolicy, type CacheAwareState } from '../../src/policies/cache-aware.js';
import { createPolicyHost, type PolicyHost } from '../../src/policies/host.js';
import { shardKeyOf } from '../../src/policies/sharded-host.js';
import type { Decision, Policy, PolicyContext, RequestFeatures, WorkerInfo } from '../../src/policies/types.js';
import { AffinityRelay, InMemoryAffinityHub, newAffinityChannel, type AffinityRelayStats } from '../../src/cluster/affinity.js';
import { Rng } from '../../src/util/rng.js';
import { decideAsync, TEST_ACTOR } from './conformance.js';

const URLS = ['http://10.0.0.1:8000', 'http://10.0.0.2:8000', 'http://10.0.0.3:8000', 'http://10.0.0.4:8000'];

/** The fleet as one replica sees it: its own table, URLs allocated in `order`. */
function fleet(order: readonly number[]): { table: WorkerTable; workers: WorkerInfo[] } {
  const table = WorkerTable.create(16);
  const workers: WorkerInfo[] = [];
  for (const i of order) {
    const ref = table.allocate({ healthy: true, nodeId: i });
    workers.push({ slot: ref.slot, generation: ref.generation, url: URLS[i]!, nodeId: i });
  }
  return { table, workers };
}

interface Replica {
  readonly name: string;
  readonly table: WorkerTable;
  readonly workers: WorkerInfo[];
  readonly policy: Policy;
  readonly relay: AffinityRelay;
  readonly ctx: PolicyContext;
  decide(text: string): Decision;
  state(): CacheAwareState;
  close(): Promise<void>;
}

function replica(hub: InMemoryAffinityHub, name: string, order: readonly number[], options: Record<string, unknown> = {}, seed = 1): Replica {
  const { table, workers } = fleet(order);
  const channel = newAffinityChannel();
  const bus = hub.bus();
  const relay = new AffinityRelay(bus, { channel, shards: 1, replicaId: name });
  const policy = createCacheAwarePolicy({ seed, ...options, affinity: { channel, blockChars: 64, ...((options['affinity'] as object | undefined) ?? {}) } });
  policy.onWorkersChanged?.(workers);
  const ctx: PolicyContext = { table, workers, rng: new Rng(seed), now: () => performance.timeOrigin + performance.now() };
  let n = 0;
  return {
    name,
    table,
    workers,
    policy,
    relay,
    ctx,
    decide(text: string): Decision {
      const req: RequestFeatures = { requestId: `${name}-${n++}`, route: 'generate', text, inputTokens: text.length >> 2, maxNewTokens: 8, stream: false };
      return policy.select(req, ctx) as Decision;
    },
    state: () => policy.snapshot?.() as CacheAwareState,
    async close(): Promise<void> {
      await policy.close?.();
      relay.close();
      await bus.close();
    },
  };
}

async function until(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function urlOf(d: Decision): string {
  return d.url;
}

const SYSTEM = (i: number): string => `System prompt ${i}: you answer questions about manifest ${i} in the tone of a ship's clerk. `.repeat(6);
/** A question longer than a block, so that it adds blocks of its own beyond the shared prefix. */
const QUESTION = (i: number): string => ` question ${i}: where is crate ${i} stowed, and who signed for it on arrival at the port?`;

t.test('a prefix routed by replica A is found by replica B and routed to the same worker', async (t) => {
  const hub = new InMemoryAffinityHub();
  const a = replica(hub, 'A', [0, 1, 2, 3]);
  const b = replica(hub, 'B', [3, 1, 0, 2], {}, 2); // other slots, other seed
  t.teardown(async () => {
    await a.close();
    await b.close();
  });
  const firstOnA: string[] = [];
  for (let g = 0; g < 8; g++) firstOnA.push(urlOf(a.decide(`${SYSTEM(g)}${QUESTION(0)}`)));
  await until('B received A’s records', () => (b.state().affinity?.received_records ?? 0) >= 8);
  for (let g = 0; g < 8; g++) {
    const d = b.decide(`${SYSTEM(g)}${QUESTION(1)}`);
    t.equal(d.url, firstOnA[g], `group ${g}: B follows A to ${firstOnA[g]}`);
    t.equal(d.scores?.['cache_hit'], 1);
    t.ok((d.scores?.['remote_chars'] ?? 0) >= SYSTEM(g).length - 64, 'the match came from the remote index');
    t.match(d.reason, /shared by another replica/);
  }
  const sa = a.state().affinity!;
  const sb = b.state().affinity!;
  t.equal(sa.published_records, 8);
  t.equal(sb.remote_hits, 8);
  t.equal(sb.dropped_records, 0);
  // B published only what A had not: the question blocks beyond the shared prefix
  t.ok(sb.published_blocks < sa.published_blocks, `B sent ${sb.published_blocks} blocks, A ${sa.published_blocks}`);
  const ra: AffinityRelayStats = a.relay.stats();
  t.ok(ra.published_batches >= 1 && ra.published_batches <= 8, `A's 8 decisions went out in ${ra.published_batches} batch(es)`);
  // and back: A knows where B's questions went; its own tree already knew the prefixes
  await until('A received B’s records', () => (a.state().affinity?.received_records ?? 0) >= 1);
});

t.test('without sharing, replica B places the prefixes on its own', async (t) => {
  // the control for the test above: same requests, B's policy has no affinity option
  const hub = new InMemoryAffinityHub();
  const a = replica(hub, 'A', [0, 1, 2, 3]);
  const { table, workers } = fleet([3, 1, 0, 2]);
  const solo = createCacheAwarePolicy({ seed: 2 });
  solo.onWorkersChanged?.(workers);
  t.teardown(() => a.close());
  const ctx: PolicyContext = { table, workers, rng: new Rng(2), now: () => performance.now() };
  let same = 0;
  for (let g = 0; g < 8; g++) {
    const onA = a.decide(`${SYSTEM(g)} question 0`).url;
    const onB = (solo.select({ requestId: `s${g}`, route: 'generate', text: `${SYSTEM(g)} question 1`, inputTokens: 10, maxNewTokens: 8, stream: false }, ctx) as Decision).url;
    if (onA === onB) same++;
  }
  t.ok(same < 8, `only ${same} of 8 groups landed where A put them`);
});

t.test('load balance rules still apply to a remote match', async (t) => {
  const hub = new InMemoryAffinityHub();
  const a = replica(hub, 'A', [0, 1, 2, 3]);
  const b = replica(hub, 'B', [2, 3, 0, 1], {}, 5);
  t.teardown(async () => {
    await a.close();
    await b.close();
  });
  const target = a.decide(`${SYSTEM(42)} first`).url;
  await until('B received', () => (b.state().affinity?.received_records ?? 0) >= 1);
  // On B, the worker A chose is far busier than the others: imbalanced (gap > 64 and > 1.5x).
  const busy = b.workers.find((w) => w.url === target)!;
  for (let i = 0; i < 100; i++) b.table.acquire(busy, 1);
  const d = b.decide(`${SYSTEM(42)} second`);
  t.not(d.url, target, 'the overloaded worker is not chosen despite the shared prefix');
  t.equal(d.scores?.['imbalanced'], 1);
  // once the load is gone, the remote match decides again
  for (let i = 0; i < 100; i++) b.table.releaseLoad(busy, 1, true);
  const again = b.decide(`${SYSTEM(42)} third`);
  t.ok(again.url === target || again.url === d.url, 'balanced: a worker holding the prefix (A’s, or B’s own from the last decision)');
});

t.test('eviction bounds hold on the receiving side', async (t) => {
  const hub = new InMemoryAffinityHub();
  const a = replica(hub, 'A', [0, 1, 2, 3]);
  const b = replica(hub, 'B', [0, 1, 2, 3], { affinity: { maxEntries: 256 } });
  t.teardown(async () => {
    await a.close();
    await b.close();
  });
  const rng = new Rng(9);
  for (let i = 0; i < 200; i++) {
    let s = '';
    for (let j = 0; j < 64 * 10; j++) s += String.fromCharCode(97 + rng.int(0, 25));
    a.decide(s);
  }
  await until('B received all 200 records', () => (b.state().affinity?.received_records ?? 0) >= 200);
  const remote = b.state().affinity!.remote;
  t.equal(remote.entries, 256, '2,000 blocks received, 256 kept');
  t.equal(remote.max_entries, 256);
  t.equal(remote.evicted, 2000 - 256);
  t.ok(remote.slots <= 512, 'the table never grew past twice the bound');
});

t.test('bus down: batches are lost; when it returns, a summary brings the peer up to date', async (t) => {
  const hub = new InMemoryAffinityHub();
  const a = replica(hub, 'A', [0, 1, 2, 3]);
  const b = replica(hub, 'B', [1, 0, 3, 2], {}, 3);
  t.teardown(async () => {
    await a.close();
    await b.close();
  });
  await until('both relays saw the bus up', () => a.relay.stats().resyncs === 1 && b.relay.stats().resyncs === 1);
  // let the start-up summaries (rate-limited to one a second) pass before the outage
  await new Promise((r) => setTimeout(r, 50));
  hub.setUp(false);
  const placed: string[] = [];
  for (let g = 0; g < 6; g++) placed.push(a.decide(`${SYSTEM(100 + g)} q`).url);
  await until('A tried to publish', () => a.relay.stats().unpublished_batches >= 1);
  t.equal(b.state().affinity?.received_records ?? 0, 0, 'nothing reached B while the bus was down');
  hub.setUp(true);
  await until('B got the summary', () => (b.state().affinity?.received_records ?? 0) >= 1, 5000);
  for (let g = 0; g < 6; g++) t.equal(b.decide(`${SYSTEM(100 + g)} q2`).url, placed[g], `group ${g} found after resync`);
  t.ok(a.state().affinity!.summaries >= 1);
  t.ok(a.relay.stats().summary_batches >= 1);
});

t.test('a replica that joins late learns recent prefixes from the others (hello -> summaries)', async (t) => {
  const hub = new InMemoryAffinityHub();
  const a = replica(hub, 'A', [0, 1, 2, 3]);
  t.teardown(() => a.close());
  const placed: string[] = [];
  for (let g = 0; g < 4; g++) placed.push(a.decide(`${SYSTEM(200 + g)} q`).url);
  await new Promise((r) => setTimeout(r, 20));
  const c = replica(hub, 'C', [3, 2, 1, 0], {}, 4);
  t.teardown(() => c.close());
  await until('C learned from A', () => (c.state().affinity?.received_records ?? 0) >= 1, 5000);
  for (let g = 0; g < 4; g++) t.equal(c.decide(`${SYSTEM(200 + g)} q2`).url, placed[g]);
});

t.test('records for unknown workers or another block size are dropped, never thrown', async (t) => {
  const hub = new InMemoryAffinityHub();
  const a = replica(hub, 'A', [0, 1, 2, 3]);
  const b = replica(hub, 'B', [0, 1, 2, 3], { affinity: { blockChars: 128 } });
  t.teardown(async () => {
    await a.close();
    await b.close();
  });
  a.decide(`${SYSTEM(1)} x`);
  await until('B saw the batch', () => b.relay.stats().received_batches >= 1);
  await new Promise((r) => setTimeout(r, 20));
  t.equal(b.state().affinity?.received_records, 0);
  t.ok((b.state().affinity?.dropped_records ?? 0) >= 1, 'block size 64 vs 128: dropped');
  // garbage on the bus
  const bus = hub.bus();
  bus.publish({ k: 'batch', o: 'Z', batch: { v: 1, b: 128, u: ['http://nowhere:1'], r: new Int32Array([0, 5, 1, 1, 2]) } });
  bus.publish({ k: 'batch', o: 'Z', batch: { v: 1, b: 128, u: [], r: new Int32Array([0, 5, 99, 1]) } });
  bus.publish({ k: 'batch', o: 'Z', batch: null } as never);
  await new Promise((r) => setTimeout(r, 30));
  t.ok((b.state().affinity?.dropped_records ?? 0) >= 3);
  t.equal(b.decide(`${SYSTEM(1)} y`).scores?.['remote_chars'], 0);
  await bus.close();
});

t.test('with policy shards, each record reaches the shard that owns its first block', async (t) => {
  const hub = new InMemoryAffinityHub();
  const a = replica(hub, 'A', [0, 1, 2, 3]);
  const { table, workers } = fleet([2, 0, 3, 1]);
  const channel = newAffinityChannel();
  const bus = hub.bus();
  const relay = new AffinityRelay(bus, { channel, shards: 2, replicaId: 'S' });
  const shards = [0, 1].map((i) => createCacheAwarePolicy({ seed: 7 + i, shardIndex: i, shardCount: 2, affinity: { channel, blockChars: 64 } }));
  for (const s of shards) s.onWorkersChanged?.(workers);
  t.teardown(async () => {
    await a.close();
    for (const s of shards) await s.close?.();
    relay.close();
    await bus.close();
  });
  const texts = Array.from({ length: 12 }, (_, g) => `${SYSTEM(300 + g)} q`);
  const placed = texts.map((x) => a.decide(x).url);
  const owners = texts.map((x) => shardKeyOf(x) % 2);
  t.ok(owners.includes(0) && owners.includes(1), `the texts cover both shards (${owners.join('')})`);
  const received = (): number[] => shards.map((s) => (s.snapshot?.() as CacheAwareState).affinity?.received_records ?? 0);
  const expected = [owners.filter((o) => o === 0).length, owners.filter((o) => o === 1).length];
  // (A's start-up summary, answering S's hello, may deliver the same records a second time)
  await until('both shards received theirs', () => received()[0]! >= expected[0]! && received()[1]! >= expected[1]!);
  const ctx: PolicyContext = { table, workers, rng: new Rng(1), now: () => performance.timeOrigin + performance.now() };
  texts.forEach((x, g) => {
    const ask = (shard: number): Decision =>
      shards[shard]!.select({ requestId: `s${g}-${shard}`, route: 'generate', text: `${x} again`, inputTokens: 10, maxNewTokens: 8, stream: false }, ctx) as Decision;
    const other = ask(1 - owners[g]!);
    t.equal(other.scores?.['remote_chars'], 0, `text ${g}: the other shard knows nothing of it`);
    const d = ask(owners[g]!);
    t.equal(d.url, placed[g], `text ${g} on shard ${owners[g]}`);
  });
});

t.test('in policy actor threads: the same sharing through the actors’ BroadcastChannels', async (t) => {
  const hub = new InMemoryAffinityHub();
  const hosts: PolicyHost[] = [];
  const relays: AffinityRelay[] = [];
  const buses = [hub.bus(), hub.bus()];
  const tables: WorkerTable[] = [];
  for (const [i, order] of [
    [0, 1, 2, 3],
    [3, 2, 1, 0],
  ].entries()) {
    const { table, workers } = fleet(order);
    const channel = newAffinityChannel();
    relays.push(new AffinityRelay(buses[i]!, { channel, shards: 1, replicaId: `R${i}` }));
    const host = createPolicyHost('cache_aware', { seed: 10 + i, affinity: { channel, blockChars: 64 } }, table, undefined, { placement: 'actor', actor: TEST_ACTOR });
    host.setWorkers(workers);
    await host.ready();
    hosts.push(host);
    tables.push(table);
  }
  t.teardown(async () => {
    for (const h of hosts) await h.close();
    for (const r of relays) r.close();
    for (const b of buses) await b.close();
  });
  const req = (text: string, id: string): RequestFeatures => ({ requestId: id, route: 'generate', text, inputTokens: 10, maxNewTokens: 8, stream: false });
  const placed: string[] = [];
  for (let g = 0; g < 6; g++) placed.push((await decideAsync(hosts[0]!, req(`${SYSTEM(400 + g)} q`, `a${g}`)))!.url);
  await until('replica 1 received', () => relays[1]!.stats().received_records >= 6);
  // the relay got them; give the actor a moment to apply them (it reads its channel between batches)
  await new Promise((r) => setTimeout(r, 50));
  for (let g = 0; g < 6; g++) {
    const d = (await decideAsync(hosts[1]!, req(`${SYSTEM(400 + g)} q2`, `b${g}`)))!;
    t.equal(d.url, placed[g], `group ${g}`);
  }
  const snap = (await hosts[1]!.snapshot()) as { actor: { state: CacheAwareState } };
  t.equal(snap.actor.state.affinity?.remote_hits, 6);
});
