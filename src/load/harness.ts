/**
 * What compare and sweep stand up for each run: a FRESH simulated fleet in its own worker thread (never on
 * the generator's event loop) and, for compare, a fresh router as a child process running
 * `node bin/switchyard.js serve` (the same binary users run), stopped by its pid when the run ends.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { startSimFleetInThread, type SimFleet } from '../sim/fleet.js';
import type { SimOptions } from '../sim/options.js';

/** bin/switchyard.js of this checkout (dist/src/load -> repository root). */
export const SWITCHYARD_BIN = fileURLToPath(new URL('../../../bin/switchyard.js', import.meta.url));

export async function startFleet(sim: Partial<SimOptions>, count: number): Promise<SimFleet> {
  return startSimFleetInThread({ ...sim, count, host: '127.0.0.1', port: 0 });
}

export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const port = (srv.address() as AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export interface RouterProcess {
  readonly url: string;
  readonly pid: number;
  stop(): Promise<void>;
}

export interface RouterLaunch {
  workerUrls: readonly string[];
  policy: string;
  seed: number;
  /** More `serve` flags (e.g. --cache-threshold 0.5). */
  extraArgs: readonly string[];
  /** stdout+stderr of the router go here. */
  logPath: string;
  readyTimeoutMs?: number;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function killLiveOnExit(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const c of live) {
      try {
        if (c.pid !== undefined) process.kill(c.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  });
}

function tail(path: string, bytes = 2000): string {
  try {
    const s = readFileSync(path, 'utf8');
    return s.slice(-bytes);
  } catch {
    return '';
  }
}

/** Starts `switchyard serve` on a free loopback port and waits until every worker is healthy. */
export async function startRouterProcess(o: RouterLaunch): Promise<RouterProcess> {
  let lastError: Error | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    try {
      return await launchOnce(o, port);
    } catch (err) {
      lastError = err as Error;
      if (!/EADDRINUSE|address already in use/i.test(lastError.message)) break;
    }
  }
  throw lastError ?? new Error('router did not start');
}

async function launchOnce(o: RouterLaunch, port: number): Promise<RouterProcess> {
  killLiveOnExit();
  const args = [
    SWITCHYARD_BIN,
    'serve',
    '--host',
    '127.0.0.1',
    '--port',
    String(port),
    '--policy',
    o.policy,
    '--seed',
    String(o.seed),
    '--log-level',
    'warn',
    '--shutdown-grace-period-secs',
    '2',
    '--worker-urls',
    ...o.workerUrls,
    ...o.extraArgs,
  ];
  const log = createWriteStream(o.logPath);
  // The router reads SWITCHYARD_* settings from the environment; only ours apply to this child.
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('SWITCHYARD_')) env[k] = v;
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  live.add(child);
  child.stdout!.pipe(log, { end: false });
  child.stderr!.pipe(log, { end: false });
  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exitPromise = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = { code, signal };
      live.delete(child);
      resolve();
    });
  });
  const url = `http://127.0.0.1:${port}`;
  const stop = async (): Promise<void> => {
    if (exited === undefined && child.pid !== undefined) {
      child.kill('SIGTERM');
      // The run's figures are already recorded: a router slow to exit after SIGTERM is not worth waiting for.
      const timer = setTimeout(() => {
        if (exited === undefined) child.kill('SIGKILL');
      }, 2000);
      await exitPromise;
      clearTimeout(timer);
    }
    await new Promise<void>((resolve) => log.end(() => resolve()));
  };
  const deadline = Date.now() + (o.readyTimeoutMs ?? 30_000);
  let lastState = 'no answer';
  while (Date.now() < deadline) {
    if (exited !== undefined) {
      await new Promise((r) => setTimeout(r, 50));
      const t = tail(o.logPath);
      await stop();
      throw new Error(`switchyard serve exited (code ${exited.code}, signal ${exited.signal}) before it was ready: ${t}`);
    }
    try {
      const res = await request(`${url}/readiness`, { headersTimeout: 1000, bodyTimeout: 1000 });
      const body = (await res.body.json()) as { healthy_workers?: number };
      lastState = `HTTP ${res.statusCode}, healthy_workers ${String(body.healthy_workers)}`;
      if (res.statusCode === 200 && body.healthy_workers === o.workerUrls.length) {
        return { url, pid: child.pid!, stop };
      }
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  await stop();
  throw new Error(`switchyard serve on ${url} was not ready within ${o.readyTimeoutMs ?? 30_000} ms (${lastState}): ${tail(o.logPath)}`);
}
