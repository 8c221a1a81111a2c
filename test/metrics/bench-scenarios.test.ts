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

t.test('on/off comparisons: rotated interleaved rounds, medians of per-round ratios', async (t) => {
  const { roundOrder, roundsFor, variantFigures, MIN_ROUNDS } = await import('../../bench/lib/router-variants.js');
  t.same(roundOrder(['off', 'on', 'log'], 1), ['off', 'on', 'log']);
  t.same(roundOrder(['off', 'on', 'log'], 2), ['on', 'log', 'off']);
  t.same(roundOrder(['off', 'on', 'log'], 4), ['off', 'on', 'log']);
  t.equal(roundsFor({ quick: false, runs: 3 }), MIN_ROUNDS, 'several rounds even when --runs asks for fewer');
  t.equal(roundsFor({ quick: false, runs: 9 }), 9);
  t.equal(roundsFor({ quick: true, runs: 2 }), 2);
  const run = (rps: number, p99: number, cpuUs: number) => ({ wrk: { requestsPerSec: rps, latency: { p99Ms: p99 } }, cpuUs }) as never;
  const runs = new Map([
    ['off', [run(1000, 10, 100), run(800, 20, 100), run(1000, 10, 100)]],
    ['on', [run(990, 11, 103), run(400, 20, 110), run(1000, 10, 101)]],
  ]);
  const figs = variantFigures({ figurePrefix: 'x.e2e', variants: [{ name: 'off', args: () => [], note: 'off' }, { name: 'on', args: () => [], note: 'on' }], baseline: 'off', ratios: [{ variant: 'on', prefix: '', label: 'on / off' }] }, 'stream', runs, 'note');
  const by = new Map(figs.map((f) => [f.name, f.value]));
  t.equal(by.get('x.e2e.stream.rps_ratio'), 0.99, 'the median ratio: one bad round does not move it');
  t.equal(by.get('x.e2e.stream.p99_ratio'), 1);
  t.equal(by.get('x.e2e.stream.cpu_ratio'), 1.03);
  t.equal(by.get('x.e2e.stream.on_rps'), 990);
  t.same([...by.keys()], ['x.e2e.stream.rps_ratio', 'x.e2e.stream.p99_ratio', 'x.e2e.stream.cpu_ratio', 'x.e2e.stream.off_cpu_us', 'x.e2e.stream.on_cpu_us', 'x.e2e.stream.off_rps', 'x.e2e.stream.on_rps', 'x.e2e.stream.off_p99_ms', 'x.e2e.stream.on_p99_ms'], 'no thread split without per-thread CPU');
  // With the main thread's CPU measured (Linux), cpu_us is split into the front end and the other threads.
  const split = (cpuUs: number, frontCpuUs: number) => ({ wrk: { requestsPerSec: 1000, latency: { p99Ms: 10 } }, cpuUs, frontCpuUs }) as never;
  const splitRuns = new Map([
    ['off', [split(100, 90), split(102, 92), split(98, 89)]],
    ['on', [split(110, 94), split(109, 95), split(111, 93)]],
  ]);
  const byThread = new Map(variantFigures({ figurePrefix: 'x.e2e', variants: [{ name: 'off', args: () => [], note: 'off' }, { name: 'on', args: () => [], note: 'on' }], baseline: 'off', ratios: [{ variant: 'on', prefix: '', label: 'on / off' }] }, 'json', splitRuns, 'note').map((f) => [f.name, f.value]));
  t.equal(byThread.get('x.e2e.json.off_front_cpu_us'), 90);
  t.equal(byThread.get('x.e2e.json.on_front_cpu_us'), 94);
  t.equal(byThread.get('x.e2e.json.off_threads_cpu_us'), 10, 'median of 10, 10, 9');
  t.equal(byThread.get('x.e2e.json.on_threads_cpu_us'), 16, 'median of 16, 14, 18');
});
