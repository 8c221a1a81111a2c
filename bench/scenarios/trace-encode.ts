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
 *                                   the per-turn batch (what the hot path pays with tracking on)
 *   trace.events.crossing_ns        per request, structuredClone of a 256-request batch: serialise and
 *                                   deserialise on one thread, an upper bound of what postMessage costs
 *                                   the front end once per event-loop turn
 *   trace.store.apply_ns            per request, the actor applying both events to a 100k-entry store
 *
 * Medians over ctx.runs of time-boxed batches; spread from the min/max of the runs.
 */
import { Packr } from 'msgpackr';
import { logPackr, toLogRecord } from '../../src/tracking/log-format.js';
import { applyEvents, pushDecided, pushFinished } from '../../src/tracking/events.js';
import { TraceStore } from '../../src/tracking/store.js';
import type { Trace } from '../../src/tracking/types.js';
import type { RequestProgressView } from '../../src/frontend/context.js';
import type { CompletionRecord } from '../../src/proxy/completion.js';
import type { WorkerEntry } from '../../src/workers/registry.js';
import { summarize, type BenchContext, type Figure, type Scenario } from '../lib/scenario.js';

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

      // The front end: two events per request into the turn's flat batch, a new batch every 256 requests.
      let buf: unknown[] = [];
      push.push(
        nsPerOp((i) => {
          const x = inputs[i & (N - 1)]!;
          pushDecided(buf, x.view, 'cache_aware');
          pushFinished(buf, x.rec);
          if ((i & 255) === 255) buf = [];
          return 1;
        }, ms),
      );
      // One crossing of a 256-request batch (decided + finished each), per request.
      const batch: unknown[] = [];
      for (let i = 0; i < 256; i++) {
        pushDecided(batch, inputs[i]!.view, 'cache_aware');
        pushFinished(batch, inputs[i]!.rec);
      }
      crossing.push(nsPerOp(() => (structuredClone(batch) as unknown[]).length, ms, 20) / 256);
      // The actor: apply those batches (cloned, as received) to a store at 100k entries.
      const store = new TraceStore({ maxEntries: 100_000, ttlMs: 3_600_000 });
      const received: unknown[][] = [];
      const idSlots: number[] = []; // where the request ids sit in a batch (the same in every batch)
      for (let b = 0; b < 16; b++) {
        const part: unknown[] = [];
        for (let i = 0; i < 256; i++) {
          const x = inputs[b * 256 + i]!;
          if (b === 0) idSlots.push(part.length + 1);
          pushDecided(part, x.view, 'cache_aware');
          if (b === 0) idSlots.push(part.length + 1);
          pushFinished(part, x.rec);
        }
        received.push(structuredClone(part) as unknown[]);
      }
      let round = 0;
      apply.push(
        nsPerOp(
          () => {
            // fresh ids each round so the store grows to (and then stays at) its cap
            const b = received[round++ & 15]!;
            // fresh ids in place (a decided and a finished event per request)
            for (let k = 0; k < idSlots.length; k += 2) {
              const id = `r${round}-${k}`;
              b[idSlots[k] as number] = id;
              b[idSlots[k + 1] as number] = id;
            }
            return applyEvents(b, store);
          },
          ms,
          20,
        ) / 256,
      );
    }
    const bytes = recordBytes(traces);
    return [
      fig('trace.encode.msgpack_seq_ns', seq, 'ns', 'lower', 'msgpackr sequential records (the trace log format), one finished trace'),
      fig('trace.encode.msgpack_shared_ns', shared, 'ns', 'lower', 'msgpackr shared structures, same trace'),
      fig('trace.encode.json_ns', json, 'ns', 'lower', 'JSON.stringify, same trace'),
      fig('trace.encode.json_vs_msgpack', ratio, 'x', 'higher', 'json_ns / msgpack_seq_ns, same round'),
      { name: 'trace.record.msgpack_bytes', value: bytes.msgpack, unit: 'B', better: 'lower', note: 'per trace in the log, structure already defined' },
      { name: 'trace.record.json_bytes', value: bytes.json, unit: 'B', better: 'lower', note: 'per trace as JSON text' },
      fig('trace.events.push_ns', push, 'ns', 'lower', 'per request on the front end: decided + finished events appended to the turn batch'),
      fig('trace.events.crossing_ns', crossing, 'ns', 'lower', 'per request: structured clone of a 256-request event batch (one postMessage per turn)'),
      fig('trace.store.apply_ns', apply, 'ns', 'lower', 'per request in the actor: both events applied to a store capped at 100k (LRU evicting)'),
    ];
  },
};

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
