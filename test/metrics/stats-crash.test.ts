/**
 * A stats-actor crash under load must not make any Prometheus counter step back: the restarted thread is
 * rebuilt from the latest checkpoint plus every sample batch sent since (kept by the host), so afterwards
 * every counter and histogram series is >= what it was before, and the totals equal the requests sent.
 */
import t from 'tap';
import { startTestRouter } from '../helpers/router.js';
import { startFixtureBackend } from '../helpers/fixture-backend.js';
import { get, post, waitFor } from '../helpers/client.js';
import type { StartedRouter } from '../../src/router.js';
import type { StatsHost } from '../../src/metrics/stats-host.js';
import { parsePrometheusText, seriesKey, valueOf, type Family } from './prom-parser.js';

async function scrape(r: StartedRouter): Promise<Map<string, Family>> {
  const url = r.observability.prometheus?.url;
  if (url === undefined) throw new Error('no Prometheus listener');
  const res = await get(url);
  if (res.status !== 200) throw new Error(`GET /metrics: ${res.status} ${res.body}`);
  return parsePrometheusText(res.body);
}

/** Every sample of every counter and histogram family, by series key. */
function monotonicSeries(fams: Map<string, Family>): Map<string, number> {
  const out = new Map<string, number>();
  for (const f of fams.values()) {
    if (f.type !== 'counter' && f.type !== 'histogram') continue;
    for (const s of f.samples) out.set(seriesKey(s.name, s.labels), s.value);
  }
  return out;
}

async function killThread(stats: StatsHost): Promise<void> {
  if (!(await stats.actor.killThread())) throw new Error('no stats thread');
}

t.test('counters survive a stats-actor crash under load and add up to the requests sent', async (t) => {
  const fb = await startFixtureBackend();
  t.teardown(() => fb.close());
  fb.handler = (rec, res) => {
    if (rec.json?.['stream'] !== true) {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ text: 'hi', meta_info: { prompt_tokens: 10, completion_tokens: 2 } }));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    let i = 0;
    const next = (): void => {
      i++;
      res.write(`data: ${JSON.stringify({ text: 'x'.repeat(i), meta_info: { prompt_tokens: 10, completion_tokens: i } })}\n\n`);
      if (i === 4) res.end('data: [DONE]\n\n');
      else setTimeout(next, 1);
    };
    setTimeout(next, 1);
  };
  // Checkpoints every 150 ms: the crash lands between two of them, with batches sent since the last one.
  const stats = { checkpointIntervalMs: 150, askTimeoutMs: 60_000, actor: { execArgv: [] } };
  const r = await startTestRouter(['--worker-urls', fb.url, '--policy', 'round_robin', '--prometheus-port', '0'], { observability: { stats } });
  t.teardown(() => r.close(2000));
  await waitFor(() => r.ctx.registry.healthyCount() === 1, 10_000, 'a healthy worker');
  const host = r.observability.stats;
  if (host === undefined) throw new Error('stats are on by default');

  const TOTAL = 240;
  let sent = 0;
  let streams = 0;
  let okCount = 0;
  const client = async (): Promise<void> => {
    while (sent < TOTAL) {
      const i = sent++;
      const stream = i % 2 === 0;
      if (stream) streams++;
      const res = await post(`${r.url}/generate`, { text: `req ${i}`, stream });
      if (res.status === 200) okCount++;
    }
  };
  const load = Promise.all(Array.from({ length: 6 }, client));

  await waitFor(() => sent >= TOTAL / 3 && host.latestCheckpoint !== null, 30_000, 'load under way and a checkpoint taken');
  const before = monotonicSeries(await scrape(r));
  const restarts = host.actor.restarts;
  t.ok(host.replayHeld.batches >= 0);
  await killThread(host);
  await waitFor(() => host.actor.restarts > restarts && host.actor.available, 60_000, 'the stats thread to restart');
  const afterCrash = monotonicSeries(await scrape(r));
  await load;
  await waitFor(() => r.ctx.counters.active === 0, 10_000, 'requests to finish');
  const fams = await scrape(r);
  const final = monotonicSeries(fams);

  let checked = 0;
  const stepBacks: string[] = [];
  for (const [key, v] of before) {
    checked++;
    const a = afterCrash.get(key);
    const f = final.get(key);
    if (a === undefined || a < v) stepBacks.push(`${key}: ${v} -> ${a} right after the restart`);
    if (f === undefined || f < v) stepBacks.push(`${key}: ${v} -> ${f} at the end`);
  }
  t.ok(checked > 50, `compared ${checked} counter and histogram series`);
  t.same(stepBacks, [], 'no counter stepped back');
  t.equal(host.actor.restarts, restarts + 1, 'one restart');
  t.equal(host.replayDropped, 0, 'nothing was dropped from the replay');

  t.equal(okCount, TOTAL);
  t.equal(valueOf(fams, 'sgl_router_requests_total', { route: '/generate' }), TOTAL);
  t.equal(valueOf(fams, 'sgl_router_request_duration_seconds_count', { route: '/generate' }), TOTAL, 'every request in the duration histogram');
  const g = { worker: fb.url, gpu: '0' };
  t.equal(valueOf(fams, 'sgl_router_ttft_seconds_count', g), streams, 'TTFT of every stream');
  t.equal(valueOf(fams, 'sgl_router_inter_token_latency_seconds_count', g), streams * 3, '3 gaps per 4-chunk stream');
  const statsBody = JSON.parse((await get(`${r.url}/stats`)).body) as { windows: { cumulative: { requests: { total: number; completed: number } } } };
  t.same(statsBody.windows.cumulative.requests, { total: TOTAL, completed: TOTAL, failed: 0, aborted: 0 }, '/stats cumulative totals too');
});
