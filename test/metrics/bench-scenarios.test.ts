/**
 * The stats benchmarks still run and report every figure they promise (finite, positive). Speed is not
 * asserted here (the machine is shared); that is what `npm run bench` is for.
 */
import t from 'tap';
import hdrRecord from '../../bench/scenarios/hdr-record.js';
import statsPrometheus from '../../bench/scenarios/stats-prometheus.js';
import type { BenchContext } from '../../bench/lib/scenario.js';

const ctx = (skipped: string[]): BenchContext => ({ quick: true, durationSec: 0.5, runs: 1, log: () => undefined, skip: (what) => skipped.push(what) });

t.test('hdr-record reports its figures', async (t) => {
  const figures = await hdrRecord.run(ctx([]));
  t.same(figures.map((f) => f.name), ['hdr.record.js_ns', 'hdr.record.wasm_ns', 'hdr.record.wasm_speedup', 'stats.ingest.us_per_request', 'stats.snapshot.ms_w8', 'stats.checkpoint.ms_w8', 'stats.pipeline.cpu_us_per_stream', 'stats.pipeline.cpu_us_per_stream_per_turn']);
  // CPU differences can come out 0 on a busy machine (a baseline is subtracted); the rest are positive.
  for (const f of figures) t.ok(Number.isFinite(f.value) && (f.name.startsWith('stats.pipeline.') ? f.value >= 0 : f.value > 0), `${f.name} = ${f.value} ${f.unit}`);
});

t.test('stats-prometheus reports its own figures, and prom-client\'s or a skip', async (t) => {
  const skipped: string[] = [];
  const figures = await statsPrometheus.run(ctx(skipped));
  const names = figures.map((f) => f.name);
  for (const n of ['prom.render.main_us_w8', 'prom.render.actor_us_w8', 'prom.inc.own_ns', 'prom.observe.own_ns']) t.ok(names.includes(n), n);
  t.ok(names.includes('prom.render.promclient_us_w8') || skipped.includes('prom.*.promclient_*'), 'prom-client measured or reported as skipped');
  for (const f of figures) t.ok(Number.isFinite(f.value) && f.value > 0, `${f.name} = ${f.value} ${f.unit}`);
});
