/**
 * Child processes a benchmark starts (backends, proxies, routers, load generators), with one promise:
 * none outlives the benchmark. Every child is spawned in its own process group (detached) and killed as
 * a group, so a shell wrapper or a router's own children go too; they are killed on success, on failure,
 * on SIGINT/SIGTERM/SIGHUP and, as a last resort, synchronously on process exit.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { request } from 'node:http';
import { rmSync } from 'node:fs';

export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface ManagedProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<Exit>;
  /** True once the process has exited. */
  hasExited(): boolean;
  /** Last lines of its stdout/stderr (for error messages). */
  tail(): string;
  /** Its stdout, line by line. */
  readonly lines: LineWaiter;
  /** SIGTERM to the group, SIGKILL after `graceMs`; resolves when it is gone. */
  stop(graceMs?: number): Promise<void>;
}

const live = new Set<ManagedProcess>();
let handlersInstalled = false;

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // Group already gone (or never formed): fall back to the process itself.
    try {
      process.kill(pid, signal);
    } catch {
      /* already exited */
    }
  }
}

const tempDirs = new Set<string>();

/** Remove `dir` when the process exits, unless released first (the normal path removes it itself). */
export function removeOnExit(dir: string): void {
  tempDirs.add(dir);
}

export function releaseTempDir(dir: string): void {
  tempDirs.delete(dir);
}

/** Kill every live child now (SIGKILL, synchronous), then remove registered temp folders: the 'exit' hook. */
export function killAllSync(): void {
  for (const p of live) killGroup(p.pid, 'SIGKILL');
  live.clear();
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}

/** Stop every live child gracefully (SIGTERM, then SIGKILL after the grace period). */
export async function stopAll(graceMs = 3000): Promise<void> {
  await Promise.all([...live].map((p) => p.stop(graceMs)));
}

/**
 * Install once: on SIGINT/SIGTERM/SIGHUP stop all children and exit 128+signo; on exit kill what is left.
 * `onSignal` runs first (e.g. to log which scenario was interrupted).
 */
export function installCleanupHandlers(onSignal?: (signal: NodeJS.Signals) => void): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  const codes: Record<string, number> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 };
  let stopping = false;
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      if (stopping) return;
      stopping = true;
      onSignal?.(signal);
      const timer = setTimeout(() => {
        killAllSync();
        process.exit(codes[signal]);
      }, 5000);
      void stopAll(2000).finally(() => {
        clearTimeout(timer);
        process.exit(codes[signal]);
      });
    });
  }
  process.on('exit', killAllSync);
}

const TAIL_BYTES = 4096;

export interface StartOptions {
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Forward the child's stderr to ours (prefixed with the name). */
  readonly echoStderr?: boolean;
}

/** Spawn `command args` in its own process group and track it until it exits. */
export function start(name: string, command: string, args: readonly string[], options: StartOptions = {}): ManagedProcess {
  const spawnOptions: SpawnOptions = { stdio: ['ignore', 'pipe', 'pipe'], detached: true, cwd: options.cwd, env: options.env ?? process.env };
  const child = spawn(command, args, spawnOptions);
  let tail = '';
  const keep = (s: string): void => {
    tail = (tail + s).slice(-TAIL_BYTES);
  };
  let exitInfo: Exit | undefined;
  const exited = new Promise<Exit>((resolve) => {
    child.on('error', (err) => {
      keep(`\n[spawn error] ${err.message}\n`);
      exitInfo ??= { code: -1, signal: null };
      resolve(exitInfo);
    });
    child.on('exit', (code, signal) => {
      exitInfo = { code, signal };
      resolve(exitInfo);
    });
  });
  const lines = new LineWaiter();
  let pending = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => {
    keep(d);
    pending += d;
    let nl = pending.indexOf('\n');
    while (nl >= 0) {
      lines.push(pending.slice(0, nl).replace(/\r$/, ''));
      pending = pending.slice(nl + 1);
      nl = pending.indexOf('\n');
    }
  });
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    keep(d);
    if (options.echoStderr === true) process.stderr.write(d.replace(/^(?=.)/gm, `[${name}] `));
  });

  const pid = child.pid ?? -1;
  const proc: ManagedProcess = {
    name,
    child,
    pid,
    exited,
    hasExited: () => exitInfo !== undefined,
    tail: () => tail.trim(),
    lines,
    stop: async (graceMs = 3000) => {
      if (pid > 0) {
        // Even after the leader exited, its group may hold children (a shell's, a router's workers).
        killGroup(pid, 'SIGTERM');
        if (exitInfo === undefined) {
          const timer = setTimeout(() => killGroup(pid, 'SIGKILL'), graceMs);
          await exited;
          clearTimeout(timer);
        }
        killGroup(pid, 'SIGKILL');
      }
      live.delete(proc);
    },
  };
  // Tracked until stop(), even after the leader exits: its group may still hold stragglers.
  if (pid > 0) live.add(proc);
  return proc;
}

/** Run a command to completion, capturing its output; tracked like start() (killed on interruption). */
export async function runToEnd(name: string, command: string, args: readonly string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ exit: Exit; stdout: string; stderr: string }> {
  const proc = start(name, command, args, options);
  let stdout = '';
  let stderr = '';
  proc.child.stdout?.on('data', (d: string) => (stdout += d));
  proc.child.stderr?.on('data', (d: string) => (stderr += d));
  proc.child.on('error', (err) => (stderr += `[spawn error] ${err.message}`));
  // 'close' (not 'exit'): the output pipes are drained by then.
  await new Promise<void>((resolve) => {
    if (proc.pid <= 0) void proc.exited.then(() => resolve());
    else proc.child.on('close', () => resolve());
  });
  const exit = await proc.exited;
  await proc.stop(0);
  return { exit, stdout, stderr };
}

/** How many tracked children are still registered (tests use it to prove nothing leaks). */
export function liveCount(): number {
  return live.size;
}

/** A free TCP port on `host`, found by binding port 0 and closing (there is a small race; callers retry on EADDRINUSE). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Wait until `proc` prints a stdout line matching `pattern`; rejects on exit or timeout. */
export function waitForLine(proc: ManagedProcess, pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`${proc.name} printed no line matching ${pattern} within ${timeoutMs} ms; output: ${proc.tail() || '(none)'}`));
    }, timeoutMs);
    const onLine = (line: string): void => {
      const m = pattern.exec(line);
      if (m === null) return;
      cleanup();
      resolve(m);
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      proc.lines.off(onLine);
    };
    proc.lines.on(onLine);
    void proc.exited.then((e) => {
      cleanup();
      reject(new Error(`${proc.name} exited (${e.code ?? e.signal}) before it was ready; output: ${proc.tail() || '(none)'}`));
    });
  });
}

/** A tiny line fan-out: several waiters can watch one process's stdout. */
export class LineWaiter {
  private readonly listeners = new Set<(line: string) => void>();
  readonly push = (line: string): void => {
    for (const l of this.listeners) l(line);
  };
  on(l: (line: string) => void): void {
    this.listeners.add(l);
  }
  off(l: (line: string) => void): void {
    this.listeners.delete(l);
  }
}

export interface HttpAnswer {
  readonly status: number;
  readonly body: string;
}

/** One HTTP request without keep-alive (probes, sanity checks); rejects on socket errors or after `timeoutMs`. */
export function httpRequest(url: string, options: { method?: string; body?: string; headers?: Record<string, string>; timeoutMs?: number } = {}): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { connection: 'close', ...options.headers };
    if (options.body !== undefined) headers['content-length'] = String(Buffer.byteLength(options.body));
    const req = request(url, { method: options.method ?? 'GET', headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.setTimeout(options.timeoutMs ?? 5000, () => req.destroy(new Error(`timeout after ${options.timeoutMs ?? 5000} ms: ${url}`)));
    req.on('error', reject);
    req.end(options.body);
  });
}

/**
 * Poll `url` until it answers `expectStatus` (bounded by `timeoutMs`); rejects early if `proc` exits.
 * Returns the elapsed milliseconds.
 */
export async function waitForHttp(url: string, options: { timeoutMs: number; intervalMs?: number; expectStatus?: number; proc?: ManagedProcess }): Promise<number> {
  const t0 = Date.now();
  const expect = options.expectStatus ?? 200;
  let last = 'no answer';
  while (Date.now() - t0 < options.timeoutMs) {
    if (options.proc?.hasExited() === true) {
      throw new Error(`${options.proc.name} exited before ${url} answered ${expect}; output: ${options.proc.tail() || '(none)'}`);
    }
    try {
      const r = await httpRequest(url, { timeoutMs: 1000 });
      if (r.status === expect) return Date.now() - t0;
      last = `status ${r.status}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 100));
  }
  throw new Error(`${url} did not answer ${expect} within ${options.timeoutMs} ms (last: ${last})`);
}
