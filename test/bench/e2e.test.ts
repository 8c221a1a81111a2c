import t from 'tap';
import { countSseEvents, MAX_ERROR_SHARE, runProblem, workloadFigures, workloads, type TargetName, type TargetRuns } from '../../bench/lib/e2e.js';
import type { WrkResult } from '../../bench/lib/wrk.js';

function run(rps: number, p99: number, extra: Partial<WrkResult> = {}): WrkResult {
  return {
    threads: 1,
    connections: 64,
    requests: rps * 10,
    durationSec: 10,
    bytesRead: 0,
    requestsPerSec: rps,
    transferBytesPerSec: 0,
    latency: { avgMs: p99 / 3, stdevMs: 1, maxMs: p99 * 2, p50Ms: p99 / 2, p75Ms: p99 / 1.5, p90Ms: p99 / 1.2, p99Ms: p99 },
    errors: { connect: 0, read: 0, write: 0, timeout: 0, non2xx3xx: 0 },
    ...extra,
  };
}

const [NONSTREAM, STREAM] = workloads(100) as [ReturnType<typeof workloads>[0], ReturnType<typeof workloads>[0]];

t.test('workload bodies', async (t) => {
  t.equal(NONSTREAM.name, 'nonstream');
  t.equal(NONSTREAM.chunksPerRequest, 0);
  t.equal((JSON.parse(NONSTREAM.body) as { stream: boolean }).stream, false);
  t.equal(STREAM.chunksPerRequest, 100);
  const s = JSON.parse(STREAM.body) as { stream: boolean; sampling_params: { max_new_tokens: number } };
  t.equal(s.stream, true);
  t.equal(s.sampling_params.max_new_tokens, 100);
});

t.test('per-target medians and paired per-round ratios with stable names', async (t) => {
  // Round 2 is slow for everyone (drift): paired ratios stay flat where ratios of medians would not.
  const measured: Record<TargetName, TargetRuns> = {
    direct: { runs: [run(1000, 10), run(500, 20), run(1000, 10)] },
    nginx: { runs: [run(800, 12), run(400, 24), run(800, 12)] },
    router: { runs: [run(400, 30), run(200, 60), run(400, 30)] },
  };
  const { figures, skipped } = workloadFigures(STREAM, measured, 'wrk -t1 -c64 -d10s, 3 round(s)');
  t.same(skipped, []);
  const byName = new Map(figures.map((f) => [f.name, f]));
  t.same([...byName.keys()], [
    'e2e.stream.direct.rps', 'e2e.stream.direct.chunks_per_s', 'e2e.stream.direct.p50_ms', 'e2e.stream.direct.p99_ms',
    'e2e.stream.nginx.rps', 'e2e.stream.nginx.chunks_per_s', 'e2e.stream.nginx.p50_ms', 'e2e.stream.nginx.p99_ms',
    'e2e.stream.router.rps', 'e2e.stream.router.chunks_per_s', 'e2e.stream.router.p50_ms', 'e2e.stream.router.p99_ms',
    'e2e.stream.router_vs_nginx.rps_ratio', 'e2e.stream.router_vs_nginx.p99_ratio',
    'e2e.stream.router_vs_direct.rps_ratio', 'e2e.stream.router_vs_direct.p99_ratio',
    'e2e.stream.nginx_vs_direct.rps_ratio', 'e2e.stream.nginx_vs_direct.p99_ratio',
  ]);
  t.equal(byName.get('e2e.stream.router.rps')?.value, 400);
  t.equal(byName.get('e2e.stream.router.rps')?.better, 'higher');
  t.equal(byName.get('e2e.stream.router.rps')?.note, 'wrk -t1 -c64 -d10s, 3 round(s)');
  t.equal(byName.get('e2e.stream.router.chunks_per_s')?.value, 40_000);
  t.equal(byName.get('e2e.stream.router.p99_ms')?.value, 30);
  t.equal(byName.get('e2e.stream.router.p99_ms')?.better, 'lower');
  t.equal(byName.get('e2e.stream.router.p50_ms')?.value, 15);
  t.equal(byName.get('e2e.stream.direct.rps')?.spread, 0.25, '(max - min) / 2 / median');
  const rv = byName.get('e2e.stream.router_vs_nginx.rps_ratio');
  t.equal(rv?.value, 0.5);
  t.equal(rv?.spread, 0, 'drift cancels within a round');
  t.equal(rv?.unit, 'x');
  t.equal(byName.get('e2e.stream.router_vs_nginx.p99_ratio')?.value, 2.5);
  t.equal(byName.get('e2e.stream.router_vs_nginx.p99_ratio')?.better, 'lower');
  t.equal(byName.get('e2e.stream.router_vs_direct.rps_ratio')?.value, 0.4);
  t.equal(byName.get('e2e.stream.nginx_vs_direct.p99_ratio')?.value, 1.2);
});

t.test('non-streaming has no chunks figure; errors are noted', async (t) => {
  const withErrors = run(1000, 10, { errors: { connect: 0, read: 1, write: 0, timeout: 0, non2xx3xx: 2 } });
  const measured: Record<TargetName, TargetRuns> = {
    direct: { runs: [withErrors] },
    nginx: { runs: [run(800, 12)] },
    router: { runs: [run(900, 11)] },
  };
  const { figures } = workloadFigures(NONSTREAM, measured, 'load');
  t.notOk(figures.some((f) => f.name.includes('chunks')));
  t.equal(figures.find((f) => f.name === 'e2e.nonstream.direct.rps')?.note, 'load; 3 failed of 10000 requests');
});

t.test('a missing target skips its figures and every ratio that needs it', async (t) => {
  const measured: Record<TargetName, TargetRuns> = {
    direct: { runs: [run(1000, 10)] },
    nginx: { runs: [run(800, 12)] },
    router: { skipped: 'router not built yet' },
  };
  const { figures, skipped } = workloadFigures(NONSTREAM, measured, 'load');
  t.same(skipped, [
    { what: 'e2e.nonstream.router.*', reason: 'router not built yet' },
    { what: 'e2e.nonstream.router_vs_nginx.*', reason: 'router not measured: router not built yet' },
    { what: 'e2e.nonstream.router_vs_direct.*', reason: 'router not measured: router not built yet' },
  ]);
  t.ok(figures.some((f) => f.name === 'e2e.nonstream.nginx_vs_direct.rps_ratio'));
  t.notOk(figures.some((f) => f.name.includes('router')));

  const empty = workloadFigures(NONSTREAM, { direct: { runs: [] }, nginx: {}, router: { runs: [run(1, 1)] } }, 'load');
  t.same(empty.skipped.map((s) => s.what), [
    'e2e.nonstream.direct.*', 'e2e.nonstream.nginx.*',
    'e2e.nonstream.router_vs_nginx.*', 'e2e.nonstream.router_vs_direct.*', 'e2e.nonstream.nginx_vs_direct.*',
  ]);
  t.equal(empty.skipped[0]?.reason, 'not measured');
});

t.test('runProblem: too many errors, nothing done, no distribution', async (t) => {
  t.equal(runProblem(run(1000, 10)), undefined);
  const few = Math.floor(10_000 * MAX_ERROR_SHARE);
  t.equal(runProblem(run(1000, 10, { errors: { connect: 0, read: 0, write: 0, timeout: 0, non2xx3xx: few } })), undefined, 'at the threshold is fine');
  t.match(runProblem(run(1000, 10, { errors: { connect: 0, read: 0, write: 0, timeout: 0, non2xx3xx: few + 1 } })), /101 failed of 10000 requests \(non-2xx 101/);
  t.equal(runProblem(run(0, 10)), 'no request completed');
  const noDist = run(1000, 10);
  t.equal(runProblem({ ...noDist, latency: { ...noDist.latency, p99Ms: Number.NaN } }), 'wrk printed no latency distribution');
});

t.test('SSE event counting', async (t) => {
  t.same(countSseEvents('data: {"a":1}\n\ndata: {"a":2}\n\ndata: [DONE]\n\n'), { events: 2, done: true });
  t.same(countSseEvents('data: {"a":1}\n\n: comment\n\n'), { events: 1, done: false });
  t.same(countSseEvents(''), { events: 0, done: false });
});
