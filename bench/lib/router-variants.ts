/**
 * What a router feature costs end to end, measured one way for every feature: identical `switchyard
 * serve` routers in front of the same light backend, differing only in their flags (a baseline and one
 * or more variants), loaded in turn by the same wrk run, for small JSON and 100-event SSE streams.
 *
 * - Rounds are interleaved and the order rotates every round, so a drift of the machine within a round
 *   does not always favour one router; each ratio is taken within a round (variant / baseline) and the
 *   median of the per-round ratios is the figure. At least MIN_ROUNDS rounds (SWITCHYARD_BENCH_ROUNDS, or
 *   --runs when larger); --quick keeps --runs.
 * - Router CPU per request (all its threads, /proc/<pid>/stat) is reported beside throughput and p99: it
 *   is the cost itself and much less disturbed by other load on the machine.
 * - Optionally /metrics of each router is scraped every second while it is loaded, as Prometheus would.
 *
 * Figures, for each workload W and variant V (baseline B):
 *   <prefix>.W.<ratio>rps_ratio, <ratio>p99_ratio, <ratio>cpu_ratio   V / B, median of the rounds
 *   <prefix>.W.<name>_rps, <name>_p99_ms, <name>_cpu_us             the medians behind them, every router
 *   <prefix>.W.<name>_front_cpu_us, <name>_threads_cpu_us            cpu_us split: the main thread (front
 *                                                                    end) and every other thread (Linux)
 *
 * Environment: SWITCHYARD_BENCH_WRK_THREADS (1), SWITCHYARD_BENCH_WRK_CONNECTIONS (64),
 * SWITCHYARD_BENCH_ROUNDS (MIN_ROUNDS).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ScenarioSkipped, summarize, type BenchContext, type Figure } from './scenario.js';
import { freePort, httpRequest, releaseTempDir, removeOnExit, start, waitForHttp, waitForLine, type ManagedProcess } from './processes.js';
import { runWrk, writePostScript, type WrkResult } from './wrk.js';
import { findExecutable } from './system.js';
import { runProblem, sanityCheckWithin, workloads } from './e2e.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BACKEND = fileURLToPath(new URL('../fixtures/light-backend.js', import.meta.url));
const HOST = '127.0.0.1';
const CHUNKS = 100;
const READY_TIMEOUT_MS = 30_000;
/** Rounds at least (unless --quick): the figures are medians of per-round ratios. */
export const MIN_ROUNDS = 5;

export interface RouterVariant {
  /** Short name used in figure names and logs ('off', 'on', 'log'). */
  readonly name: string;
  /** Flags added to the common `serve` command line; `dir` is a scratch folder for this run. */
  readonly args: (dir: string) => string[];
  /** Note of its own figures. */
  readonly note: string;
}

export interface RatioFigure {
  /** The variant compared with the baseline. */
  readonly variant: string;
  /** Prefix of the ratio figures ('' -> rps_ratio; 'log_' -> log_rps_ratio). */
  readonly prefix: string;
  /** What the ratio says ('tracking on / off'). */
  readonly label: string;
}

export interface VariantComparison {
  /** Figure name prefix ('stats.e2e', 'tracking.e2e'). */
  readonly figurePrefix: string;
  /** What is compared, for logs and errors ('stats', 'tracking'). */
  readonly what: string;
  /** The routers; `baseline` names the one every ratio divides by. */
  readonly variants: readonly RouterVariant[];
  readonly baseline: string;
  readonly ratios: readonly RatioFigure[];
  /** Scrape /metrics every second during each load run. */
  readonly scrape: boolean;
}

function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got '${raw}'`);
  return n;
}

/** Clock ticks per second of /proc's CPU times. */
export function clockTicks(): number {
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return Number.isFinite(n) && n > 0 ? n : 100;
  } catch {
    return 100;
  }
}

/** User + system CPU seconds of a process, all threads included; NaN where /proc is not there. */
export function cpuSeconds(pid: number, ticks: number): number {
  return statCpuSeconds(`/proc/${pid}/stat`, ticks);
}

/**
 * User + system CPU seconds of a process's main thread alone (its task id is the pid): for a router, the
 * front end; the rest of cpuSeconds() is its actor threads and V8's helpers. NaN without /proc.
 */
export function mainThreadCpuSeconds(pid: number, ticks: number): number {
  return statCpuSeconds(`/proc/${pid}/task/${pid}/stat`, ticks);
}

function statCpuSeconds(path: string, ticks: number): number {
  try {
    const stat = readFileSync(path, 'utf8');
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / ticks;
  } catch {
    return Number.NaN;
  }
}

interface RouterUnderTest {
  readonly variant: RouterVariant;
  readonly url: string;
  readonly metricsUrl: string;
  readonly proc: ManagedProcess;
}

async function startRouter(what: string, variant: RouterVariant, backendUrl: string, dir: string): Promise<RouterUnderTest> {
  let last: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort(HOST);
    const metricsPort = await freePort(HOST);
    if (metricsPort === port) continue;
    const args = [join(ROOT, 'bin', 'switchyard.js'), 'serve', '--host', HOST, '--port', String(port), '--prometheus-host', HOST, '--prometheus-port', String(metricsPort), '--worker-urls', backendUrl, '--policy', 'round_robin', '--log-level', 'warn', ...variant.args(join(dir, variant.name))];
    const proc = start(`router-${variant.name}`, process.execPath, args, { cwd: ROOT, echoStderr: true });
    const url = `http://${HOST}:${port}`;
    const metricsUrl = `http://${HOST}:${metricsPort}/metrics`;
    try {
      await waitForHttp(`${url}/readiness`, { timeoutMs: READY_TIMEOUT_MS, proc });
      await waitForHttp(metricsUrl, { timeoutMs: READY_TIMEOUT_MS, proc });
      return { variant, url, metricsUrl, proc };
    } catch (err) {
      last = err;
      await proc.stop();
    }
  }
  throw new Error(`router (${what} ${variant.name}) did not start: ${(last as Error).message}`);
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

interface Measured {
  readonly wrk: WrkResult;
  /** Router CPU microseconds per request during the run. */
  readonly cpuUs: number;
  /** The part of cpuUs spent on the main thread (the front end). */
  readonly frontCpuUs: number;
}

/** Order of the routers in round `round` (1-based): rotated by one each round. */
export function roundOrder<T>(items: readonly T[], round: number): T[] {
  const k = (round - 1) % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

/** Rounds to run: --runs, at least MIN_ROUNDS (or SWITCHYARD_BENCH_ROUNDS) unless --quick. */
export function roundsFor(ctx: Pick<BenchContext, 'quick' | 'runs'>): number {
  return ctx.quick ? ctx.runs : Math.max(ctx.runs, envInt('SWITCHYARD_BENCH_ROUNDS', MIN_ROUNDS));
}

export async function compareRouterVariants(ctx: BenchContext, cmp: VariantComparison): Promise<Figure[]> {
  const wrk = findExecutable('wrk');
  if (wrk === undefined) throw new ScenarioSkipped('wrk is not installed (bash scripts/install-system-deps.sh --for bench)');
  if (!cmp.variants.some((v) => v.name === cmp.baseline)) throw new Error(`baseline '${cmp.baseline}' is not a variant`);
  const threads = envInt('SWITCHYARD_BENCH_WRK_THREADS', 1);
  const connections = envInt('SWITCHYARD_BENCH_WRK_CONNECTIONS', 64);
  const rounds = roundsFor(ctx);
  const warmupSec = Math.max(1, Math.min(3, Math.round(ctx.durationSec / 3)));
  const ticks = clockTicks();
  const dir = mkdtempSync(join(tmpdir(), `switchyard-${cmp.what}-`));
  removeOnExit(dir);
  const procs: ManagedProcess[] = [];
  try {
    const backend = start('backend', process.execPath, [BACKEND, '--host', HOST, '--port', '0', '--chunks', String(CHUNKS)], { echoStderr: true });
    procs.push(backend);
    const m = await waitForLine(backend, /^\{"ready":true.*"port":(\d+)/, READY_TIMEOUT_MS);
    const backendUrl = `http://${HOST}:${m[1]}`;
    const routers: RouterUnderTest[] = [];
    for (const v of cmp.variants) {
      const r = await startRouter(cmp.what, v, backendUrl, dir);
      procs.push(r.proc);
      routers.push(r);
    }
    const ws = workloads(CHUNKS);
    for (const r of routers) {
      const problem = await sanityCheckWithin(r.url, ws, 10_000);
      if (problem !== undefined) throw new Error(`router (${cmp.what} ${r.variant.name}) answers wrongly: ${problem}`);
    }
    const figures: Figure[] = [];
    for (const w of ws) {
      const script = writePostScript(dir, w.name, w.body);
      const load = (r: RouterUnderTest, seconds: number): Promise<WrkResult> => runWrk({ url: `${r.url}/generate`, threads, connections, durationSec: seconds, scriptPath: script, wrkPath: wrk });
      for (const r of routers) await load(r, warmupSec);
      const runs = new Map<string, Measured[]>(cmp.variants.map((v) => [v.name, []]));
      for (let round = 1; round <= rounds; round++) {
        for (const r of roundOrder(routers, round)) {
          const stop = cmp.scrape ? scraper(r.metricsUrl) : undefined;
          const cpu0 = cpuSeconds(r.proc.pid, ticks);
          const front0 = mainThreadCpuSeconds(r.proc.pid, ticks);
          const res = await load(r, ctx.durationSec);
          const cpuUs = ((cpuSeconds(r.proc.pid, ticks) - cpu0) * 1e6) / res.requests;
          const frontCpuUs = ((mainThreadCpuSeconds(r.proc.pid, ticks) - front0) * 1e6) / res.requests;
          const scrapes = stop === undefined ? undefined : await stop();
          const problem = runProblem(res);
          if (problem !== undefined) throw new Error(`${w.name} round ${round} ${cmp.what} ${r.variant.name}: ${problem}`);
          runs.get(r.variant.name)?.push({ wrk: res, cpuUs, frontCpuUs });
          ctx.log(
            `${w.name} round ${round}/${rounds} ${cmp.what} ${r.variant.name}: ${res.requestsPerSec.toFixed(0)} req/s, p50 ${res.latency.p50Ms.toFixed(2)} ms, p99 ${res.latency.p99Ms.toFixed(2)} ms, ${cpuUs.toFixed(1)} us CPU/request (front end ${frontCpuUs.toFixed(1)})` +
              (scrapes === undefined ? '' : ` (${scrapes} scrapes)`),
          );
        }
      }
      figures.push(...variantFigures(cmp, w.name, runs, `wrk -t${threads} -c${connections} -d${ctx.durationSec}s, ${rounds} interleaved round(s)`));
    }
    return figures;
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
    rmSync(dir, { recursive: true, force: true });
    releaseTempDir(dir);
  }
}

/** Per-round ratios (medians) and the medians behind them, from each variant's runs in round order. */
export function variantFigures(cmp: Pick<VariantComparison, 'figurePrefix' | 'variants' | 'baseline' | 'ratios'>, workload: string, runs: ReadonlyMap<string, readonly Measured[]>, loadNote: string): Figure[] {
  const of = (name: string): readonly Measured[] => runs.get(name) ?? [];
  const rps = (name: string): number[] => of(name).map((r) => r.wrk.requestsPerSec);
  const p99 = (name: string): number[] => of(name).map((r) => r.wrk.latency.p99Ms);
  const cpu = (name: string): number[] => of(name).map((r) => r.cpuUs);
  const front = (name: string): number[] => of(name).map((r) => r.frontCpuUs);
  const others = (name: string): number[] => of(name).map((r) => r.cpuUs - r.frontCpuUs);
  const ratio = (a: number[], b: number[]): number[] => a.map((v, i) => v / (b[i] as number));
  const fig = (name: string, values: number[], unit: string, better: Figure['better'], note: string): Figure => {
    const { median, spread } = summarize(values);
    return { name: `${cmp.figurePrefix}.${workload}.${name}`, value: median, unit, better, spread, note };
  };
  const base = cmp.baseline;
  const out: Figure[] = [];
  cmp.ratios.forEach((r, i) => {
    const tail = i === 0 ? `; ${loadNote}` : '';
    out.push(
      fig(`${r.prefix}rps_ratio`, ratio(rps(r.variant), rps(base)), 'x', 'higher', `${r.label}, median of per-round ratios (target >= 0.97)${tail}`),
      fig(`${r.prefix}p99_ratio`, ratio(p99(r.variant), p99(base)), 'x', 'lower', `${r.label}, median of per-round ratios (target <= 1.05)`),
      fig(`${r.prefix}cpu_ratio`, ratio(cpu(r.variant), cpu(base)), 'x', 'lower', `router CPU per request (all threads), ${r.label}, median of per-round ratios`),
    );
  });
  for (const v of cmp.variants) out.push(fig(`${v.name}_cpu_us`, cpu(v.name), 'us', 'lower', `router CPU per request, ${v.note}`));
  // Split by thread: what a feature costs the front end itself, and what its own threads take beside it
  // (on a small machine the two compete for the same cores; on a larger one only the first slows requests).
  if (of(base).every((r) => Number.isFinite(r.frontCpuUs))) {
    for (const v of cmp.variants) {
      out.push(
        fig(`${v.name}_front_cpu_us`, front(v.name), 'us', 'lower', `front-end (main) thread CPU per request, ${v.note}`),
        fig(`${v.name}_threads_cpu_us`, others(v.name), 'us', 'lower', `CPU per request of every other router thread (actors, V8 helpers), ${v.note}`),
      );
    }
  }
  for (const v of cmp.variants) out.push(fig(`${v.name}_rps`, rps(v.name), 'req/s', 'higher', v.note));
  for (const v of cmp.variants) out.push(fig(`${v.name}_p99_ms`, p99(v.name), 'ms', 'lower', v.note));
  return out;
}
