/**
 * One-shot reliability checks (`npm run soak -- --checks`), the figures of docs/reliability.md that are
 * not a timed soak: through one router to simulated workers, in one process,
 *   1. N streams aborted mid-flight (default 10,000): every router and worker counter must return to 0;
 *   2. non-streaming load while one worker is killed (connections reset) and revived: failed requests,
 *      retries, time to ejection and to readmission;
 *   3. admission: a burst beyond --max-concurrent-requests + --queue-size.
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { startSimFleet } from '../../src/sim/fleet.js';
import { parseRouterOptions } from '../../src/config/router-options.js';
import { startRouter } from '../../src/router.js';
import { silentLogger } from '../../src/util/log.js';
import { Field } from '../../src/actors/worker-table.js';
import { post, postAndAbort, waitFor } from '../../test/helpers/client.js';

async function router(args: string[]) {
  const opts = parseRouterOptions(['--host', '127.0.0.1', '--port', '0', '--prometheus-port', '0', '--health-check-interval-secs', '0.2', '--load-poll-interval-secs', '0', '--no-enable-request-tracking', ...args], {});
  return startRouter(opts, { logger: silentLogger() });
}

async function pool<T>(n: number, lanes: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: lanes }, async () => {
      while (next < n) {
        const i = next++;
        out[i] = await fn(i);
      }
    }),
  );
  return out;
}

async function abortsCheck(total: number) {
  const fleet = await startSimFleet({ count: 2, timeScale: 0.05 });
  const r = await router(['--worker-urls', ...fleet.urls, '--policy', 'round_robin']);
  const rssBefore = process.memoryUsage().rss;
  const t0 = performance.now();
  await pool(total, 100, (i) => postAndAbort(`${r.url}/generate`, { text: `soak ${i} `.repeat(20), stream: true, sampling_params: { max_new_tokens: 2000, ignore_eos: true } }, 1));
  await waitFor(() => r.ctx.counters.active === 0, 60_000, 'router drained');
  await waitFor(() => fleet.servers.every((s) => s.stats().running + s.stats().waiting === 0), 60_000, 'workers drained');
  const seconds = (performance.now() - t0) / 1000;
  const inFlight = r.ctx.registry.list().map((w) => r.ctx.table.inFlight(w.slot) + r.ctx.table.inFlightTokens(w.slot));
  const out = {
    streams: total,
    seconds: +seconds.toFixed(1),
    aborted: r.ctx.counters.aborted,
    active_after: r.ctx.counters.active,
    worker_in_flight_after: inFlight,
    worker_running_after: fleet.servers.map((s) => s.stats().running + s.stats().waiting),
    rss_growth_mb: +((process.memoryUsage().rss - rssBefore) / 2 ** 20).toFixed(1),
  };
  await r.close(0);
  await fleet.close();
  return out;
}

/** A TCP front that can be killed (every connection reset) and revived on the same port. */
async function front(targetPort: number) {
  const conns = new Set<net.Socket>();
  const make = () =>
    net.createServer((c) => {
      const u = net.connect(targetPort, '127.0.0.1');
      conns.add(c).add(u);
      c.pipe(u).pipe(c);
      const drop = () => {
        c.destroy();
        u.destroy();
        conns.delete(c);
        conns.delete(u);
      };
      c.on('error', drop).on('close', drop);
      u.on('error', drop).on('close', drop);
    });
  let server = make();
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    kill: async () => {
      const closed = new Promise<void>((res) => server.close(() => res()));
      for (const c of conns) c.resetAndDestroy();
      await closed;
    },
    revive: async () => {
      server = make();
      await new Promise<void>((res) => server.listen(port, '127.0.0.1', res));
    },
  };
}

async function killMidLoad(total: number) {
  const fleet = await startSimFleet({ count: 3, timeScale: 0.05 });
  const f = await front(fleet.ports[1]!);
  const r = await router(['--worker-urls', fleet.urls[0]!, f.url, fleet.urls[2]!, '--policy', 'round_robin', '--health-success-threshold', '1']);
  const victim = r.ctx.registry.list().find((w) => w.url === f.url)!;
  let killedAt = 0;
  let ejectedAt = 0;
  const load = pool(total, 64, (i) => post(`${r.url}/generate`, { text: `kill ${i} `.repeat(10), sampling_params: { max_new_tokens: 32 } }));
  await waitFor(() => r.ctx.counters.completed > total / 4, 60_000, 'a quarter done');
  killedAt = performance.now();
  await f.kill();
  await waitFor(() => r.ctx.table.get(victim.slot, Field.Healthy) === 0, 10_000, 'ejected');
  ejectedAt = performance.now();
  await f.revive();
  const revivedAt = performance.now();
  await waitFor(() => r.ctx.table.get(victim.slot, Field.Healthy) === 1, 30_000, 'readmitted');
  const readmittedAt = performance.now();
  const results = await load;
  const out = {
    requests: total,
    failed: results.filter((x) => x.status !== 200).length,
    retries: r.ctx.counters.retries,
    ejection_ms_after_kill: Math.round(ejectedAt - killedAt),
    readmission_ms_after_revive: Math.round(readmittedAt - revivedAt),
  };
  await r.close(0);
  await f.kill();
  await fleet.close();
  return out;
}

async function admissionBurst() {
  const fleet = await startSimFleet({ count: 2, timeScale: 0.05 });
  const r = await router(['--worker-urls', ...fleet.urls, '--max-concurrent-requests', '32', '--queue-size', '64', '--queue-timeout-secs', '30']);
  const results = await Promise.all(Array.from({ length: 200 }, (_, i) => post(`${r.url}/generate`, { text: `burst ${i}`, sampling_params: { max_new_tokens: 16 } })));
  const by: Record<number, number> = {};
  for (const x of results) by[x.status] = (by[x.status] ?? 0) + 1;
  const out = { burst: 200, limit: 32, queue: 64, statuses: by, active_after: r.ctx.counters.active, limiter_active_after: r.ctx.limits?.active };
  await r.close(0);
  await fleet.close();
  return out;
}

/** All three checks, as one JSON-able object of figures. */
export async function runChecks(aborts: number, requests: number): Promise<Record<string, unknown>> {
  return {
    node: process.version,
    aborts: await abortsCheck(aborts),
    kill_mid_load: await killMidLoad(requests),
    admission: await admissionBurst(),
  };
}
