import t from 'tap';
import { createServer, type AddressInfo } from 'node:net';
import { createServer as createHttpServer, type RequestListener } from 'node:http';
import { countSseEvents, MAX_ERROR_SHARE, runProblem, sanityCheck, sanityCheckWithin, workloadFigures, workloads, type TargetName, type TargetRuns } from '../../bench/lib/e2e.js';
import { startLightBackend } from '../../bench/fixtures/light-backend.js';
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

async function fakeServer(t: { teardown(fn: () => void): void }, handler: RequestListener): Promise<string> {
  const server = createHttpServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

t.test('sanity check: the light backend passes, wrong answers are named', async (t) => {
  const ws = workloads(100);
  const b = await startLightBackend({ host: '127.0.0.1', port: 0, chunks: 100, outputTokens: 16, model: 'm' });
  t.teardown(() => b.close());
  t.equal(await sanityCheck(`http://127.0.0.1:${b.port}`, ws), undefined);

  const short = await startLightBackend({ host: '127.0.0.1', port: 0, chunks: 99, outputTokens: 16, model: 'm' });
  t.teardown(() => short.close());
  t.equal(await sanityCheck(`http://127.0.0.1:${short.port}`, ws), 'stream answer had 99 events (expected 100)');

  const errorPage = await fakeServer(t, (_req, res) => res.writeHead(502).end('<html>Bad Gateway</html>'));
  t.equal(await sanityCheck(errorPage, ws), 'nonstream request answered 502: <html>Bad Gateway</html>');
  const notJson = await fakeServer(t, (_req, res) => res.writeHead(200).end('hello'));
  t.equal(await sanityCheck(notJson, ws), 'nonstream answer is not JSON: hello');
  const noMeta = await fakeServer(t, (_req, res) => res.writeHead(200).end('{"text":"x"}'));
  t.match(await sanityCheck(noMeta, ws), /^nonstream answer has no meta_info/);
  const truncated = await fakeServer(t, (req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      if (body.includes('"stream":true')) res.writeHead(200).end('data: {"text":"a"}\n\n');
      else res.writeHead(200).end('{"meta_info":{}}');
    });
  });
  t.equal(await sanityCheck(truncated, ws), 'stream answer had 1 events (expected 100) and no [DONE]');

  const closed = createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const port = (closed.address() as AddressInfo).port;
  closed.close();
  t.match(await sanityCheck(`http://127.0.0.1:${port}`, ws), /^nonstream request failed: .*ECONNREFUSED/);
});

t.test('sanity check is retried while a proxy is still warming up', async (t) => {
  const ws = workloads(100);
  const b = await startLightBackend({ host: '127.0.0.1', port: 0, chunks: 100, outputTokens: 16, model: 'm' });
  t.teardown(() => b.close());
  let calls = 0;
  // A "router" that answers 503 to its first requests, then proxies to the light backend.
  const warming = await fakeServer(t, (req, res) => {
    calls++;
    if (calls <= 2) {
      res.writeHead(503).end('{"error":{"code":"no_healthy_workers"}}');
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('end', () => {
      void fetch(`http://127.0.0.1:${b.port}/generate`, { method: 'POST', body: Buffer.concat(chunks) })
        .then((r) => r.text())
        .then((text) => res.writeHead(200).end(text));
    });
  });
  t.equal(await sanityCheckWithin(warming, ws, 5000, 10), undefined);
  t.ok(calls >= 4, 'retried until both workloads passed');
  const never = await fakeServer(t, (_req, res) => res.writeHead(503).end('down'));
  t.equal(await sanityCheckWithin(never, ws, 100, 10), 'nonstream request answered 503: down');
});
