/**
 * The regression gate's view of the router's hot paths: each one's cost in units of a fixed reference
 * computation measured in the same process, interleaved batch by batch (bench/lib/gate-calibration.ts),
 * so a faster or slower machine, or a busy minute on a shared one, cancels out. The absolute figures of
 * these paths, at more sizes and settings, are their own scenarios' (policy-decide, radix-tree,
 * hdr-record); this one keeps a few representative cases, measured the one way the gate can trust.
 *
 *   policy.<name>.select.w8.calibrated   one select() of each built-in policy over 8 available workers,
 *                                        called directly (the cost inside the host, inline or actor);
 *                                        cache_aware over a warm tree of 64 prompts sharing 8 system
 *                                        prompts, marginal_utility with full windows
 *   radix.<op>.1000.calibrated           insert of a text the tree holds / prefixMatch, 1,000-character
 *                                        texts, 16 tenants
 *   hdr.record.wasm.calibrated           one recordValue on the WebAssembly HDR histogram (stats actor)
 * each with `<name>.ns` beside it (the absolute ns/op behind the ratio, for reading, never for gating).
 *
 * Honours SWITCHYARD_BENCH_SLOWDOWN (the gate's own test; see gate-calibration.ts).
 */
import { build, initWebAssembly } from 'hdr-histogram-js';
import { WorkerTable } from '../../src/actors/worker-table.js';
import { createPolicy } from '../../src/policies/registry.js';
import { RadixTree } from '../../src/policies/radix-tree.js';
import type { CompletionFeedback, Policy, PolicyContext, RequestFeatures, WorkerInfo } from '../../src/policies/types.js';
import { Rng } from '../../src/util/rng.js';
import { calibratedFigures, type CalibratedCase } from '../lib/gate-calibration.js';
import type { BenchContext, Figure, Scenario } from '../lib/scenario.js';

const WORKERS = 8;
const POLICIES = ['random', 'round_robin', 'power_of_two', 'shortest_queue', 'cache_aware', 'marginal_utility'] as const;
const TEXT_POOL = 64;
const TENANTS = 16;
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 ';

let sink = 0;

function randomText(rng: Rng, n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += ALPHABET[rng.int(0, ALPHABET.length - 1)] as string;
  return s;
}

/** A flat, unshared copy: requests arrive as fresh strings, and comparing a string with itself is free. */
function fresh(s: string): string {
  return Buffer.from(s, 'latin1').toString('latin1');
}

/** 64 chat-like requests: 8 system prompts of 400 characters, each with 8 different 120-character questions. */
function requests(rng: Rng): RequestFeatures[] {
  const systems = Array.from({ length: 8 }, () => randomText(rng, 400));
  return Array.from({ length: TEXT_POOL }, (_, i) => {
    const text = fresh((systems[i & 7] as string) + randomText(rng, 120));
    return { requestId: `bench-${i}`, route: 'chat', text, inputTokens: Math.ceil(text.length / 4), maxNewTokens: 128, stream: true };
  });
}

function fleet(table: WorkerTable): WorkerInfo[] {
  const out: WorkerInfo[] = [];
  for (let i = 0; i < WORKERS; i++) {
    const ref = table.allocate({ healthy: true, nodeId: i });
    // Uneven in-flight counts, so load-aware policies have something to compare.
    for (let k = 0; k < (i * 3) % 7; k++) table.acquire(ref, 100);
    out.push({ slot: ref.slot, generation: ref.generation, url: `http://127.0.0.1:${30001 + i}`, nodeId: i });
  }
  return out;
}

function feedback(w: WorkerInfo, i: number): CompletionFeedback {
  const sentAt = 1_000 * i;
  return {
    requestId: `fb-${i}`,
    url: w.url,
    slot: w.slot,
    success: true,
    sentAt,
    firstTokenAt: sentAt + 30 + (i % 7) * 5,
    finishedAt: sentAt + 900 + (i % 11) * 40 + w.slot * 15,
    inputTokens: 512,
    outputTokens: 128,
    cachedTokens: 256,
    queueTime: 0.01,
  };
}

function policyCase(name: (typeof POLICIES)[number], reqs: readonly RequestFeatures[]): CalibratedCase {
  const table = WorkerTable.create(16);
  const workers = fleet(table);
  const policy: Policy = createPolicy(name, { seed: 1 });
  policy.onWorkersChanged?.(workers);
  let clock = 0;
  const ctx: PolicyContext = { table, workers, rng: new Rng(1), now: () => ++clock };
  // Warm state: cache_aware's tree holds every prompt; marginal_utility's windows are full.
  for (let i = 0; i < 4 * TEXT_POOL; i++) {
    const d = policy.select(reqs[i % TEXT_POOL] as RequestFeatures, ctx);
    if (d !== null) sink += d.slot;
  }
  for (let i = 0; i < 40 * WORKERS; i++) policy.observe?.(feedback(workers[i % WORKERS] as WorkerInfo, i));
  let at = 0;
  return {
    name: `policy.${name}.select.w${WORKERS}`,
    note: `${name}.select, ${WORKERS} workers${name === 'cache_aware' ? ', warm tree, 520-char prompts' : ''}`,
    subject: {
      op: () => {
        const d = policy.select(reqs[at++ & (TEXT_POOL - 1)] as RequestFeatures, ctx);
        if (d !== null) sink += d.slot;
      },
    },
  };
}

function radixCases(rng: Rng): CalibratedCase[] {
  const size = 1000;
  const pool = Array.from({ length: 256 }, () => fresh(randomText(rng, size)));
  const queries = pool.map(fresh);
  const tenants = Int32Array.from({ length: 4096 }, () => rng.int(0, TENANTS - 1));
  const tree = new RadixTree();
  let clock = 0;
  for (let round = 0; round < 4; round++) pool.forEach((t, i) => tree.insert(t, tenants[(round * pool.length + i) & 4095] as number, ++clock));
  let at = 0;
  return [
    {
      name: `radix.insert_hit.${size}`,
      note: `insert of a held ${size}-char text, ${TENANTS} tenants`,
      subject: {
        op: () => {
          const i = at++;
          tree.insert(queries[i & 255] as string, tenants[i & 4095] as number, ++clock);
        },
      },
    },
    {
      name: `radix.match.${size}`,
      note: `prefixMatch of a held ${size}-char text, ${TENANTS} tenants`,
      subject: {
        op: () => {
          sink += tree.prefixMatch(queries[at++ & 255] as string).matchedChars;
        },
      },
    },
  ];
}

function hdrCase(): CalibratedCase {
  const h = build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 2, bitBucketSize: 32, autoResize: false, useWebAssembly: true });
  const values = Float64Array.from({ length: 4096 }, (_, i) => Math.round(20_000 * Math.exp(((i * 2654435761) % 4096) / 4096 - 0.5)));
  let at = 0;
  return {
    name: 'hdr.record.wasm',
    note: 'hdr-histogram-js recordValue, WebAssembly build, 2 digits',
    subject: { op: () => h.recordValue(values[at++ & 4095] as number) },
  };
}

const scenario: Scenario = {
  name: 'calibrated',
  description: 'hot paths in units of a same-process reference computation (policy select x6, radix insert/match, HDR record): the gate\'s machine-independent timings',
  gate: true,
  async run(ctx: BenchContext): Promise<Figure[]> {
    await initWebAssembly();
    const rng = new Rng(42);
    const reqs = requests(rng);
    const cases: CalibratedCase[] = [...POLICIES.map((p) => policyCase(p, reqs)), ...radixCases(rng), hdrCase()];
    const budgetMs = ctx.quick ? 250 : 600;
    const figures = calibratedFigures(cases, { runs: ctx.runs, budgetMs, log: (m) => ctx.log(m) });
    if (sink === -1) ctx.log('unreachable'); // keeps results observable to the optimiser
    return figures;
  },
};

export default scenario;
