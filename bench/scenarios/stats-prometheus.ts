/**
 * The Prometheus exposition: our own writer (src/metrics/prom-text.ts) against prom-client, on the same
 * metric set (8 workers: every sgl-router family, the 4 histogram families with their buckets).
 *
 *   prom.render.main_us_w8        what a scrape costs the front end: counters/gauges rendered from plain
 *                                 numbers and the worker table, plus the join with the actor's text
 *   prom.render.actor_us_w8       the histogram families, rendered in the stats actor thread
 *   prom.render.promclient_us_w8  prom-client's registry.metrics() for the same families and series
 *   prom.inc.own_ns               one counter increment on the hot path (RouterMetrics.accepted)
 *   prom.inc.promclient_ns        prom-client counter.inc({ route }) (labels object per call)
 *   prom.observe.own_ns           one fixed-bucket observation (what the actor adds per value)
 *   prom.observe.promclient_ns    prom-client histogram.observe({ worker, gpu }, v)
 *
 * prom-client is not a dependency: its figures are measured when it can be imported, from
 * SWITCHYARD_BENCH_PROM_CLIENT (a path to the package's index.js) or a resolvable `prom-client`.
 */
import { pathToFileURL } from 'node:url';
import { initWebAssembly } from 'hdr-histogram-js';
import { WorkerTable } from '../../src/actors/worker-table.js';
import { WorkerRegistry } from '../../src/workers/registry.js';
import { RouterMetrics } from '../../src/metrics/counters.js';
import { renderMetrics, membersOf, type MetricsSource } from '../../src/metrics/prometheus.js';
import { StatsStore } from '../../src/metrics/stats-store.js';
import { FixedHistogram, ITL_BUCKETS_S, toMicros, TTFT_BUCKETS_S, DURATION_BUCKETS_S } from '../../src/metrics/buckets.js';
import { Rec, REC_HEADER } from '../../src/metrics/stats-protocol.js';
import type { PolicyHost } from '../../src/policies/host.js';
import { reportSkip, summarize, type BenchContext, type Figure, type Scenario } from '../lib/scenario.js';

const WORKERS = 8;
let sink = 0;

function timeUs(fn: () => unknown, ms: number): number {
  const samples: number[] = [];
  const until = Date.now() + ms;
  do {
    const t0 = process.hrtime.bigint();
    const v = fn();
    // Buffer.byteLength flattens the string (V8 ropes): the socket write would pay that too.
    if (typeof v === 'string') sink += Buffer.byteLength(v);
    samples.push(Number(process.hrtime.bigint() - t0) / 1000);
  } while (Date.now() < until || samples.length < 5);
  return summarize(samples).median;
}

function nsPerOp(fn: (i: number) => void, ms: number): number {
  const batch = 200_000;
  const samples: number[] = [];
  const until = Date.now() + ms;
  do {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < batch; i++) fn(i);
    samples.push(Number(process.hrtime.bigint() - t0) / batch);
  } while (Date.now() < until);
  return summarize(samples).median;
}

/* eslint-disable @typescript-eslint/no-explicit-any */
async function loadPromClient(): Promise<any | undefined> {
  const path = process.env['SWITCHYARD_BENCH_PROM_CLIENT'];
  try {
    return await import(path !== undefined && path !== '' ? pathToFileURL(path).href : 'prom-client');
  } catch {
    return undefined;
  }
}

/** The same families and series as renderMetrics + the actor's histograms, in prom-client. */
function promClientRegistry(pc: any, urls: readonly string[]): { render: () => Promise<string>; counter: any; histogram: any } {
  const reg = new pc.Registry();
  const mk = (Kind: any, name: string, labelNames: string[], extra: Record<string, unknown> = {}): any => new Kind({ name, help: `${name} help`, labelNames, registers: [reg], ...extra });
  const requests = mk(pc.Counter, 'sgl_router_requests_total', ['route']);
  for (const r of ['/generate', '/v1/chat/completions', '/v1/completions', 'other']) requests.inc({ route: r }, 10);
  const errors = mk(pc.Counter, 'sgl_router_request_errors_total', ['route', 'error_type']);
  errors.inc({ route: '/generate', error_type: 'http_500' });
  for (const n of ['sgl_router_retries_total', 'sgl_router_retries_exhausted_total', 'sgl_router_cache_hits_total', 'sgl_router_cache_misses_total', 'sgl_router_load_balancing_events_total']) mk(pc.Counter, n, []).inc(0);
  for (const n of ['sgl_router_active_workers', 'sgl_router_max_load', 'sgl_router_min_load']) mk(pc.Gauge, n, []).set(1);
  const perWorkerGauges = ['sgl_router_cb_state', 'sgl_router_worker_health', 'sgl_router_worker_load', 'sgl_router_running_requests', 'sgl_router_tree_size'].map((n) => mk(pc.Gauge, n, ['worker']));
  const processed = mk(pc.Counter, 'sgl_router_processed_requests_total', ['worker']);
  const decisions = mk(pc.Counter, 'sgl_router_policy_decisions_total', ['policy', 'worker']);
  const admission = mk(pc.Counter, 'sgl_router_admission_total', ['action', 'trigger']);
  for (const [a, t] of [['single', 'none'], ['multi', 'large_input'], ['multi', 'large_kv'], ['multi', 'memory_pressure']]) admission.inc({ action: a, trigger: t }, 0);
  const duration = mk(pc.Histogram, 'sgl_router_request_duration_seconds', ['route'], { buckets: DURATION_BUCKETS_S });
  for (const r of ['/generate', '/v1/chat/completions', '/v1/completions', 'other']) duration.observe({ route: r }, 0.2);
  const hists = [
    mk(pc.Histogram, 'sgl_router_ttft_seconds', ['worker', 'gpu'], { buckets: TTFT_BUCKETS_S }),
    mk(pc.Histogram, 'sgl_router_inter_token_latency_seconds', ['worker', 'gpu'], { buckets: ITL_BUCKETS_S }),
    mk(pc.Histogram, 'sgl_router_tpot_seconds', ['worker', 'gpu'], { buckets: ITL_BUCKETS_S }),
  ];
  urls.forEach((url, i) => {
    for (const g of perWorkerGauges) g.set({ worker: url }, 1);
    processed.inc({ worker: url }, 5);
    decisions.inc({ policy: 'round_robin', worker: url }, 5);
    for (const h of hists) h.observe({ worker: url, gpu: String(i) }, 0.02);
  });
  return { render: () => reg.metrics(), counter: requests, histogram: hists[1] };
}

const scenario: Scenario = {
  name: 'stats-prometheus',
  description: 'Prometheus exposition: own writer vs prom-client (render per scrape, counter inc, histogram observe), 8 workers',
  gate: true,
  async run(ctx: BenchContext): Promise<Figure[]> {
    await initWebAssembly();
    const ms = ctx.quick ? 200 : Math.max(400, Math.round((ctx.durationSec * 1000) / 8));
    const table = WorkerTable.create(64);
    const registry = new WorkerRegistry(table, { requestTimeoutMs: 1000, initiallyHealthy: true });
    const urls = Array.from({ length: WORKERS }, (_, i) => `http://127.0.0.1:${30001 + i}`);
    registry.addMany(urls);
    const metrics = new RouterMetrics(64);
    const src: MetricsSource = { registry, table, counters: { requests: 40, completed: 39, failed: 1, aborted: 0, retries: 0, active: 0 }, policy: { name: 'round_robin' } as PolicyHost };
    const store = new StatsStore({ sliceMs: 10_000, useWasm: true, now: () => 0 });
    store.defineWorkers(urls.map((url, i) => ({ id: i, url, nodeId: i })));
    const rec = new Float64Array(REC_HEADER + 10).fill(0);
    rec[Rec.E2eUs] = 200_000;
    rec[Rec.TtftUs] = 20_000;
    rec[Rec.OutputTokens] = 11;
    rec[Rec.ItlCount] = 10;
    for (let i = 0; i < 10; i++) rec[REC_HEADER + i] = 18;
    for (let w = 0; w < WORKERS; w++) {
      rec[Rec.Worker] = w;
      store.ingest(rec);
    }
    const members = membersOf(src);
    const histText = store.renderPrometheus(members);

    const own = { main: [] as number[], actor: [] as number[], inc: [] as number[], observe: [] as number[] };
    const pcs = { render: [] as number[], inc: [] as number[], observe: [] as number[] };
    const pc = await loadPromClient();
    const pcReg = pc === undefined ? undefined : promClientRegistry(pc, urls);
    const fixed = new FixedHistogram(toMicros(ITL_BUCKETS_S));
    const values = [800, 2_500, 12_000, 18_000, 22_000, 45_000, 90_000, 400_000];
    for (let r = 0; r < ctx.runs; r++) {
      own.main.push(timeUs(() => renderMetrics(src, metrics, histText), ms));
      own.actor.push(timeUs(() => store.renderPrometheus(members), ms));
      own.inc.push(nsPerOp(() => metrics.accepted('chat'), ms / 2));
      own.observe.push(nsPerOp((i) => fixed.record(values[i & 7] as number), ms / 2));
      if (pcReg !== undefined) {
        const samples: number[] = [];
        const until = Date.now() + ms;
        do {
          const t0 = process.hrtime.bigint();
          sink += Buffer.byteLength(await pcReg.render());
          samples.push(Number(process.hrtime.bigint() - t0) / 1000);
        } while (Date.now() < until || samples.length < 5);
        pcs.render.push(summarize(samples).median);
        const labels = { route: '/v1/chat/completions' };
        pcs.inc.push(nsPerOp(() => pcReg.counter.inc(labels), ms / 2));
        const hl = { worker: urls[0], gpu: '0' };
        pcs.observe.push(nsPerOp((i) => pcReg.histogram.observe(hl, (values[i & 7] as number) / 1e6), ms / 2));
      }
      ctx.log(`round ${r + 1}/${ctx.runs}: render main ${own.main.at(-1)?.toFixed(1)} us, actor ${own.actor.at(-1)?.toFixed(1)} us${pcReg === undefined ? '' : `, prom-client ${pcs.render.at(-1)?.toFixed(1)} us`}`);
    }
    await registry.close();
    store.destroy();
    const f = (name: string, v: number[], unit: string, note: string): Figure => {
      const { median, spread } = summarize(v);
      return { name, value: median, unit, better: 'lower', spread, note };
    };
    const figures = [
      f('prom.render.main_us_w8', own.main, 'us', 'front end per scrape (counters, gauges, join)'),
      f('prom.render.actor_us_w8', own.actor, 'us', 'histogram families, in the stats actor'),
      f('prom.inc.own_ns', own.inc, 'ns', 'RouterMetrics.accepted(route)'),
      f('prom.observe.own_ns', own.observe, 'ns', 'FixedHistogram.record (20 buckets)'),
    ];
    if (pcReg === undefined) reportSkip(ctx, 'prom.*.promclient_*', 'prom-client is not installed (set SWITCHYARD_BENCH_PROM_CLIENT to its index.js)');
    else {
      figures.push(
        f('prom.render.promclient_us_w8', pcs.render, 'us', 'prom-client registry.metrics(), same families'),
        f('prom.inc.promclient_ns', pcs.inc, 'ns', 'prom-client counter.inc({ route })'),
        f('prom.observe.promclient_ns', pcs.observe, 'ns', 'prom-client histogram.observe({ worker, gpu }, v)'),
      );
    }
    if (sink === -1) ctx.log('unreachable');
    return figures;
  },
};

export default scenario;
