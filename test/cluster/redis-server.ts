/**
 * A real redis-server for cluster tests: on a free loopback port (found by binding port 0 in Node:
 * redis-server's own `--port 0` means "no TCP"), no persistence, killed (and waited for) by `stop()`.
 * `kill9()` / `restart()` simulate a crash and a return on the same port (an empty Redis, as after a
 * crash without persistence).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer, connect } from 'node:net';
import { existsSync } from 'node:fs';

const CANDIDATES = ['/usr/bin/redis-server', '/usr/local/bin/redis-server', '/usr/sbin/redis-server'];

/** The redis-server binary, or undefined when it truly cannot be found (tests then skip, saying so). */
export function findRedisServer(): string | undefined {
  for (const c of CANDIDATES) if (existsSync(c)) return c;
  const r = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' });
  const p = r.stdout.trim();
  return r.status === 0 && p !== '' ? p : undefined;
}

export const REDIS_SKIP_MESSAGE = 'redis-server not found: install it with `bash scripts/install-system-deps.sh --for test` (CI does)';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a !== null ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export class RedisServer {
  private child: ChildProcess | undefined;
  private constructor(
    readonly bin: string,
    readonly port: number,
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  static async start(bin: string, port?: number): Promise<RedisServer> {
    const r = new RedisServer(bin, port ?? (await freePort()));
    await r.launch();
    return r;
  }

  async launch(): Promise<void> {
    const child = spawn(this.bin, ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--daemonize', 'no', '--loglevel', 'warning'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    this.child = child;
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`redis-server exited (${child.exitCode}): ${stderr}`);
      if (await canConnect(this.port)) return;
      await new Promise((r) => setTimeout(r, 25));
    }
    child.kill('SIGKILL');
    throw new Error(`redis-server did not listen on ${this.port} within 10 s: ${stderr}`);
  }

  /** SIGKILL (a crash) and wait for the process to be gone. */
  async kill9(): Promise<void> {
    const c = this.child;
    this.child = undefined;
    if (c === undefined || c.exitCode !== null || c.signalCode !== null) return;
    const gone = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGKILL');
    await gone;
  }

  /** Start again on the same port (empty: no persistence). */
  async restart(): Promise<void> {
    await this.kill9();
    await this.launch();
  }

  async stop(): Promise<void> {
    await this.kill9();
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
