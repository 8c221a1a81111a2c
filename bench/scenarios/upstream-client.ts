/**
 * The upstream HTTP/1.1 client alone: undici `Pool.dispatch` vs our FastPool (src/proxy/upstream), the
 * same legacy handler driving both, 64 requests kept in flight against the light backend (a child
 * process), for small JSON answers and 100-event SSE streams. Rounds interleave the two clients so drift
 * hits both alike; the figure to trust is the same-round ratio fast/undici.
 *
 *   upstream.<w>.fast_rps / .undici_rps      requests/s (median of rounds)
 *   upstream.<w>.fast_vs_undici              fast/undici, per-round ratio, median
 *   upstream.<w>.<client>_cpu_us             this process's CPU (user + system) per request, us
 *
 * Environment: SWITCHYARD_BENCH_UPSTREAM_CONCURRENCY (64).
 */
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { FastPool } from '../../src/proxy/upstream/fast-pool.js';
import type { UpstreamDispatcher, UpstreamHandler, UpstreamRequestOptions } from '../../src/proxy/upstream/types.js';
import { summarize, type BenchContext, type Figure, type Scenario } from '../lib/scenario.js';
import { start, waitForLine, type ManagedProcess } from '../lib/processes.js';
import { workloads, type Workload } from '../lib/e2e.js';
import { CLIENT_KEEP_ALIVE_MS } from '../../src/util/keep-alive.js';

const BACKEND = fileURLToPath(new URL('../fixtures/light-backend.js', import.meta.url));
const HOST = '127.0.0.1';
const CHUNKS = 100;
const CLIENTS = ['fast', 'undici'] as const;
type ClientName = (typeof CLIENTS)[number];

/** Pool options as the router's registry sets them (its headers/body timeouts are --request-timeout-secs). */
const POOL_OPTIONS = { connections: 2048, keepAliveTimeout: CLIENT_KEEP_ALIVE_MS, keepAliveMaxTimeout: 600_000, headersTimeout: 60_000, bodyTimeout: 60_000, connectTimeout: 5_000 };

function makeClient(name: ClientName, origin: string): UpstreamDispatcher {
  if (name === 'fast') return new FastPool(origin, POOL_OPTIONS);
  return new Pool(origin, { ...POOL_OPTIONS, pipelining: 1 }) as unknown as UpstreamDispatcher;
}

interface LoopResult {
  readonly requests: number;
  readonly errors: number;
  readonly seconds: number;
  readonly cpuUs: number;
  readonly bytes: number;
}

/** One in-flight slot: a reusable legacy handler that sends its next request when one completes. */
class Slot implements UpstreamHandler {
  bytes = 0;
  status = 0;
  constructor(private readonly loop: Loop) {}
  onConnect(): void {}
  onHeaders(statusCode: number): boolean {
    this.status = statusCode;
    return true;
  }
  onData(chunk: Buffer): boolean {
    this.bytes += chunk.length;
    return true;
  }
  onComplete(): void {
    this.loop.done(this, this.status === 200);
  }
  onError(): void {
    this.loop.done(this, false);
  }
}

class Loop {
  requests = 0;
  errors = 0;
  private stopAt = 0;
  private running = 0;
  private resolve: (() => void) | undefined;
  private readonly opts: UpstreamRequestOptions;

  constructor(
    private readonly client: UpstreamDispatcher,
    body: string,
  ) {
    this.opts = { path: '/generate', method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': 'bench-upstream' }, body: Buffer.from(body), headersTimeout: 60_000, bodyTimeout: 60_000, idempotent: true };
  }

  run(concurrency: number, seconds: number): Promise<void> {
    this.stopAt = performance.now() + seconds * 1000;
    return new Promise((resolve) => {
      this.resolve = resolve;
      for (let i = 0; i < concurrency; i++) this.send(new Slot(this));
    });
  }

  done(slot: Slot, ok: boolean): void {
    this.running--;
    if (ok) this.requests++;
    else this.errors++;
    if (performance.now() < this.stopAt) {
      // Next request from a microtask: neither client is re-entered from inside its own callback.
      queueMicrotask(() => this.send(slot));
    } else if (this.running === 0) this.resolve?.();
  }

  private send(slot: Slot): void {
    this.running++;
    this.client.dispatch(this.opts, slot);
  }
}

async function measure(client: UpstreamDispatcher, w: Workload, concurrency: number, seconds: number): Promise<LoopResult> {
  const loop = new Loop(client, w.body);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await loop.run(concurrency, seconds);
  const elapsed = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { requests: loop.requests, errors: loop.errors, seconds: elapsed, cpuUs: cpu.user + cpu.system, bytes: 0 };
}

async function startBackend(): Promise<{ proc: ManagedProcess; url: string }> {
  const proc = start('backend', process.execPath, [BACKEND, '--host', HOST, '--port', '0', '--chunks', String(CHUNKS)], { echoStderr: true });
  const m = await waitForLine(proc, /^\{"ready":true.*"port":(\d+)/, 30_000);
  return { proc, url: `http://${HOST}:${m[1]}` };
}

const scenario: Scenario = {
  name: 'upstream-client',
  description: `undici Pool.dispatch vs the fast upstream client against the light backend, 64 in flight; small JSON and ${CHUNKS}-event SSE; req/s, CPU/req, same-run ratio`,
  async run(ctx: BenchContext): Promise<Figure[]> {
    const raw = process.env['SWITCHYARD_BENCH_UPSTREAM_CONCURRENCY'];
    const concurrency = raw === undefined || raw === '' ? 64 : Number(raw);
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new Error(`SWITCHYARD_BENCH_UPSTREAM_CONCURRENCY must be a positive integer, got '${raw}'`);
    const backend = await startBackend();
    ctx.log(`backend ${backend.url} (pid ${backend.proc.pid})`);
    const figures: Figure[] = [];
    try {
      for (const w of workloads(CHUNKS)) {
        const clients = new Map<ClientName, UpstreamDispatcher>(CLIENTS.map((c) => [c, makeClient(c, backend.url)]));
        const rps = new Map<ClientName, number[]>(CLIENTS.map((c) => [c, []]));
        const cpu = new Map<ClientName, number[]>(CLIENTS.map((c) => [c, []]));
        const ratios: number[] = [];
        try {
          for (const c of CLIENTS) await measure(clients.get(c)!, w, concurrency, Math.min(1, ctx.durationSec)); // warm-up
          for (let round = 1; round <= ctx.runs; round++) {
            const thisRound = new Map<ClientName, number>();
            for (const c of CLIENTS) {
              const r = await measure(clients.get(c)!, w, concurrency, ctx.durationSec);
              if (r.errors > r.requests * 0.01) throw new Error(`${c} ${w.name}: ${r.errors} errors in ${r.requests + r.errors} requests`);
              const perSec = r.requests / r.seconds;
              rps.get(c)!.push(perSec);
              cpu.get(c)!.push(r.cpuUs / Math.max(1, r.requests));
              thisRound.set(c, perSec);
              ctx.log(`${w.name} round ${round}/${ctx.runs} ${c}: ${perSec.toFixed(0)} req/s, ${(r.cpuUs / Math.max(1, r.requests)).toFixed(1)} us CPU/req`);
            }
            ratios.push(thisRound.get('fast')! / thisRound.get('undici')!);
          }
        } finally {
          await Promise.all([...clients.values()].map((c) => c.destroy()));
        }
        const load = `${concurrency} in flight, ${ctx.durationSec}s x ${ctx.runs} rounds`;
        for (const c of CLIENTS) {
          const r = summarize(rps.get(c)!);
          figures.push({ name: `upstream.${w.name}.${c}_rps`, value: r.median, unit: 'req/s', better: 'higher', spread: r.spread, note: load });
          const u = summarize(cpu.get(c)!);
          figures.push({ name: `upstream.${w.name}.${c}_cpu_us`, value: u.median, unit: 'us/req', better: 'lower', spread: u.spread, note: 'client process CPU (user+sys) per request' });
        }
        const q = summarize(ratios);
        figures.push({ name: `upstream.${w.name}.fast_vs_undici`, value: q.median, unit: 'x', better: 'higher', spread: q.spread, note: 'same-round req/s ratio' });
      }
    } finally {
      await backend.proc.stop();
    }
    return figures;
  },
};

export default scenario;
