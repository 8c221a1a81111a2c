/**
 * Crash recovery of the trace log: a real router process (`node bin/switchyard.js serve`) in front of a
 * fixture backend, loaded with requests, killed with SIGKILL. Every request that finished longer ago than
 * the flush interval (plus a margin for a loaded machine) must be in the log, the log must read without
 * error, and a router restarted on the same folder answers those traces again.
 */
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { startFixtureBackend } from '../helpers/fixture-backend.js';
import { get, post } from '../helpers/client.js';
import { readTraceLog } from '../../src/tracking/reader.js';
import { TraceLogWriter } from '../../src/tracking/log.js';
import { listLogFiles } from '../../src/tracking/log-format.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BIN = join(ROOT, 'bin', 'switchyard.js');
const FLUSH_MS = 100;
/** Slack for a busy shared machine: the guarantee is "flush interval", the test allows this much more. */
const MARGIN_MS = 900;

interface Router {
  child: ChildProcess;
  url: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

async function spawnRouter(backendUrl: string, dir: string): Promise<Router> {
  const child = spawn(
    process.execPath,
    [BIN, 'serve', '--host', '127.0.0.1', '--port', '0', '--worker-urls', backendUrl, '--policy', 'round_robin', '--trace-log-dir', dir, '--trace-flush-ms', String(FLUSH_MS), '--log-level', 'info', '--load-poll-interval-secs', '0'],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, NODE_OPTIONS: '' } },
  );
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('router did not get ready in 30 s')), 30_000);
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      if (!line.includes('"router.ready"')) return;
      clearTimeout(timer);
      resolve((JSON.parse(line) as { url: string }).url);
    });
    child.once('exit', (code) => reject(new Error(`router exited with ${code} before it was ready`)));
  });
  child.stdout!.resume();
  return { child, url, exited };
}

t.test('kill -9: everything older than the flush interval survives, the log reads, a restart answers', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-kill9-'));
  const backend = await startFixtureBackend(0, 'backend');
  backend.streamChunks = 3;
  t.teardown(async () => {
    await backend.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const first = await spawnRouter(backend.url, dir);
  t.teardown(() => {
    if (first.child.exitCode === null) first.child.kill('SIGKILL');
  });

  // Load: 4 concurrent clients for ~3 s, each request noting when its response ended.
  const finishedAt = new Map<string, number>();
  let stop = false;
  let n = 0;
  const client = async (c: number): Promise<void> => {
    while (!stop) {
      const id = `k9-${c}-${n++}`;
      try {
        const res = await post(`${first.url}/generate`, { text: `prompt ${id}`, stream: n % 2 === 0 }, { 'x-request-id': id });
        if (res.status === 200) finishedAt.set(id, Date.now());
      } catch {
        return; // the router is gone
      }
    }
  };
  const clients = [0, 1, 2, 3].map(client);
  await new Promise((resolve) => setTimeout(resolve, 3000));
  const killedAt = Date.now();
  first.child.kill('SIGKILL');
  stop = true;
  const exit = await first.exited;
  await Promise.all(clients);
  t.equal(exit.signal, 'SIGKILL');
  t.ok(finishedAt.size > 20, `${finishedAt.size} requests answered before the kill`);

  // The log reads without error (a torn tail is tolerated by the reader).
  const logged = new Map<string, string>();
  let torn = 0;
  for await (const tr of readTraceLog(dir, { onTruncated: () => torn++ })) logged.set(tr.request_id, tr.status);
  const required = [...finishedAt].filter(([, at]) => at < killedAt - FLUSH_MS - MARGIN_MS).map(([id]) => id);
  t.ok(required.length > 10, `${required.length} requests finished more than ${FLUSH_MS + MARGIN_MS} ms before the kill`);
  const missing = required.filter((id) => !logged.has(id));
  t.same(missing, [], 'every request older than flush + margin is in the log');
  t.ok([...logged.values()].every((s) => s === 'completed'));
  t.ok(logged.size <= finishedAt.size + 4, 'nothing invented (at most the in-flight ones, which the router finished)');
  t.comment(`answered ${finishedAt.size}, logged ${logged.size}, torn tails ${torn}`);

  // Opening the log repairs any torn tail; reading again reports none and loses nothing whole.
  const w = TraceLogWriter.open({ dir, maxBytes: 64 << 20, maxFiles: 8 });
  w.close();
  let tornAfter = 0;
  let count = 0;
  for await (const tr of readTraceLog(dir, { onTruncated: () => tornAfter++ })) {
    if (logged.has(tr.request_id)) count++;
  }
  t.equal(tornAfter, 0, 'no torn tail after recovery');
  t.equal(count, logged.size, 'recovery kept every whole record');
  t.ok(listLogFiles(dir).length >= 1);

  // A router restarted on the same folder answers the old traces from the log.
  const second = await spawnRouter(backend.url, dir);
  t.teardown(() => {
    if (second.child.exitCode === null) second.child.kill('SIGKILL');
  });
  const sample = required.slice(0, 5);
  for (const id of sample) {
    const res = await get(`${second.url}/v1/traces/${id}`);
    t.equal(res.status, 200, `${id} answered after the restart`);
    t.equal((JSON.parse(res.body) as { status: string }).status, 'completed');
  }
  const stats = JSON.parse((await get(`${second.url}/v1/traces/stats`)).body) as { loaded_from_log: number; log: { recovered_bytes_cut: number } };
  t.equal(stats.loaded_from_log, logged.size);
  second.child.kill('SIGTERM');
  const secondExit = await second.exited;
  t.equal(secondExit.code, 0, 'graceful stop');
});
