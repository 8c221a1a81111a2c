/**
 * Costs of request tracking measured in this process (src/tracking):
 *
 *   trace.encode.msgpack_seq_ns     ns to encode one finished trace as the trace log does (msgpackr,
 *                                   sequential records: the key list written once per file)
 *   trace.encode.msgpack_shared_ns  the same with msgpackr shared structures ({ structures: [] })
 *   trace.encode.json_ns            JSON.stringify of the same trace (the text alternative)
 *   trace.encode.json_vs_msgpack    json_ns / msgpack_seq_ns of the same round
 *   trace.record.msgpack_bytes      bytes per trace in the log (after the file's first record)
 *   trace.record.json_bytes         bytes per trace as JSON text
 *   trace.events.push_ns            front-end cost per request: a decided + a finished event appended to
 *                                   the per-turn batch (EventWriter; what the hot path pays with tracking on)
 *   trace.events.crossing_ns        per request, structuredClone of a 256-request batch as the tracker
 *                                   posts it (numbers and id bytes moved, strings cloned): serialise and
 *                                   deserialise on one thread, an upper bound of what one crossing costs
 *   trace.store.apply_ns            per request, the actor applying both events to a 100k-entry store
 *   trace.events.push_merged_ns     the front end's cost when the request ends within the hand-over that
 *   trace.store.apply_merged_ns     saw it decided (small answers: most requests): one FINISHED event
 *                                   carries both (tracker.ts holds the decision back; marking it is not counted)
 *   trace.tracker.cpu_us            CPU time (user + system, every thread of the process) per request of a
 *                                   real RequestTracker (front-end side + actor thread), fed 32 requests per
 *                                   event-loop turn, minus the same loop without it: what tracking costs
 *                                   the router per request, measured as CPU so a busy machine's waiting
 *                                   does not count (compare with tracking.e2e.*.off_cpu_us)
 *   trace.tracker.log_cpu_us        the same with the trace log on
 *   trace.tracker.paced_thread_us   CPU per request of every thread but the front end's (the tracker's, and
 *                                   V8's platform threads collecting its garbage) with the store full and
 *                                   requests paced at 14k/s, as the e2e bench loads it: what tracking takes
 *                                   from the cores besides the front end (Linux only: /proc)
 *
 * Medians over ctx.runs of time-boxed batches; spread from the min/max of the runs.
 */
import { Packr } from 'msgpackr';
import { logPackr, toLogRecord } from '../../src/tracking/log-format.js';
import { EventReader, EventWriter, type EventBatch } from '../../src/tracking/events.js';
import { TraceStore } from '../../src/tracking/store.js';
import type { Trace } from '../../src/tracking/types.js';
import type { RequestProgressView } from '../../src/frontend/context.js';
import type { Decision } from '../../src/policies/types.js';
import type { CompletionRecord } from '../../src/proxy/completion.js';
import type { WorkerEntry } from '../../src/workers/registry.js';
import { summarize, type BenchContext, type Figure, type Scenario } from '../lib/scenario.js';
import { RequestTracker } from '../../src/tracking/tracker.js';
import { clockTicks } from '../lib/router-variants.js';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const WORKERS = Array.from({ length: 8 }, (_, i) => `http://10.0.0.${i + 1}:30000`);

function trace(i: number): Trace {
  const w = i & 7;
  return {
    request_id: `bench-${(i * 2654435761) >>> 0}-${i}`,
    node_id: w,
    worker_url: WORKERS[w] as string,
    routing_policy: 'cache_aware',
    status: 'completed',
    timestamp_ms: 1_795_000_000_000 + i * 0.731,
    route: 'generate',
    stream: (i & 1) === 0,
    reason: 'cache_aware: prefix match 0.82 >= 0.3',
    scores: { match: 0.82, load: i & 15 },
    queue_ms: 0.183,
    ttft_ms: 41.25 + (i & 31),
    e2e_ms: 812.5 + (i & 255),
    server_queue_ms: 3.1,
    input_tokens: 512 + (i & 63),
    output_tokens: 128,
    cached_tokens: 256,
    http_status: 200,
    error_code: null,
    error_message: null,
    attempts: 1,
  };
}

let sink = 0;

/** Median ns per call of `fn(i)` over time-boxed batches of `batch` calls. */
function nsPerOp(fn: (i: number) => number, ms: number, batch = 20_000): number {
  for (let i = 0; i < batch; i++) sink += fn(i); // warm-up
  const samples: number[] = [];
  const until = Date.now() + ms;
  let base = 0;
  do {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < batch; i++) sink += fn(base + i);
    samples.push(Number(process.hrtime.bigint() - t0) / batch);
    base += batch;
  } while (Date.now() < until);
  return summarize(samples).median;
}

function views(n: number): { view: RequestProgressView; rec: CompletionRecord }[] {
  const out: { view: RequestProgressView; rec: CompletionRecord }[] = [];
  for (let i = 0; i < n; i++) {
    const t = trace(i);
    const worker = { url: t.worker_url, nodeId: t.node_id, slot: i & 7 } as unknown as WorkerEntry;
    const view: RequestProgressView = {
      requestId: t.request_id,
      route: 'generate',
      features: { requestId: t.request_id, route: 'generate', text: 'x', inputTokens: t.input_tokens, maxNewTokens: 128, stream: t.stream, model: undefined },
      timestamp: t.timestamp_ms,
      arrivedAt: 1000 + i,
      decidedAt: 1000.2 + i,
      attempts: 1,
      decision: { slot: i & 7, generation: 1, url: t.worker_url as string, reason: t.reason as string, scores: t.scores as Record<string, number> },
      worker,
      // As the router's request state (data-route.ts): the tracker may hold the decision until it ends.
      traceHold: 0,
    };
    const rec: CompletionRecord = {
      requestId: t.request_id,
      route: 'generate',
      stream: t.stream,
      workerUrl: t.worker_url as string,
      slot: i & 7,
      nodeId: t.node_id as number,
      policy: 'cache_aware',
      reason: t.reason as string,
      scores: t.scores as Record<string, number>,
      status: 'completed',
      httpStatus: 200,
      errorCode: undefined,
      errorMessage: undefined,
      timestamp: t.timestamp_ms,
      arrivedAt: 1000 + i,
      decidedAt: 1000.2 + i,
      sentAt: 1000.3 + i,
      firstTokenAt: 1040 + i,
      finishedAt: 1800 + i,
      inputTokens: t.input_tokens,
      outputTokens: 128,
      cachedTokens: 256,
      queueTime: 0.0031,
      itl: undefined,
      attempts: 1,
    };
    out.push({ view, rec });
  }
  return out;
}

function fig(name: string, values: number[], unit: string, better: Figure['better'], note: string): Figure {
  const { median, spread } = summarize(values);
  return { name, value: median, unit, better, spread, note };
}

const scenario: Scenario = {
  name: 'trace-encode',
  description: 'trace log record encoding (msgpackr sequential / shared structures vs JSON), hot-path event cost, crossing and apply cost per request',
  async run(ctx: BenchContext): Promise<Figure[]> {
    const ms = ctx.quick ? 300 : 1000;
    const N = 4096;
    const traces = Array.from({ length: N }, (_, i) => trace(i));
    const seq: number[] = [];
    const shared: number[] = [];
    const json: number[] = [];
    const ratio: number[] = [];
    const push: number[] = [];
    const crossing: number[] = [];
    const apply: number[] = [];
    const pushMerged: number[] = [];
    const applyMerged: number[] = [];
    const inputs = views(N);
    for (let run = 0; run < ctx.runs; run++) {
      const p = logPackr();
      const s = seqNs(p, traces, ms);
      const sh = new Packr({ structures: [], useRecords: (o: unknown) => (o as { request_id?: unknown }).request_id !== undefined });
      const shNs = nsPerOp((i) => sh.pack(toLogRecord(traces[i & (N - 1)] as Trace)).length, ms);
      const j = nsPerOp((i) => JSON.stringify(toLogRecord(traces[i & (N - 1)] as Trace)).length, ms);
      seq.push(s);
      shared.push(shNs);
      json.push(j);
      ratio.push(j / s);

      // The front end: a decided and a finished event per request, a batch taken every 256 requests.
      const writer = new EventWriter();
      push.push(
        nsPerOp((i) => {
          const x = inputs[i & (N - 1)]!;
          writer.decided(x.view, 'cache_aware');
          writer.finished(x.rec);
          if ((i & 255) === 255) writer.take();
          return 1;
        }, ms),
      );
      writer.take();
      const mergedWriter = new EventWriter();
      pushMerged.push(
        nsPerOp((i) => {
          mergedWriter.finished(inputs[i & (N - 1)]!.rec, true);
          if ((i & 255) === 255) mergedWriter.take();
          return 1;
        }, ms),
      );
      // One crossing of a 256-request batch, per request.
      for (let i = 0; i < 256; i++) {
        writer.decided(inputs[i]!.view, 'cache_aware');
        writer.finished(inputs[i]!.rec);
      }
      const batch = writer.take()!;
      // As the tracker sends it: numbers and id bytes moved (fresh copies, as take() makes), strings cloned.
      crossing.push(
        nsPerOp(
          () => {
            const b = { ...batch, nums: batch.nums.slice(), ids: batch.ids.slice() };
            return (structuredClone(b, { transfer: [b.nums.buffer, b.ids.buffer] }) as EventBatch).nums.length;
          },
          ms,
          20,
        ) / 256,
      );
      apply.push(applyNs(inputs, false, ms));
      applyMerged.push(applyNs(inputs, true, ms));
    }
    const bytes = recordBytes(traces);
    const trackerCpu: number[] = [];
    const trackerLogCpu: number[] = [];
    const requests = ctx.quick ? 20_000 : 60_000;
    for (let run = 0; run < ctx.runs; run++) {
      const base = await feedCpuUs(undefined, inputs, requests);
      trackerCpu.push((await withTracker(undefined, (t) => feedCpuUs(t, inputs, requests))) - base);
      const dir = mkdtempSync(join(tmpdir(), 'switchyard-trace-cpu-'));
      try {
        trackerLogCpu.push((await withTracker(dir, (t) => feedCpuUs(t, inputs, requests))) - base);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
    // As under load: the store full, requests paced at PACED_RATE; the CPU of every thread but this one.
    const paced: number[] = [];
    if (threadCpuTicks() !== undefined) {
      for (let run = 0; run < ctx.runs; run++) paced.push(await withTracker(undefined, (t) => pacedThreadUs(t, inputs, ctx.quick ? 2 : 4)));
    }
    return [
      fig('trace.encode.msgpack_seq_ns', seq, 'ns', 'lower', 'msgpackr sequential records (the trace log format), one finished trace'),
      fig('trace.encode.msgpack_shared_ns', shared, 'ns', 'lower', 'msgpackr shared structures, same trace'),
      fig('trace.encode.json_ns', json, 'ns', 'lower', 'JSON.stringify, same trace'),
      fig('trace.encode.json_vs_msgpack', ratio, 'x', 'higher', 'json_ns / msgpack_seq_ns, same round'),
      { name: 'trace.record.msgpack_bytes', value: bytes.msgpack, unit: 'B', better: 'lower', note: 'per trace in the log, structure already defined' },
      { name: 'trace.record.json_bytes', value: bytes.json, unit: 'B', better: 'lower', note: 'per trace as JSON text' },
      fig('trace.events.push_ns', push, 'ns', 'lower', 'per request on the front end: decided + finished events appended to the turn batch (EventWriter)'),
      fig('trace.events.crossing_ns', crossing, 'ns', 'lower', 'per request: structured clone of a 256-request event batch as posted (numbers and id bytes moved)'),
      fig('trace.store.apply_ns', apply, 'ns', 'lower', 'per request in the actor: both events applied to a store capped at 100k (LRU evicting)'),
      fig('trace.events.push_merged_ns', pushMerged, 'ns', 'lower', 'per request on the front end when it ends within its hand-over: one FINISHED event'),
      fig('trace.store.apply_merged_ns', applyMerged, 'ns', 'lower', 'per request in the actor, the same: one FINISHED event applied to the full store'),
      fig('trace.tracker.cpu_us', trackerCpu, 'us', 'lower', `CPU per request, all threads, RequestTracker in memory (${requests} requests, 32 per turn)`),
      fig('trace.tracker.log_cpu_us', trackerLogCpu, 'us', 'lower', 'the same with --trace-log-dir (msgpack log, 100 ms flushes)'),
      ...(paced.length === 0
        ? []
        : [fig('trace.tracker.paced_thread_us', paced, 'us', 'lower', `CPU per request of the tracker thread and V8's helper threads, ${PACED_RATE / 1000}k round_robin-shaped req/s, store full at 100k (Linux /proc)`)]),
    ];
  },
};

/** Requests per second of the paced feed: about what one front-end thread serves small JSON at here. */
const PACED_RATE = 14_000;
const TICKS_PER_SECOND = clockTicks();

/**
 * The actor's cost per request: batches (cloned, as received) applied to a store at its 100k cap
 * (evicting). `merged`: one FINISHED event per request instead of DECIDED + OUTCOME.
 */
function applyNs(inputs: readonly { view: RequestProgressView; rec: CompletionRecord }[], merged: boolean, ms: number): number {
  const writer = new EventWriter();
  const store = new TraceStore({ maxEntries: 100_000, ttlMs: 3_600_000 });
  const reader = new EventReader(writer.dictionary);
  const received: EventBatch[] = [];
  for (let b = 0; b < 16; b++) {
    for (let i = 0; i < 256; i++) {
      const x = inputs[b * 256 + i]!;
      if (!merged) writer.decided(x.view, 'cache_aware');
      writer.finished(x.rec, merged);
    }
    received.push(structuredClone(writer.take()!));
  }
  // Where each id starts in each batch's id bytes (every bench id begins with "bench-").
  const idStarts = received.map((b) => {
    const text = Buffer.from(b.ids).toString('latin1');
    const at: number[] = [];
    for (let k = text.indexOf('bench-'); k >= 0; k = text.indexOf('bench-', k + 1)) at.push(k);
    return at;
  });
  let round = 0;
  return (
    nsPerOp(
      () => {
        // fresh ids each round: the "bench-" prefix of every id becomes the round number, so the store
        // keeps evicting as under real traffic
        const k = round & 15;
        const b = received[k]!;
        const tag = (round++).toString(36).padStart(6, '0').slice(-6);
        for (const at of idStarts[k]!) for (let c = 0; c < 6; c++) b.ids[at + c] = tag.charCodeAt(c);
        return reader.apply(b, store);
      },
      ms,
      20,
    ) / 256
  );
}

/** CPU ticks per thread of this process (Linux), or undefined where /proc is not there. */
function threadCpuTicks(): Map<string, number> | undefined {
  try {
    const out = new Map<string, number>();
    for (const tid of readdirSync('/proc/self/task')) {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(tid, Number(f[11]) + Number(f[12]));
    }
    return out;
  } catch {
    return undefined;
  }
}

/**
 * Fill the store to its cap, then feed requests at PACED_RATE for `seconds` (hand-overs as configured, the
 * main thread polling between sends); CPU microseconds per request of every other thread (the tracker's,
 * and V8's platform threads doing its garbage collection), from /proc (clock-tick resolution).
 */
async function pacedThreadUs(tracker: RequestTracker, inputs: readonly { view: RequestProgressView; rec: CompletionRecord }[], seconds: number): Promise<number> {
  const m = inputs.length;
  let i = 0;
  // Shaped like the e2e bench's round_robin decisions: a reason and three scores that differ per request.
  const one = (): void => {
    const x = inputs[i % m]!;
    const reason = `round_robin: counter ${i} mod 8`;
    const scores = { counter: i, available: 8, pick: i & 7 };
    const view = { ...x.view, requestId: `${x.view.requestId}-p${i}`, decision: { ...(x.view.decision as Decision), reason, scores } };
    tracker.decided(view);
    tracker.record({ ...x.rec, requestId: view.requestId, policy: 'round_robin', reason, scores, traceHold: view.traceHold });
    i++;
  };
  while (i < 100_000) {
    for (let k = 0; k < 64; k++) one();
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  await tracker.flush();
  const mainTid = String(process.pid);
  const t0 = threadCpuTicks() as Map<string, number>;
  const from = i;
  const start = performance.now();
  const perMs = PACED_RATE / 1000;
  for (;;) {
    const elapsed = performance.now() - start;
    if (elapsed >= seconds * 1000) break;
    const due = from + Math.floor(elapsed * perMs);
    while (i < due) one();
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  await tracker.flush();
  const t1 = threadCpuTicks() as Map<string, number>;
  let ticks = 0;
  for (const [tid, v] of t1) if (tid !== mainTid) ticks += v - (t0.get(tid) ?? 0);
  return (ticks * 1e6) / TICKS_PER_SECOND / (i - from);
}

async function withTracker(logDir: string | undefined, fn: (t: RequestTracker) => Promise<number>): Promise<number> {
  const tracker = new RequestTracker({ policy: 'cache_aware', maxEntries: 100_000, ttlSeconds: 3600, logDir, logMaxBytes: 64 << 20, logMaxFiles: 8, flushMs: 100, actor: { execArgv: [] } });
  try {
    await tracker.ready();
    return await fn(tracker);
  } finally {
    await tracker.close();
  }
}

/**
 * Feed `n` requests (a decided and a finished event each, 32 per event-loop turn) and wait until the actor
 * applied them all; CPU microseconds per request for the whole process (every thread).
 */
async function feedCpuUs(tracker: RequestTracker | undefined, inputs: readonly { view: RequestProgressView; rec: CompletionRecord }[], n: number): Promise<number> {
  const m = inputs.length;
  const c0 = process.cpuUsage();
  for (let i = 0; i < n; ) {
    for (let k = 0; k < 32 && i < n; k++, i++) {
      const x = inputs[i % m]!;
      // distinct ids, so the store grows to its cap and evicts as it would under real traffic
      const view = { ...x.view, requestId: `${x.view.requestId}-${i}` };
      const rec = { ...x.rec, requestId: view.requestId };
      if (tracker !== undefined) {
        tracker.decided(view);
        rec.traceHold = view.traceHold; // finish.ts copies the request state's mark into its record
        tracker.record(rec);
      } else sink += view.requestId.length + rec.inputTokens;
    }
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  if (tracker !== undefined) await tracker.flush();
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / n;
}

function seqNs(p: Packr, traces: readonly Trace[], ms: number): number {
  const n = traces.length;
  return nsPerOp((i) => p.pack(toLogRecord(traces[i & (n - 1)] as Trace)).length, ms);
}

function recordBytes(traces: readonly Trace[]): { msgpack: number; json: number } {
  const p = logPackr();
  p.pack(toLogRecord(traces[0] as Trace)); // the first record carries the structure
  let m = 0;
  let j = 0;
  const n = 1000;
  for (let i = 1; i <= n; i++) {
    m += p.pack(toLogRecord(traces[i] as Trace)).length;
    j += Buffer.byteLength(JSON.stringify(toLogRecord(traces[i] as Trace)));
  }
  if (sink === -1) console.log(sink);
  return { msgpack: m / n, json: j / n };
}

export default scenario;
