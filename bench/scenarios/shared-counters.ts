/**
 * The shared worker table (src/actors/worker-table.ts): what the per-request bookkeeping in shared
 * memory costs, against the same bookkeeping on a plain (unshared) Int32Array with plain loads and
 * stores, measured side by side in interleaved batches (bench/lib/gate-calibration.ts):
 *
 *   counters.acquire_release.ns        acquire(ref, tokens) + releaseLoad(ref, tokens, true): what one
 *                                      request costs the front end (generation checks, 2 Atomics.add,
 *                                      2 Atomics.sub, Processed += 1)
 *   counters.acquire_release.vs_plain  Atomics version / the same on a plain array (x, same batches)
 *   counters.acquire_release.reader_ns the same while another thread scans the table's loads nonstop
 *                                      (a policy actor reading the counters the front end writes: the
 *                                      cache line moves between cores)
 *   counters.load.ns / peek_load.ns    one worker's load through Atomics (load) and relaxed (peekLoad)
 *   counters.load.vs_plain             Atomics load / plain-array load
 *   counters.scan256.ns                least-loaded scan over 256 workers with peekLoad (what
 *                                      shortest_queue does per decision)
 *   counters.scan256.vs_plain          peekLoad scan / plain-array scan
 *   counters.<op>.calibrated           acquire_release and scan256 in reference units (the gate's)
 *
 * Honours SWITCHYARD_BENCH_SLOWDOWN (the gate's own test).
 */
import { Worker } from 'node:worker_threads';
import { Field, STRIDE, WorkerTable, type SlotRef } from '../../src/actors/worker-table.js';
import { calibratedFigures, measureAgainst, type Subject } from '../lib/gate-calibration.js';
import { summarize, type BenchContext, type Figure, type Scenario } from '../lib/scenario.js';

const WORKERS = 256;
const HEADER = 4; // the table's header words (worker-table.ts)

let sink = 0;

/**
 * The table's bookkeeping on a plain Int32Array: same layout, same generation checks, plain loads and
 * stores instead of Atomics. What the counters would cost if nothing had to share them.
 */
class PlainCounters {
  readonly a = new Int32Array(HEADER + WORKERS * STRIDE);
  constructor() {
    for (let s = 0; s < WORKERS; s++) {
      const base = HEADER + s * STRIDE;
      this.a[base + Field.Generation] = 1;
      this.a[base + Field.State] = 1;
      this.a[base + Field.Healthy] = 1;
    }
  }
  acquire(ref: SlotRef, tokens: number): boolean {
    const a = this.a;
    const base = HEADER + ref.slot * STRIDE;
    if (a[base + Field.Generation] !== ref.generation || a[base + Field.State] !== 1) return false;
    a[base + Field.InFlightRequests] = (a[base + Field.InFlightRequests] as number) + 1;
    a[base + Field.InFlightTokens] = (a[base + Field.InFlightTokens] as number) + tokens;
    return true;
  }
  releaseLoad(ref: SlotRef, tokens: number, completed: boolean): void {
    const a = this.a;
    const base = HEADER + ref.slot * STRIDE;
    if (a[base + Field.Generation] !== ref.generation) return;
    a[base + Field.InFlightRequests] = (a[base + Field.InFlightRequests] as number) - 1;
    a[base + Field.InFlightTokens] = (a[base + Field.InFlightTokens] as number) - tokens;
    if (completed) a[base + Field.Processed] = (a[base + Field.Processed] as number) + 1;
  }
  load(slot: number): number {
    const a = this.a;
    const base = HEADER + slot * STRIDE;
    const own = a[base + Field.InFlightRequests] as number;
    const reported = (a[base + Field.ReportedQueue] as number) + (a[base + Field.ReportedRunning] as number);
    return own > reported ? own : reported;
  }
}

function tableWithFleet(): { table: WorkerTable; refs: SlotRef[] } {
  const table = WorkerTable.create(WORKERS);
  const refs: SlotRef[] = [];
  for (let i = 0; i < WORKERS; i++) {
    const ref = table.allocate({ healthy: true, nodeId: i });
    refs.push(ref);
    table.setReported(ref.slot, { queue: i % 5, running: i % 3, tokens: 0 }, 0);
  }
  return { table, refs };
}

/** The least-loaded slot among all 256 (shortest_queue's scan, minus the candidate filtering). */
function scanMin(load: (slot: number) => number): number {
  let best = 0;
  let bestLoad = Infinity;
  for (let s = 0; s < WORKERS; s++) {
    const l = load(s);
    if (l < bestLoad) {
      bestLoad = l;
      best = s;
    }
  }
  return best;
}

/**
 * A thread that reads every worker's in-flight fields in a loop until told to stop, as policy actors
 * read the counters the front end writes. Eval'd CommonJS: it needs nothing but the buffer.
 */
const READER_THREAD = `
const { parentPort, workerData } = require('node:worker_threads');
const a = new Int32Array(workerData.buffer);
const stop = new Int32Array(workerData.stop);
let sum = 0;
parentPort.postMessage('running');
while (Atomics.load(stop, 0) === 0) {
  for (let s = 0; s < ${WORKERS}; s++) sum += a[${HEADER} + s * ${STRIDE} + ${Field.InFlightRequests}];
}
parentPort.postMessage(sum);
`;

interface Pair {
  readonly name: string;
  readonly note: string;
  readonly shared: Subject;
  readonly plain: Subject;
}

const scenario: Scenario = {
  name: 'shared-counters',
  description: 'worker table in shared memory: acquire/release, load, 256-worker scan vs a plain array; with a reader thread; calibrated',
  gate: true,
  async run(ctx: BenchContext): Promise<Figure[]> {
    const budgetMs = ctx.quick ? 250 : 600;
    const { table, refs } = tableWithFleet();
    const plain = new PlainCounters();
    let at = 0;

    const acquireRelease: Subject = {
      op: () => {
        const ref = refs[at++ & (WORKERS - 1)] as SlotRef;
        if (table.acquire(ref, 300)) table.releaseLoad(ref, 300, true);
      },
    };
    const pairs: Pair[] = [
      {
        name: 'acquire_release',
        note: 'acquire + releaseLoad per request',
        shared: acquireRelease,
        plain: {
          op: () => {
            const ref = refs[at++ & (WORKERS - 1)] as SlotRef;
            if (plain.acquire(ref, 300)) plain.releaseLoad(ref, 300, true);
          },
        },
      },
      {
        name: 'load',
        note: 'one worker load (own in-flight vs reported), Atomics.load',
        shared: { op: () => (sink += table.load(at++ & (WORKERS - 1))) },
        plain: { op: () => (sink += plain.load(at++ & (WORKERS - 1))) },
      },
      {
        name: 'scan256',
        note: 'least-loaded scan over 256 workers, peekLoad (relaxed)',
        shared: { op: () => (sink += scanMin((s) => table.peekLoad(s))) },
        plain: { op: () => (sink += scanMin((s) => plain.load(s))) },
      },
    ];

    const ns = new Map<string, number[]>();
    const vsPlain = new Map<string, number[]>();
    const push = (m: Map<string, number[]>, k: string, v: number): void => {
      const list = m.get(k) ?? [];
      list.push(v);
      m.set(k, list);
    };
    const peek: Subject = { op: () => (sink += table.peekLoad(at++ & (WORKERS - 1))) };
    for (let r = 0; r < ctx.runs; r++) {
      for (const p of pairs) {
        const m = measureAgainst(p.shared, p.plain, budgetMs);
        push(ns, p.name, m.subjectNs);
        push(vsPlain, p.name, m.subjectNs / m.referenceNs);
        ctx.log(`round ${r + 1}/${ctx.runs} ${p.name}: shared ${m.subjectNs.toFixed(1)} ns, plain ${m.referenceNs.toFixed(1)} ns`);
      }
      const pk = measureAgainst(peek, pairs[1]!.shared, budgetMs);
      push(ns, 'peek_load', pk.subjectNs);
    }

    // The same acquire/release while another thread reads the counters nonstop.
    const stop = new Int32Array(new SharedArrayBuffer(4));
    const reader = new Worker(READER_THREAD, { eval: true, workerData: { buffer: table.buffer, stop: stop.buffer } });
    await new Promise<void>((resolve, reject) => {
      reader.once('message', () => resolve());
      reader.once('error', reject);
    });
    const withReader: number[] = [];
    try {
      for (let r = 0; r < ctx.runs; r++) {
        const m = measureAgainst(acquireRelease, pairs[0]!.plain, budgetMs);
        withReader.push(m.subjectNs);
        ctx.log(`round ${r + 1}/${ctx.runs} acquire_release with a reader thread: ${m.subjectNs.toFixed(1)} ns`);
      }
    } finally {
      Atomics.store(stop, 0, 1);
      await new Promise<void>((resolve) => {
        reader.once('message', (sum: number) => {
          sink += sum;
          resolve();
        });
        reader.once('exit', () => resolve());
      });
      await reader.terminate();
    }

    const fig = (name: string, values: readonly number[], unit: string, better: Figure['better'], note: string): Figure => {
      const { median, spread } = summarize(values);
      return { name, value: Number(median.toPrecision(4)), unit, better, spread: Number(spread.toPrecision(3)), note };
    };
    const figures: Figure[] = [];
    for (const p of pairs) {
      figures.push(fig(`counters.${p.name}.ns`, ns.get(p.name) ?? [], 'ns', 'lower', p.note));
      figures.push(fig(`counters.${p.name}.vs_plain`, vsPlain.get(p.name) ?? [], 'x', 'lower', 'shared ns / plain-array ns, same batches (1 = sharing is free)'));
    }
    figures.push(fig('counters.peek_load.ns', ns.get('peek_load') ?? [], 'ns', 'lower', 'one worker load, relaxed reads (peekLoad)'));
    figures.push(fig('counters.acquire_release.reader_ns', withReader, 'ns', 'lower', 'acquire + releaseLoad while another thread reads the counters'));

    figures.push(
      ...calibratedFigures(
        [
          { name: 'counters.acquire_release', note: 'acquire + releaseLoad per request', subject: acquireRelease },
          { name: 'counters.scan256', note: 'least-loaded scan over 256 workers, peekLoad', subject: pairs[2]!.shared },
        ],
        { runs: ctx.runs, budgetMs, log: (m) => ctx.log(m) },
      ).filter((f) => f.name.endsWith('.calibrated')),
    );
    if (sink === -1) ctx.log('unreachable');
    return figures;
  },
};

export default scenario;
