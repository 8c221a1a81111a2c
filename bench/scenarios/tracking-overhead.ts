/**
 * What request tracking costs end to end: three `switchyard serve` routers in front of the same light
 * backend, identical but for tracking: off (--no-enable-request-tracking), on (the default: the tracker
 * actor, in memory), and on with the trace log (--trace-log-dir). Loaded in turn by the same wrk run,
 * rounds interleaved and their order rotated, for small JSON and 100-event SSE streams.
 *
 *   tracking.e2e.<workload>.rps_ratio       on / off, median of the per-round ratios (target >= 0.97)
 *   tracking.e2e.<workload>.p99_ratio       on / off (target <= 1.05)
 *   tracking.e2e.<workload>.log_rps_ratio   on with the trace log / off
 *   tracking.e2e.<workload>.log_p99_ratio
 *   tracking.e2e.<workload>.cpu_ratio       router process CPU time per request (all threads: front end,
 *                                           tracker, stats), on / off: the cost itself, much less sensitive
 *                                           than throughput to other load on the machine
 *   tracking.e2e.<workload>.log_cpu_ratio   the same, with the trace log / off
 *   tracking.e2e.<workload>.{off,on,log}_rps, {off,on,log}_p99_ms, {off,on,log}_cpu_us   the medians behind them
 *
 * Environment: SWITCHYARD_BENCH_WRK_THREADS (1), SWITCHYARD_BENCH_WRK_CONNECTIONS (64).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ScenarioSkipped, summarize, type BenchContext, type Figure, type Scenario } from '../lib/scenario.js';
import { freePort, releaseTempDir, removeOnExit, start, waitForHttp, waitForLine, type ManagedProcess } from '../lib/processes.js';
import { runWrk, writePostScript, type WrkResult } from '../lib/wrk.js';
import { findExecutable } from '../lib/system.js';
import { runProblem, sanityCheck, workloads } from '../lib/e2e.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BACKEND = fileURLToPath(new URL('../fixtures/light-backend.js', import.meta.url));
const HOST = '127.0.0.1';
const CHUNKS = 100;
const READY_TIMEOUT_MS = 30_000;

type Variant = 'off' | 'on' | 'log';
const VARIANTS: readonly Variant[] = ['off', 'on', 'log'];

function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got '${raw}'`);
  return n;
}

/** User + system CPU seconds of a process so far (Linux /proc), or NaN where unavailable. */
function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15 (1-based).
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / 100; // USER_HZ is 100 on Linux
  } catch {
    return Number.NaN;
  }
}

interface Measured {
  readonly wrk: WrkResult;
  /** Router CPU microseconds per request during the run. */
  readonly cpuUs: number;
}

interface RouterUnderTest {
  readonly name: Variant;
  readonly url: string;
  readonly proc: ManagedProcess;
}

async function startRouter(name: Variant, backendUrl: string, logDir: string): Promise<RouterUnderTest> {
  let last: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort(HOST);
    const metricsPort = await freePort(HOST);
    if (metricsPort === port) continue;
    const args = [join(ROOT, 'bin', 'switchyard.js'), 'serve', '--host', HOST, '--port', String(port), '--prometheus-host', HOST, '--prometheus-port', String(metricsPort), '--worker-urls', backendUrl, '--policy', 'round_robin', '--log-level', 'warn'];
    if (name === 'off') args.push('--no-enable-request-tracking');
    if (name === 'log') args.push('--trace-log-dir', logDir);
    const proc = start(`router-${name}`, process.execPath, args, { cwd: ROOT, echoStderr: true });
    const url = `http://${HOST}:${port}`;
    try {
      await waitForHttp(`${url}/readiness`, { timeoutMs: READY_TIMEOUT_MS, proc });
      return { name, url, proc };
    } catch (err) {
      last = err;
      await proc.stop();
    }
  }
  throw new Error(`router (tracking ${name}) did not start: ${(last as Error).message}`);
}

const scenario: Scenario = {
  name: 'tracking-overhead',
  description: `request tracking off vs on vs on+trace log, same wrk run against the light backend (JSON and ${CHUNKS}-event SSE)`,
  needs: ['wrk'],
  async run(ctx: BenchContext): Promise<Figure[]> {
    const wrk = findExecutable('wrk');
    if (wrk === undefined) throw new ScenarioSkipped('wrk is not installed (bash scripts/install-system-deps.sh --for bench)');
    const threads = envInt('SWITCHYARD_BENCH_WRK_THREADS', 1);
    const connections = envInt('SWITCHYARD_BENCH_WRK_CONNECTIONS', 64);
    const warmupSec = Math.max(1, Math.min(3, Math.round(ctx.durationSec / 3)));
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-tracking-'));
    removeOnExit(dir);
    const procs: ManagedProcess[] = [];
    try {
      const backend = start('backend', process.execPath, [BACKEND, '--host', HOST, '--port', '0', '--chunks', String(CHUNKS)], { echoStderr: true });
      procs.push(backend);
      const m = await waitForLine(backend, /^\{"ready":true.*"port":(\d+)/, READY_TIMEOUT_MS);
      const backendUrl = `http://${HOST}:${m[1]}`;
      const routers: RouterUnderTest[] = [];
      for (const name of VARIANTS) {
        const r = await startRouter(name, backendUrl, join(dir, 'traces'));
        procs.push(r.proc);
        routers.push(r);
      }
      const ws = workloads(CHUNKS);
      for (const r of routers) {
        const problem = await sanityCheck(r.url, ws);
        if (problem !== undefined) throw new Error(`router (tracking ${r.name}) answers wrongly: ${problem}`);
      }
      const figures: Figure[] = [];
      for (const w of ws) {
        const script = writePostScript(dir, w.name, w.body);
        const load = (r: RouterUnderTest, seconds: number): Promise<WrkResult> => runWrk({ url: `${r.url}/generate`, threads, connections, durationSec: seconds, scriptPath: script, wrkPath: wrk });
        for (const r of routers) await load(r, warmupSec);
        const runs: Record<Variant, Measured[]> = { off: [], on: [], log: [] };
        for (let round = 1; round <= ctx.runs; round++) {
          // Rotate the order so a drift within the round does not always favour one variant.
          const k = (round - 1) % routers.length;
          const order = [...routers.slice(k), ...routers.slice(0, k)];
          for (const r of order) {
            const cpu0 = cpuSeconds(r.proc.pid);
            const res = await load(r, ctx.durationSec);
            const cpuUs = ((cpuSeconds(r.proc.pid) - cpu0) * 1e6) / res.requests;
            const problem = runProblem(res);
            if (problem !== undefined) throw new Error(`${w.name} round ${round} tracking ${r.name}: ${problem}`);
            runs[r.name].push({ wrk: res, cpuUs });
            ctx.log(`${w.name} round ${round}/${ctx.runs} tracking ${r.name}: ${res.requestsPerSec.toFixed(0)} req/s, p50 ${res.latency.p50Ms.toFixed(2)} ms, p99 ${res.latency.p99Ms.toFixed(2)} ms, ${cpuUs.toFixed(1)} us CPU/request`);
          }
        }
        const rps = (k: Variant): number[] => runs[k].map((r) => r.wrk.requestsPerSec);
        const p99 = (k: Variant): number[] => runs[k].map((r) => r.wrk.latency.p99Ms);
        const cpu = (k: Variant): number[] => runs[k].map((r) => r.cpuUs);
        const ratio = (a: number[], b: number[]): number[] => a.map((v, i) => v / (b[i] as number));
        const fig = (name: string, values: number[], unit: string, better: Figure['better'], note: string): Figure => {
          const { median, spread } = summarize(values);
          return { name: `tracking.e2e.${w.name}.${name}`, value: median, unit, better, spread, note };
        };
        const loadNote = `wrk -t${threads} -c${connections} -d${ctx.durationSec}s, ${ctx.runs} round(s)`;
        figures.push(
          fig('rps_ratio', ratio(rps('on'), rps('off')), 'x', 'higher', `tracking on / off, per round (target >= 0.97); ${loadNote}`),
          fig('p99_ratio', ratio(p99('on'), p99('off')), 'x', 'lower', 'tracking on / off, per round (target <= 1.05)'),
          fig('log_rps_ratio', ratio(rps('log'), rps('off')), 'x', 'higher', 'tracking + trace log / off, per round'),
          fig('log_p99_ratio', ratio(p99('log'), p99('off')), 'x', 'lower', 'tracking + trace log / off, per round'),
          fig('cpu_ratio', ratio(cpu('on'), cpu('off')), 'x', 'lower', 'router CPU per request (all threads), tracking on / off, per round'),
          fig('log_cpu_ratio', ratio(cpu('log'), cpu('off')), 'x', 'lower', 'router CPU per request, tracking + trace log / off, per round'),
          fig('off_cpu_us', cpu('off'), 'us', 'lower', 'router CPU per request, --no-enable-request-tracking'),
          fig('on_cpu_us', cpu('on'), 'us', 'lower', 'router CPU per request, tracking on'),
          fig('log_cpu_us', cpu('log'), 'us', 'lower', 'router CPU per request, tracking + trace log'),
          fig('off_rps', rps('off'), 'req/s', 'higher', '--no-enable-request-tracking'),
          fig('on_rps', rps('on'), 'req/s', 'higher', 'tracking on (default)'),
          fig('log_rps', rps('log'), 'req/s', 'higher', 'tracking on, --trace-log-dir'),
          fig('off_p99_ms', p99('off'), 'ms', 'lower', '--no-enable-request-tracking'),
          fig('on_p99_ms', p99('on'), 'ms', 'lower', 'tracking on (default)'),
          fig('log_p99_ms', p99('log'), 'ms', 'lower', 'tracking on, --trace-log-dir'),
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
