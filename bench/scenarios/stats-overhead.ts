/**
 * What statistics cost end to end: two `switchyard serve` routers in front of the same light backend,
 * one with the stats actor (the default) and one with --disable-stats, loaded in turn by the same wrk
 * run (rounds interleaved: on, off, on, off, ...), for small JSON and 100-event SSE streams. While they
 * are loaded, /metrics of each is scraped every second, as Prometheus would.
 *
 *   stats.e2e.<workload>.rps_ratio   stats on / off, median of the per-round ratios (target >= 0.97)
 *   stats.e2e.<workload>.p99_ratio   stats on / off (target <= 1.05)
 *   stats.e2e.<workload>.cpu_ratio   router CPU time per request (all its threads, /proc/<pid>/stat),
 *                                    stats on / off: what statistics cost, much less disturbed by other
 *                                    load on the machine than throughput is
 *   stats.e2e.<workload>.on_cpu_us / off_cpu_us   CPU microseconds per request behind it
 *   stats.e2e.<workload>.on_rps / off_rps, on_p99_ms / off_p99_ms   the medians behind them
 *
 * Environment: SWITCHYARD_BENCH_WRK_THREADS (1), SWITCHYARD_BENCH_WRK_CONNECTIONS (64).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ScenarioSkipped, summarize, type BenchContext, type Figure, type Scenario } from '../lib/scenario.js';
import { freePort, httpRequest, releaseTempDir, removeOnExit, start, waitForHttp, waitForLine, type ManagedProcess } from '../lib/processes.js';
import { runWrk, writePostScript, type WrkResult } from '../lib/wrk.js';
import { findExecutable } from '../lib/system.js';
import { runProblem, sanityCheckWithin, workloads } from '../lib/e2e.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BACKEND = fileURLToPath(new URL('../fixtures/light-backend.js', import.meta.url));
const HOST = '127.0.0.1';
const CHUNKS = 100;
const READY_TIMEOUT_MS = 30_000;

function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got '${raw}'`);
  return n;
}

/** Clock ticks per second of /proc's CPU times. */
function clockTicks(): number {
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return Number.isFinite(n) && n > 0 ? n : 100;
  } catch {
    return 100;
  }
}

/** User + system CPU seconds of a process, all threads included; NaN where /proc is not there. */
function cpuSeconds(pid: number, ticks: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / ticks;
  } catch {
    return Number.NaN;
  }
}

interface RouterUnderTest {
  readonly name: 'on' | 'off';
  readonly url: string;
  readonly metricsUrl: string;
  readonly proc: ManagedProcess;
}

async function startRouter(name: 'on' | 'off', backendUrl: string): Promise<RouterUnderTest> {
  let last: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort(HOST);
    const metricsPort = await freePort(HOST);
    if (metricsPort === port) continue;
    const args = [join(ROOT, 'bin', 'switchyard.js'), 'serve', '--host', HOST, '--port', String(port), '--prometheus-host', HOST, '--prometheus-port', String(metricsPort), '--worker-urls', backendUrl, '--policy', 'round_robin', '--log-level', 'warn'];
    if (name === 'off') args.push('--disable-stats');
    const proc = start(`router-${name}`, process.execPath, args, { cwd: ROOT, echoStderr: true });
    const url = `http://${HOST}:${port}`;
    try {
      await waitForHttp(`${url}/readiness`, { timeoutMs: READY_TIMEOUT_MS, proc });
      await waitForHttp(`http://${HOST}:${metricsPort}/metrics`, { timeoutMs: READY_TIMEOUT_MS, proc });
      return { name, url, metricsUrl: `http://${HOST}:${metricsPort}/metrics`, proc };
    } catch (err) {
      last = err;
      await proc.stop();
    }
  }
  throw new Error(`router (stats ${name}) did not start: ${(last as Error).message}`);
}

/** Scrape `url` every second until stopped (what Prometheus does during the load). */
function scraper(url: string): () => Promise<number> {
  let stopped = false;
  let scrapes = 0;
  const loop = (async () => {
    while (!stopped) {
      try {
        const r = await httpRequest(url, { timeoutMs: 5000 });
        if (r.status === 200) scrapes++;
      } catch {
        // a missed scrape is not the benchmark's concern
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
  return async () => {
    stopped = true;
    await loop;
    return scrapes;
  };
}

const scenario: Scenario = {
  name: 'stats-overhead',
  description: `stats on vs --disable-stats, same wrk run against the light backend (JSON and ${CHUNKS}-event SSE), /metrics scraped every second`,
  needs: ['wrk'],
  async run(ctx: BenchContext): Promise<Figure[]> {
    const wrk = findExecutable('wrk');
    if (wrk === undefined) throw new ScenarioSkipped('wrk is not installed (bash scripts/install-system-deps.sh --for bench)');
    const threads = envInt('SWITCHYARD_BENCH_WRK_THREADS', 1);
    const connections = envInt('SWITCHYARD_BENCH_WRK_CONNECTIONS', 64);
    const warmupSec = Math.max(1, Math.min(3, Math.round(ctx.durationSec / 3)));
    const ticks = clockTicks();
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-stats-'));
    removeOnExit(dir);
    const procs: ManagedProcess[] = [];
    try {
      const backend = start('backend', process.execPath, [BACKEND, '--host', HOST, '--port', '0', '--chunks', String(CHUNKS)], { echoStderr: true });
      procs.push(backend);
      const m = await waitForLine(backend, /^\{"ready":true.*"port":(\d+)/, READY_TIMEOUT_MS);
      const backendUrl = `http://${HOST}:${m[1]}`;
      const routers: RouterUnderTest[] = [];
      for (const name of ['on', 'off'] as const) {
        const r = await startRouter(name, backendUrl);
        procs.push(r.proc);
        routers.push(r);
      }
      const ws = workloads(CHUNKS);
      for (const r of routers) {
        const problem = await sanityCheckWithin(r.url, ws, 10_000);
        if (problem !== undefined) throw new Error(`router (stats ${r.name}) answers wrongly: ${problem}`);
      }
      const figures: Figure[] = [];
      for (const w of ws) {
        const script = writePostScript(dir, w.name, w.body);
        const load = (r: RouterUnderTest, seconds: number): Promise<WrkResult> => runWrk({ url: `${r.url}/generate`, threads, connections, durationSec: seconds, scriptPath: script, wrkPath: wrk });
        for (const r of routers) await load(r, warmupSec);
        const runs: Record<'on' | 'off', WrkResult[]> = { on: [], off: [] };
        const cpu: Record<'on' | 'off', number[]> = { on: [], off: [] };
        for (let round = 1; round <= ctx.runs; round++) {
          // Alternate which goes first so a drift within the round does not always favour one side.
          const order = round % 2 === 1 ? routers : [...routers].reverse();
          for (const r of order) {
            const stop = scraper(r.metricsUrl);
            const cpu0 = cpuSeconds(r.proc.pid, ticks);
            const res = await load(r, ctx.durationSec);
            const cpuUsed = cpuSeconds(r.proc.pid, ticks) - cpu0;
            const scrapes = await stop();
            const problem = runProblem(res);
            if (problem !== undefined) throw new Error(`${w.name} round ${round} stats ${r.name}: ${problem}`);
            runs[r.name].push(res);
            const cpuUs = (cpuUsed * 1e6) / res.requests;
            cpu[r.name].push(cpuUs);
            ctx.log(`${w.name} round ${round}/${ctx.runs} stats ${r.name}: ${res.requestsPerSec.toFixed(0)} req/s, p50 ${res.latency.p50Ms.toFixed(2)} ms, p99 ${res.latency.p99Ms.toFixed(2)} ms, ${cpuUs.toFixed(1)} us CPU/request (${scrapes} scrapes)`);
          }
        }
        const rps = (k: 'on' | 'off'): number[] => runs[k].map((r) => r.requestsPerSec);
        const p99 = (k: 'on' | 'off'): number[] => runs[k].map((r) => r.latency.p99Ms);
        const ratio = (a: number[], b: number[]): number[] => a.map((v, i) => v / (b[i] as number));
        const fig = (name: string, values: number[], unit: string, better: Figure['better'], note: string): Figure => {
          const { median, spread } = summarize(values);
          return { name: `stats.e2e.${w.name}.${name}`, value: median, unit, better, spread, note };
        };
        const loadNote = `wrk -t${threads} -c${connections} -d${ctx.durationSec}s, ${ctx.runs} round(s)`;
        figures.push(
          fig('rps_ratio', ratio(rps('on'), rps('off')), 'x', 'higher', `stats on / off, per round (target >= 0.97); ${loadNote}`),
          fig('p99_ratio', ratio(p99('on'), p99('off')), 'x', 'lower', 'stats on / off, per round (target <= 1.05)'),
          fig('cpu_ratio', ratio(cpu.on, cpu.off), 'x', 'lower', 'router CPU time per request (all threads), stats on / off, per round'),
          fig('on_cpu_us', cpu.on, 'us', 'lower', 'router CPU per request, stats on'),
          fig('off_cpu_us', cpu.off, 'us', 'lower', 'router CPU per request, --disable-stats'),
          fig('on_rps', rps('on'), 'req/s', 'higher', 'stats actor on (default)'),
          fig('off_rps', rps('off'), 'req/s', 'higher', '--disable-stats'),
          fig('on_p99_ms', p99('on'), 'ms', 'lower', 'stats actor on'),
          fig('off_p99_ms', p99('off'), 'ms', 'lower', '--disable-stats'),
        );
      }
      return figures;
    } finally {
      await Promise.all(procs.map((p) => p.stop()));
      rmSync(dir, { recursive: true, force: true });
      releaseTempDir(dir);
    }
  },
};

export default scenario;
