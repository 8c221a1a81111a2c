/**
 * Memory of the tracker actor's store (src/tracking/store.ts) at its default cap: 100k finished traces
 * built the way the actor builds them (events cloned across a thread boundary, so every string and scores
 * object is a fresh copy; the store interns the repeated strings).
 *
 *   trace.store.100k_heap_mb     memory growth (after full GCs) for 100k traces: the V8 heap plus the
 *                                typed arrays the store's columns live in (target <= 64 MB)
 *   trace.store.bytes_per_trace  the same per trace
 *
 * Request ids are 36-character UUID-like strings (what clients usually send); 8 workers, a reason string
 * per policy decision kind, a small scores object per trace (as round_robin/cache_aware give).
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { randomUUID } from 'node:crypto';
import { EventReader, EventWriter } from '../../src/tracking/events.js';
import { TraceStore } from '../../src/tracking/store.js';
import type { CompletionRecord } from '../../src/proxy/completion.js';
import { summarize, type BenchContext, type Figure, type Scenario } from '../lib/scenario.js';

const N = 100_000;
const WORKERS = Array.from({ length: 8 }, (_, i) => `http://10.0.0.${i + 1}:30000`);
const REASONS = ['cache_aware: prefix match >= 0.3', 'cache_aware: imbalanced, shortest queue', 'cache_aware: no match, smallest tree'];

function gcFunction(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

function record(i: number): CompletionRecord {
  const w = i & 7;
  return {
    requestId: randomUUID(),
    route: 'generate',
    stream: (i & 1) === 0,
    workerUrl: WORKERS[w] as string,
    slot: w,
    nodeId: w,
    policy: 'cache_aware',
    reason: REASONS[i % 3] as string,
    scores: { match: (i % 100) / 100, load: i & 31 },
    status: 'completed',
    httpStatus: 200,
    errorCode: undefined,
    errorMessage: undefined,
    timestamp: 1_795_000_000_000 + i * 0.731,
    arrivedAt: 1000 + i,
    decidedAt: 1000.2 + i,
    sentAt: 1000.3 + i,
    firstTokenAt: 1040.5 + i,
    finishedAt: 1812.25 + i,
    inputTokens: 512 + (i & 63),
    outputTokens: 128 + (i & 7),
    cachedTokens: 256,
    queueTime: 0.0031,
    itl: undefined,
    attempts: 1,
  };
}

/** Heap growth in bytes of a store filled with N traces (everything else built and dropped first). */
function measure(gc: () => void): number {
  gc();
  gc();
  const m0 = process.memoryUsage();
  const before = m0.heapUsed + m0.arrayBuffers;
  const store = new TraceStore({ maxEntries: N, ttlMs: 3_600_000 });
  const writer = new EventWriter();
  const reader = new EventReader();
  for (let b = 0; b < N / 500; b++) {
    for (let i = 0; i < 500; i++) writer.finished({ ...record(b * 500 + i), decidedAt: 0 }); // the full form: scores included
    // What the actor receives: a clone (fresh strings and objects), applied, then dropped.
    reader.apply(structuredClone(writer.take()!), store);
  }
  gc();
  gc();
  const m1 = process.memoryUsage();
  const after = m1.heapUsed + m1.arrayBuffers;
  if (store.size !== N) throw new Error(`store holds ${store.size} traces, expected ${N}`);
  return after - before;
}

const scenario: Scenario = {
  name: 'trace-memory',
  description: 'heap of the trace store holding 100k finished traces (default --max-trace-entries), target <= 64 MB',
  async run(ctx: BenchContext): Promise<Figure[]> {
    const gc = gcFunction();
    const mb: number[] = [];
    const runs = Math.max(1, Math.min(ctx.runs, 3));
    for (let r = 0; r < runs; r++) {
      const bytes = measure(gc);
      mb.push(bytes / (1024 * 1024));
      ctx.log(`run ${r + 1}/${runs}: ${(bytes / 1024 / 1024).toFixed(1)} MB for ${N} traces`);
      gc();
    }
    const { median, spread } = summarize(mb);
    return [
      { name: 'trace.store.100k_heap_mb', value: median, unit: 'MB', better: 'lower', spread, note: `heap + array buffers for ${N} traces after GC (target <= 64)` },
      { name: 'trace.store.bytes_per_trace', value: (median * 1024 * 1024) / N, unit: 'B', better: 'lower', spread, note: 'heap and array buffers per stored trace (columns, id bytes and table, scores object)' },
    ];
  },
};

export default scenario;
