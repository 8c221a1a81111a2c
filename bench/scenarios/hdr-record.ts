/**
 * Costs inside the stats actor (src/metrics/stats-store.ts), measured in this process:
 *
 *   hdr.record.js_ns            ns per hdr-histogram-js recordValue, JavaScript build (2 significant
 *                               digits, 32-bit counts, latency-like values: log-normal around 20 ms in us)
 *   hdr.record.wasm_ns          the same on the WebAssembly build (after initWebAssembly)
 *   hdr.record.wasm_speedup     js_ns / wasm_ns of the same round (why the actor uses WASM)
 *   stats.ingest.us_per_request one packed request with 100 ITL gaps into a StatsStore (what the actor
 *                               does per finished stream: ~105 HDR records plus fixed buckets)
 *   stats.snapshot.ms_w8        one /stats snapshot: 3 windows x 8 workers x 6 metrics merged and
 *                               summarised, every ring slice populated
 *   stats.checkpoint.ms_w8      one checkpoint (cumulative histograms, encodeIntoCompressedBase64)
 *   stats.pipeline.cpu_us_per_stream          CPU (all threads: front end + stats actor) per finished
 *                               100-gap stream pushed through a real StatsHost and its actor, one request
 *                               per event-loop turn (the usual case under steady load), batched by the
 *                               default 10 ms flush interval; the cost of the bare turn is subtracted
 *   stats.pipeline.cpu_us_per_stream_per_turn the same with one crossing per turn (flushIntervalMs 0):
 *                               why records are held for a few milliseconds
 *
 * Medians over ctx.runs; spread from the min/max of the runs.
 */
import { build, initWebAssembly, type Histogram } from 'hdr-histogram-js';
import { StatsStore } from '../../src/metrics/stats-store.js';
import { StatsHost } from '../../src/metrics/stats-host.js';
import type { CompletionRecord } from '../../src/proxy/completion.js';
import { Rec, REC_HEADER } from '../../src/metrics/stats-protocol.js';
import { summarize, type BenchContext, type Figure, type Scenario } from '../lib/scenario.js';

const VALUES = 8192;

function latencyValues(): Float64Array {
  // Deterministic log-normal-ish spread around 20 ms, in microseconds.
  const out = new Float64Array(VALUES);
  let x = 12345;
  for (let i = 0; i < VALUES; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    const u = x / 2147483648;
    out[i] = Math.round(20_000 * Math.exp((u - 0.5) * 2));
  }
  return out;
}

function histogram(useWebAssembly: boolean): Histogram {
  return build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 2, bitBucketSize: 32, autoResize: false, useWebAssembly });
}

let sink = 0;

function recordNs(h: Histogram, values: Float64Array, ms: number): number {
  const batch = 100_000;
  const samples: number[] = [];
  const until = Date.now() + ms;
  do {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < batch; i++) h.recordValue(values[i & (VALUES - 1)] as number);
    samples.push(Number(process.hrtime.bigint() - t0) / batch);
  } while (Date.now() < until);
  sink += h.totalCount;
  return summarize(samples).median;
}

/** One request's packed record with `gaps` ITL gaps, for worker `w`. */
function packed(w: number, gaps: number, values: Float64Array, seed: number): Float64Array {
  const out = new Float64Array(REC_HEADER + gaps);
  out[Rec.Worker] = w;
  out[Rec.Route] = 1;
  out[Rec.Status] = 0;
  out[Rec.Stream] = 1;
  out[Rec.DurationUs] = 2_100_000;
  out[Rec.E2eUs] = 2_000_000;
  out[Rec.TtftUs] = (values[seed & (VALUES - 1)] as number) * 5;
  out[Rec.QueueUs] = 150;
  out[Rec.ServerQueueUs] = 3_000;
  out[Rec.InputTokens] = 512;
  out[Rec.OutputTokens] = gaps + 1;
  out[Rec.CachedTokens] = 128;
  out[Rec.ItlCount] = gaps;
  for (let i = 0; i < gaps; i++) out[REC_HEADER + i] = (values[(seed + i) & (VALUES - 1)] as number) / 1000; // ms
  return out;
}

function figure(name: string, values: number[], unit: string, better: Figure['better'], note: string): Figure {
  const { median, spread } = summarize(values);
  return { name, value: median, unit, better, spread, note };
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** CPU microseconds (all threads) per record pushed through a StatsHost, one record per turn, minus the bare turn. */
async function pipelineCpuUs(flushIntervalMs: number, n: number): Promise<number> {
  const host = new StatsHost({ checkpointIntervalMs: 0, askTimeoutMs: 120_000, flushIntervalMs });
  try {
    await host.actor.whenAvailable();
    const itl = Array.from({ length: 100 }, (_, i) => 10 + (i % 7));
    const members = [0, 1, 2, 3].map((i) => ({ url: `http://127.0.0.1:3100${i}`, nodeId: i }));
    const rec = (i: number): CompletionRecord => ({
      requestId: 'bench', route: 'generate', stream: true, workerUrl: members[i & 3]?.url ?? '', slot: i & 3, nodeId: i & 3, policy: 'round_robin', reason: '', scores: undefined,
      status: 'completed', httpStatus: 200, errorCode: undefined, errorMessage: undefined, timestamp: Date.now(), arrivedAt: 1, decidedAt: 1.1, sentAt: 1.2, firstTokenAt: 21, finishedAt: 1021,
      inputTokens: 10, outputTokens: 101, cachedTokens: 0, queueTime: 0.001, itl, attempts: 1,
    });
    for (let i = 0; i < 1000; i++) host.record(rec(i)); // warm both threads
    await host.snapshot(members);
    const bare0 = process.cpuUsage();
    for (let i = 0; i < n; i++) await turn();
    const bare = process.cpuUsage(bare0);
    const c0 = process.cpuUsage();
    for (let i = 0; i < n; i++) {
      host.record(rec(i));
      await turn();
    }
    await host.snapshot(members); // everything ingested
    const c = process.cpuUsage(c0);
    // The bare turns are measured separately: on a busy machine their share can come out larger (clamped).
    return Math.max(0, c.user + c.system - (bare.user + bare.system)) / n;
  } finally {
    await host.close();
  }
}

const scenario: Scenario = {
  name: 'hdr-record',
  description: 'stats actor costs: HDR record (JS vs WASM), ingest per request, snapshot and checkpoint for 8 workers',
  gate: true,
  async run(ctx: BenchContext): Promise<Figure[]> {
    await initWebAssembly();
    const values = latencyValues();
    const ms = ctx.quick ? 150 : Math.max(300, Math.round((ctx.durationSec * 1000) / 10));
    const js: number[] = [];
    const wasm: number[] = [];
    const speedup: number[] = [];
    const jsH = histogram(false);
    const wasmH = histogram(true);
    for (let r = 0; r < ctx.runs; r++) {
      const a = recordNs(jsH, values, ms);
      const b = recordNs(wasmH, values, ms);
      js.push(a);
      wasm.push(b);
      speedup.push(a / b);
      ctx.log(`round ${r + 1}/${ctx.runs}: record js ${a.toFixed(1)} ns, wasm ${b.toFixed(1)} ns`);
    }
    wasmH.destroy();

    const ingest: number[] = [];
    const snapshot: number[] = [];
    const checkpoint: number[] = [];
    const members = Array.from({ length: 8 }, (_, i) => ({ url: `http://127.0.0.1:${30001 + i}`, nodeId: i }));
    for (let r = 0; r < ctx.runs; r++) {
      const clock = { now: 0 };
      const store = new StatsStore({ sliceMs: 10_000, useWasm: true, now: () => clock.now });
      store.defineWorkers(members.map((m, i) => ({ id: i, url: m.url, nodeId: m.nodeId })));
      const records = Array.from({ length: 64 }, (_, i) => packed(i % 8, 100, values, i * 97));
      // Populate every slice of the 10-s ring and 5 minutes of folded data for all 8 workers.
      for (let s = 0; s < 36; s++) {
        clock.now = s * 10_000;
        for (const rec of records) store.ingest(rec);
      }
      const n = ctx.quick ? 2000 : 10_000;
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < n; i++) store.ingest(records[i & 63] as Float64Array);
      ingest.push(Number(process.hrtime.bigint() - t0) / n / 1000);
      const reps = ctx.quick ? 5 : 20;
      const t1 = process.hrtime.bigint();
      for (let i = 0; i < reps; i++) sink += store.snapshot(members).windows.cumulative.requests.total;
      snapshot.push(Number(process.hrtime.bigint() - t1) / reps / 1e6);
      const t2 = process.hrtime.bigint();
      for (let i = 0; i < reps; i++) sink += store.checkpoint().workers.length;
      checkpoint.push(Number(process.hrtime.bigint() - t2) / reps / 1e6);
      store.destroy();
    }
    const pipeline: number[] = [];
    const pipelinePerTurn: number[] = [];
    const n = ctx.quick ? 3000 : 20_000;
    for (let r = 0; r < ctx.runs; r++) {
      pipeline.push(await pipelineCpuUs(10, n));
      pipelinePerTurn.push(await pipelineCpuUs(0, n));
      ctx.log(`round ${r + 1}/${ctx.runs}: pipeline ${pipeline.at(-1)?.toFixed(1)} us CPU per stream (10 ms flush), ${pipelinePerTurn.at(-1)?.toFixed(1)} us (per turn)`);
    }
    if (sink === -1) ctx.log('unreachable');
    return [
      figure('hdr.record.js_ns', js, 'ns', 'lower', 'hdr-histogram-js recordValue, JS build, 2 digits'),
      figure('hdr.record.wasm_ns', wasm, 'ns', 'lower', 'same values on the WebAssembly build'),
      figure('hdr.record.wasm_speedup', speedup, 'x', 'higher', 'JS / WASM ns per record, same round'),
      figure('stats.ingest.us_per_request', ingest, 'us', 'lower', 'one streamed request with 100 ITL gaps (WASM store)'),
      figure('stats.snapshot.ms_w8', snapshot, 'ms', 'lower', '1m + 5m + cumulative, 8 workers x 6 metrics, full rings'),
      figure('stats.checkpoint.ms_w8', checkpoint, 'ms', 'lower', 'cumulative histograms of 8 workers, compressed base64'),
      figure('stats.pipeline.cpu_us_per_stream', pipeline, 'us', 'lower', 'CPU, all threads, per 100-gap stream: StatsHost + actor, 10 ms flush'),
      figure('stats.pipeline.cpu_us_per_stream_per_turn', pipelinePerTurn, 'us', 'lower', 'the same with one crossing per event-loop turn'),
    ];
  },
};

export default scenario;
