/**
 * End to end through a proxy: the same wrk load against one light backend (bench/fixtures/light-backend)
 * three ways, in one run:
 *   direct   wrk -> backend
 *   nginx    wrk -> nginx (1 worker, keep-alive upstream, unbuffered) -> backend
 *   router   wrk -> `switchyard serve` (or SWITCHYARD_BENCH_ROUTER_CMD) -> backend
 * for two workloads (small JSON; 100-event SSE streams). Rounds are interleaved (direct, nginx, router,
 * direct, ...) so drift hits all three alike; the figures the gate trusts are the same-round ratios.
 *
 * Environment: SWITCHYARD_BENCH_WRK_THREADS (1), SWITCHYARD_BENCH_WRK_CONNECTIONS (64), the router
 * variables of bench/lib/router-target.ts, SWITCHYARD_BENCH_KEEP_TMP=1 to keep nginx's folder,
 * SWITCHYARD_BENCH_UPSTREAM_CLIENT=fast|undici to run the router with that --upstream-client (passed as
 * SWITCHYARD_UPSTREAM_CLIENT, so a custom router command running switchyard gets it too).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { reportSkip, ScenarioSkipped, type BenchContext, type Figure, type Scenario } from '../lib/scenario.js';
import { freePort, releaseTempDir, removeOnExit, start, waitForHttp, waitForLine, type ManagedProcess } from '../lib/processes.js';
import { runWrk, writePostScript, type WrkResult } from '../lib/wrk.js';
import { findExecutable } from '../lib/system.js';
import { startNginx } from '../lib/nginx.js';
import { chooseRouter } from '../lib/router-target.js';
import { runProblem, sanityCheckWithin, TARGETS, workloadFigures, workloads, type TargetName, type TargetRuns } from '../lib/e2e.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BACKEND = fileURLToPath(new URL('../fixtures/light-backend.js', import.meta.url));
const HOST = '127.0.0.1';
const CHUNKS = 100;
const READY_TIMEOUT_MS = 30_000;
/** How long a proxy may keep answering wrongly after it is up (a router's first health check). */
const SANITY_TIMEOUT_MS = 15_000;

function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got '${raw}'`);
  return n;
}

async function startBackend(): Promise<{ proc: ManagedProcess; url: string }> {
  const proc = start('backend', process.execPath, [BACKEND, '--host', HOST, '--port', '0', '--chunks', String(CHUNKS)], { echoStderr: true });
  const m = await waitForLine(proc, /^\{"ready":true.*"port":(\d+)/, READY_TIMEOUT_MS);
  return { proc, url: `http://${HOST}:${m[1]}` };
}

/** Start a server on a port found free just before; the port can be taken in between, so try a few. */
async function onFreePort<T>(what: string, attempts: number, launch: (port: number) => Promise<T>): Promise<T> {
  let last: unknown;
  for (let i = 0; i < attempts; i++) {
    const port = await freePort(HOST);
    try {
      return await launch(port);
    } catch (err) {
      last = err;
    }
  }
  throw new Error(`${what} did not start after ${attempts} attempts: ${(last as Error).message}`);
}

/** The router's environment: ours, plus the upstream client knob when set. */
function routerEnv(): NodeJS.ProcessEnv {
  const client = process.env['SWITCHYARD_BENCH_UPSTREAM_CLIENT'];
  if (client === undefined || client === '') return process.env;
  if (client !== 'fast' && client !== 'undici') throw new Error(`SWITCHYARD_BENCH_UPSTREAM_CLIENT must be fast or undici, got '${client}'`);
  return { ...process.env, SWITCHYARD_UPSTREAM_CLIENT: client };
}

interface Target {
  readonly name: TargetName;
  readonly url: string;
}

const scenario: Scenario = {
  name: 'e2e-proxy',
  description: `wrk -> {direct, nginx, router} -> light backend; small JSON and ${CHUNKS}-event SSE; req/s, chunks/s, p50/p99, same-run ratios`,
  needs: ['nginx-light', 'wrk'],
  async run(ctx: BenchContext): Promise<Figure[]> {
    const wrk = findExecutable('wrk');
    const nginxPath = findExecutable('nginx');
    if (wrk === undefined) throw new ScenarioSkipped('wrk is not installed (bash scripts/install-system-deps.sh --for bench)');
    const threads = envInt('SWITCHYARD_BENCH_WRK_THREADS', 1);
    const connections = envInt('SWITCHYARD_BENCH_WRK_CONNECTIONS', 64);
    const warmupSec = Math.max(1, Math.min(3, Math.round(ctx.durationSec / 3)));
    const load = `wrk -t${threads} -c${connections} -d${Math.max(1, Math.round(ctx.durationSec))}s, ${ctx.runs} round(s)`;
    const ws = workloads(CHUNKS);

    const dir = mkdtempSync(join(tmpdir(), 'switchyard-e2e-'));
    if (process.env['SWITCHYARD_BENCH_KEEP_TMP'] !== '1') removeOnExit(dir);
    const procs: ManagedProcess[] = [];
    try {
      const backend = await startBackend();
      procs.push(backend.proc);
      ctx.log(`backend ${backend.url} (pid ${backend.proc.pid})`);

      const targets: Target[] = [{ name: 'direct', url: backend.url }];
      const unavailable = new Map<TargetName, string>();

      if (nginxPath === undefined) unavailable.set('nginx', 'nginx is not installed (bash scripts/install-system-deps.sh --for bench)');
      else {
        try {
          const nginx = await onFreePort('nginx', 3, async (port) => {
            const proc = startNginx(nginxPath, { dir, listenPort: port, upstreamPort: Number(new URL(backend.url).port), host: HOST });
            procs.push(proc);
            const url = `http://${HOST}:${port}`;
            try {
              await waitForHttp(`${url}/health`, { timeoutMs: READY_TIMEOUT_MS, proc });
            } catch (err) {
              await proc.stop();
              throw err;
            }
            return { proc, url };
          });
          targets.push({ name: 'nginx', url: nginx.url });
          ctx.log(`nginx ${nginx.url} (pid ${nginx.proc.pid}, config ${join(dir, 'nginx.conf')})`);
        } catch (err) {
          unavailable.set('nginx', (err as Error).message);
        }
      }

      // Availability first (not built, bad template): no point retrying ports for that.
      const probe = chooseRouter({ env: process.env, root: ROOT, host: HOST, port: 0, backendUrl: backend.url });
      if (!probe.ok) unavailable.set('router', probe.reason);
      else {
        try {
          const router = await onFreePort('router', 3, async (port) => {
            const choice = chooseRouter({ env: process.env, root: ROOT, host: HOST, port, backendUrl: backend.url });
            if (!choice.ok) throw new Error(choice.reason);
            const r = choice.router;
            const proc = start(r.label, r.command, r.args, { cwd: ROOT, echoStderr: true, env: routerEnv() });
            procs.push(proc);
            const url = `http://${HOST}:${port}`;
            try {
              await waitForHttp(`${url}${r.readyPath}`, { timeoutMs: READY_TIMEOUT_MS, proc });
            } catch (err) {
              await proc.stop();
              throw err;
            }
            const client = process.env['SWITCHYARD_BENCH_UPSTREAM_CLIENT'];
            ctx.log(`router ${url} (pid ${proc.pid}): ${r.display}${client ? ` (SWITCHYARD_UPSTREAM_CLIENT=${client})` : ''}`);
            return url;
          });
          targets.push({ name: 'router', url: router });
        } catch (err) {
          unavailable.set('router', (err as Error).message);
        }
      }

      // Every target answers both workloads correctly before anything is measured.
      for (const t of [...targets]) {
        const problem = await sanityCheckWithin(t.url, ws, t.name === 'direct' ? 0 : SANITY_TIMEOUT_MS);
        if (problem === undefined) continue;
        if (t.name === 'direct') throw new Error(`the light backend answers wrongly: ${problem}`);
        unavailable.set(t.name, `sanity check failed: ${problem}`);
        targets.splice(targets.indexOf(t), 1);
      }
      for (const [name, reason] of unavailable) ctx.log(`${name}: not measured (${reason})`);

      const figures: Figure[] = [];
      for (const w of ws) {
        const script = writePostScript(dir, w.name, w.body);
        const runs = new Map<TargetName, WrkResult[]>(targets.map((t) => [t.name, []]));
        const dropped = new Map<TargetName, string>(unavailable);
        const wrkFor = (t: Target, seconds: number): Promise<WrkResult> =>
          runWrk({ url: `${t.url}/generate`, threads, connections, durationSec: seconds, scriptPath: script, wrkPath: wrk });

        for (const t of targets) {
          ctx.log(`${w.name}: warm-up ${t.name} ${warmupSec}s`);
          try {
            await wrkFor(t, warmupSec);
          } catch (err) {
            dropped.set(t.name, `warm-up failed: ${(err as Error).message}`);
          }
        }
        for (let round = 1; round <= ctx.runs; round++) {
          for (const t of targets) {
            if (dropped.has(t.name)) continue;
            let r: WrkResult;
            try {
              r = await wrkFor(t, ctx.durationSec);
            } catch (err) {
              dropped.set(t.name, `round ${round}: ${(err as Error).message}`);
              continue;
            }
            const problem = runProblem(r);
            if (problem !== undefined) {
              dropped.set(t.name, `round ${round}: ${problem}`);
              continue;
            }
            runs.get(t.name)?.push(r);
            ctx.log(`${w.name} round ${round}/${ctx.runs} ${t.name}: ${r.requestsPerSec.toFixed(0)} req/s, p50 ${r.latency.p50Ms.toFixed(2)} ms, p99 ${r.latency.p99Ms.toFixed(2)} ms`);
          }
        }
        // The backend alone must always be measurable: if it is not, the harness (or machine) is broken.
        const directProblem = dropped.get('direct');
        if (directProblem !== undefined) throw new Error(`${w.name}: the direct target failed: ${directProblem}`);
        const measured = {} as Record<TargetName, TargetRuns>;
        for (const t of TARGETS) {
          const reason = dropped.get(t);
          measured[t] = reason === undefined ? { runs: runs.get(t) ?? [] } : { skipped: reason };
        }
        const out = workloadFigures(w, measured, load);
        figures.push(...out.figures);
        for (const s of out.skipped) reportSkip(ctx, s.what, s.reason);
      }
      return figures;
    } finally {
      await Promise.all(procs.map((p) => p.stop()));
      if (process.env['SWITCHYARD_BENCH_KEEP_TMP'] === '1') ctx.log(`kept ${dir}`);
      else {
        rmSync(dir, { recursive: true, force: true });
        releaseTempDir(dir);
      }
    }
  },
};

export default scenario;
