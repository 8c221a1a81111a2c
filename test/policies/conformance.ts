/**
 * The policy conformance suite: every policy (built-in or plugin), hosted inline or in an actor, must pass
 * it. conformance.test.ts runs it for every registered policy both ways; a plugin's own tests call
 * `runConformance(t, name, factory)` the same way.
 *
 * What it holds a policy to:
 * - it chooses only available workers (active, healthy, breaker not open, generation current);
 * - it returns null when none is available;
 * - a worker removed in the middle of a stream of decisions is never chosen by decisions asked after
 *   the removal (including when its slot is reused at once by a new worker);
 * - it works for 1 to 256 workers;
 * - it is deterministic under a seed: same seed, same inputs -> same decisions;
 * - decision fields are well-formed (slot/generation/url match the membership, reason non-empty,
 *   scores finite numbers);
 * - a request admitted to a worker group (size-aware admission) goes to a member of that group while one
 *   is available (to any member otherwise), and its reason starts with admission's.
 */
import type { Test } from 'tap';
import { fileURLToPath } from 'node:url';
import { createPolicyHost, type PolicyHostOptions } from '../../src/policies/host.js';
import { isPolicyName, loadPolicyModule, policyNames, registerPolicyModule } from '../../src/policies/registry.js';
import { TEST_PLUGIN_NAME } from './fixtures/test-plugin.js';
import { BreakerState, Field, SlotState, WorkerTable } from '../../src/actors/worker-table.js';
import type { PolicyHost } from '../../src/policies/host.js';
import type { ActorTuning } from '../../src/actors/actor.js';
import type { Decision, RequestFeatures, WorkerInfo } from '../../src/policies/types.js';
import { Rng } from '../../src/util/rng.js';

/** Builds the host under test on a table; `seed` must drive all of its randomness. */
export type HostFactory = (table: WorkerTable, seed: number) => PolicyHost | Promise<PolicyHost>;

/** Actor tuning for tests: threads would otherwise inherit tap's --import loaders and start slowly. */
export const TEST_ACTOR: ActorTuning = { execArgv: ['--enable-source-maps'] };

export function decideAsync(host: PolicyHost, req: RequestFeatures): Promise<Decision | null> {
  return new Promise((resolve, reject) => {
    host.decide(req, (err, d) => (err === null ? resolve(d) : reject(err)));
  });
}

/** Allocate n healthy workers and return their membership entries. */
export function addWorkers(table: WorkerTable, n: number, firstPort = 30000): WorkerInfo[] {
  const out: WorkerInfo[] = [];
  for (let i = 0; i < n; i++) {
    const ref = table.allocate({ healthy: true, nodeId: i });
    out.push({ slot: ref.slot, generation: ref.generation, url: `http://127.0.0.1:${firstPort + ref.slot}`, nodeId: i });
  }
  return out;
}

const PREFIXES = ['You are a helpful assistant. ', 'Translate to French: ', 'Summarize the following text: ', 'def fib(n):', ''];

/** Deterministic requests with shared prefixes (so prefix-aware policies see realistic text). */
export function makeRequest(i: number, rng: Rng): RequestFeatures {
  const prefix = PREFIXES[rng.int(0, PREFIXES.length - 1)] as string;
  const text = `${prefix}question ${rng.int(0, 50)} about item ${i}`;
  return { requestId: `req-${i}`, route: 'generate', text, inputTokens: Math.ceil(text.length / 4), maxNewTokens: 64, stream: i % 2 === 0 };
}

/** Checks one decision against the membership; returns the member it names. */
function checkWellFormed(t: Test, d: Decision, members: readonly WorkerInfo[], what: string): WorkerInfo | undefined {
  const m = members.find((w) => w.slot === d.slot && w.generation === d.generation);
  if (m === undefined) {
    t.fail(`${what}: decision names slot ${d.slot} generation ${d.generation}, not a member`);
    return undefined;
  }
  if (d.url !== m.url) t.fail(`${what}: url ${d.url} does not match the member's ${m.url}`);
  if (typeof d.reason !== 'string' || d.reason.length === 0) t.fail(`${what}: empty reason`);
  if (d.scores !== undefined) {
    for (const [k, v] of Object.entries(d.scores)) {
      if (typeof v !== 'number' || !Number.isFinite(v)) t.fail(`${what}: score ${k} is not a finite number (${String(v)})`);
    }
  }
  return m;
}

/**
 * Run decisions `count` at a time without waiting in between (so actor hosts batch them), counting load
 * on the chosen workers and releasing some of it, deterministically from `rng`, so load-aware policies see
 * changing counters.
 */
async function stream(
  host: PolicyHost,
  table: WorkerTable,
  rng: Rng,
  n: number,
  wave: number,
  onDecision: (d: Decision | null, i: number) => void,
): Promise<void> {
  const held: Decision[] = [];
  for (let i = 0; i < n; i += wave) {
    const batch: Promise<Decision | null>[] = [];
    for (let j = i; j < Math.min(n, i + wave); j++) batch.push(decideAsync(host, makeRequest(j, rng)));
    const ds = await Promise.all(batch);
    ds.forEach((d, k) => {
      onDecision(d, i + k);
      if (d !== null && table.acquire(d, 10)) held.push(d);
    });
    while (held.length > 0 && rng.next() < 0.6) {
      const d = held.splice(rng.int(0, held.length - 1), 1)[0] as Decision;
      table.releaseLoad(d, 10, true);
    }
  }
}

async function withHost(t: Test, factory: HostFactory, table: WorkerTable, seed: number): Promise<PolicyHost> {
  const host = await factory(table, seed);
  t.teardown(() => host.close());
  await host.ready();
  return host;
}

/** The shipped plugin example (examples/plugins), a route() module as `--policy-module` loads it. */
export const EXAMPLE_PLUGIN_FILE = fileURLToPath(new URL('../../../examples/plugins/throughput-latency.js', import.meta.url));

/**
 * Register the plugins the suite covers besides the built-ins: the test fixture (a factory module) and the
 * shipped example. Returns every policy name to run the suite for.
 */
export async function conformancePolicies(): Promise<string[]> {
  if (!isPolicyName(TEST_PLUGIN_NAME)) await registerPolicyModule(TEST_PLUGIN_NAME, fileURLToPath(new URL('./fixtures/test-plugin.js', import.meta.url)));
  await loadPolicyModule(EXAMPLE_PLUGIN_FILE);
  return policyNames();
}

/** Run the suite for every policy with hosts built by `createPolicyHost(name, { seed }, table, undefined, options)`. */
export async function runConformanceForAll(t: Test, label: string, options: PolicyHostOptions): Promise<void> {
  for (const name of await conformancePolicies()) {
    t.test(`${name} ${label}`, (t) => runConformance(t, name, (table, seed) => createPolicyHost(name, { seed }, table, undefined, options)));
  }
}

export async function runConformance(t: Test, name: string, factory: HostFactory): Promise<void> {
  t.test(`${name}: chooses only available workers`, async (t) => {
    const table = WorkerTable.create(16);
    const ws = addWorkers(table, 8);
    const host = await withHost(t, factory, table, 1);
    host.setWorkers(ws);
    table.setHealthy(ws[1]!.slot, false);
    table.set(ws[2]!.slot, Field.Breaker, BreakerState.Open);
    table.set(ws[3]!.slot, Field.State, SlotState.Draining);
    table.release(ws[4]!.slot); // released in the table, still in the host's membership
    table.set(ws[5]!.slot, Field.Breaker, BreakerState.HalfOpen); // half-open lets requests through
    let allowed = new Set([0, 5, 6, 7].map((i) => ws[i]!.slot));
    const rng = new Rng(7);
    const chosen = new Set<number>();
    let bad = 0;
    const check = (d: Decision | null): void => {
      if (d === null || !allowed.has(d.slot)) bad++;
      else chosen.add(d.slot);
      if (d !== null) checkWellFormed(t, d, ws, 'available-only');
    };
    await stream(host, table, rng, 200, 10, check);
    t.equal(bad, 0, 'every decision named an available worker');
    // availability changes mid-stream: decisions asked afterwards see it
    table.setHealthy(ws[6]!.slot, false);
    allowed = new Set([0, 5, 7].map((i) => ws[i]!.slot));
    await stream(host, table, rng, 200, 10, check);
    t.equal(bad, 0, 'a worker turned unhealthy mid-stream is not chosen afterwards');
    t.ok(chosen.size >= 1);
  });

  t.test(`${name}: returns null when no worker is available`, async (t) => {
    const table = WorkerTable.create(8);
    const host = await withHost(t, factory, table, 2);
    const rng = new Rng(3);
    t.equal(await decideAsync(host, makeRequest(0, rng)), null, 'empty membership');
    const ws = addWorkers(table, 3);
    for (const w of ws) table.setHealthy(w.slot, false);
    host.setWorkers(ws);
    for (let i = 0; i < 20; i++) t.equal(await decideAsync(host, makeRequest(i, rng)), null, 'all unhealthy');
    table.set(ws[0]!.slot, Field.Healthy, 1);
    table.set(ws[0]!.slot, Field.Breaker, BreakerState.Open);
    t.equal(await decideAsync(host, makeRequest(1, rng)), null, 'healthy but breaker open');
    table.set(ws[0]!.slot, Field.Breaker, BreakerState.Closed);
    const d = await decideAsync(host, makeRequest(2, rng));
    t.equal(d?.slot, ws[0]!.slot, 'the one available worker once it is back');
  });

  for (const order of ['table first', 'membership first', 'slot reused', 'slot reused, membership late'] as const) {
    t.test(`${name}: a worker removed mid-stream is never chosen afterwards (${order})`, async (t) => {
      const table = WorkerTable.create(16);
      let ws = addWorkers(table, 6);
      const host = await withHost(t, factory, table, 3);
      host.setWorkers(ws);
      const rng = new Rng(11);
      for (let round = 0; round < 4; round++) {
        // a wave in flight, then the removal, then another wave asked after it, without waiting between
        const before: Promise<Decision | null>[] = [];
        for (let i = 0; i < 25; i++) before.push(decideAsync(host, makeRequest(i, rng)));
        const victim = ws[rng.int(0, ws.length - 1)] as WorkerInfo;
        const remaining = ws.filter((w) => w !== victim);
        if (order === 'membership first') {
          host.setWorkers(remaining);
          table.release(victim.slot);
          ws = remaining;
        } else {
          table.release(victim.slot);
          if (order !== 'table first') {
            const ref = table.allocate({ healthy: true });
            t.equal(ref.slot, victim.slot, 'the freed slot is reused at once');
            ws = [...remaining, { slot: ref.slot, generation: ref.generation, url: `http://10.9.9.${round}:1`, nodeId: 99 }];
          } else ws = remaining;
          // 'membership late': the host still lists the victim under the old generation while the slot
          // already holds a new worker; only the generation tells them apart.
          if (order !== 'slot reused, membership late') host.setWorkers(ws);
        }
        const after: Promise<Decision | null>[] = [];
        for (let i = 0; i < 50; i++) after.push(decideAsync(host, makeRequest(i, rng)));
        if (order === 'slot reused, membership late') host.setWorkers(ws);
        await Promise.all(before);
        const ds = await Promise.all(after);
        let named = 0;
        for (const d of ds) {
          if (d === null) {
            t.fail('null with workers available');
            continue;
          }
          if ((d.slot === victim.slot && d.generation === victim.generation) || d.url === victim.url) named++;
          else if (order !== 'slot reused, membership late') checkWellFormed(t, d, ws, `after removal (${order})`);
        }
        t.equal(named, 0, `round ${round}: the removed worker was not chosen`);
      }
    });
  }

  t.test(`${name}: works for 1 to 256 workers`, async (t) => {
    // One table of 256 live workers; the membership grows and shrinks through the sizes. Workers in the
    // table but not in the membership are available too, and must never be chosen.
    const table = WorkerTable.create(256);
    const all = addWorkers(table, 256);
    const host = await withHost(t, factory, table, 4);
    for (const n of [1, 2, 3, 17, 255, 256, 5]) {
      const ws = all.slice(256 - n); // take from the end, so slot 0 is not always a member
      host.setWorkers(ws);
      const rng = new Rng(n);
      const seen = new Set<number>();
      let failures = 0;
      await stream(host, table, rng, Math.min(2 * n + 10, 400), 32, (d) => {
        if (d === null) failures++;
        else if (checkWellFormed(t, d, ws, `${n} workers`) === undefined) failures++;
        else seen.add(d.slot);
      });
      t.equal(failures, 0, `${n} workers: every decision named a member`);
      if (n === 1) t.same([...seen], [ws[0]!.slot], 'a single worker is always chosen');
    }
  });

  t.test(`${name}: deterministic under a seed`, async (t) => {
    const run = async (seed: number): Promise<string[]> => {
      const table = WorkerTable.create(32);
      const ws = addWorkers(table, 12);
      table.setHealthy(ws[3]!.slot, false);
      const host = await factory(table, seed);
      await host.ready();
      host.setWorkers(ws);
      const out: string[] = [];
      await stream(host, table, new Rng(99), 300, 15, (d) => out.push(d === null ? 'null' : `${d.slot}/${d.generation}/${d.url}`));
      await host.close();
      return out;
    };
    const a = await run(1234);
    const b = await run(1234);
    t.equal(a.length, 300);
    t.same(b, a, 'same seed, same inputs -> same decisions');
  });

  t.test(`${name}: decides within the admitted worker group`, async (t) => {
    const table = WorkerTable.create(16);
    const plain = addWorkers(table, 6);
    const ws = plain.map((w, i) => ({ ...w, group: i < 2 ? 'multi' : 'single' }));
    const host = await withHost(t, factory, table, 6);
    host.setWorkers(ws);
    const rng = new Rng(6);
    const multi = new Set(ws.filter((w) => w.group === 'multi').map((w) => w.slot));
    const single = new Set(ws.filter((w) => w.group === 'single').map((w) => w.slot));
    const ask = async (group: string, i: number): Promise<Decision | null> =>
      decideAsync(host, { ...makeRequest(i, rng), group, admission: `admission: test -> ${group}` });
    let outside = 0;
    for (let i = 0; i < 60; i++) {
      const group = i % 3 === 0 ? 'multi' : 'single';
      const d = await ask(group, i);
      if (d === null) {
        t.fail('null with workers available');
        continue;
      }
      if (!(group === 'multi' ? multi : single).has(d.slot)) outside++;
      if (!d.reason.startsWith(`admission: test -> ${group}; `)) t.fail(`reason does not start with admission's: ${d.reason}`);
      checkWellFormed(t, d, ws, 'grouped');
    }
    t.equal(outside, 0, 'every decision stayed in its group');
    // the multi group goes away: its requests still route, to any available worker
    for (const w of ws) if (w.group === 'multi') table.setHealthy(w.slot, false);
    for (let i = 0; i < 10; i++) {
      const d = await ask('multi', i);
      t.ok(d !== null && single.has(d.slot), 'an unavailable group falls back to the available workers');
    }
    // an unknown group name is no filter at all
    const d = await ask('nonexistent', 1);
    t.ok(d !== null && single.has(d.slot));
  });

  t.test(`${name}: decision fields are well-formed`, async (t) => {
    const table = WorkerTable.create(8);
    const ws = addWorkers(table, 5);
    const host = await withHost(t, factory, table, 5);
    host.setWorkers(ws);
    const rng = new Rng(5);
    for (let i = 0; i < 50; i++) {
      const d = await decideAsync(host, makeRequest(i, rng));
      t.not(d, null);
      if (d === null) continue;
      t.ok(Number.isInteger(d.slot) && Number.isInteger(d.generation), 'slot and generation are integers');
      t.equal(typeof d.reason, 'string');
      t.ok(d.reason.length > 0, 'reason is non-empty');
      t.notMatch(d.reason, /^fallback/, 'decided by the policy, not a fallback');
      t.ok(table.isCurrent(d), 'the decision is current when it arrives (nothing changed)');
      checkWellFormed(t, d, ws, 'fields');
    }
    const snap = await host.snapshot();
    t.type(snap, 'object', 'snapshot is an object');
  });
}
