/** `switchyard traces export` as users run it: a child process on a log folder. */
import t from 'tap';
import { execFile } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TraceLogWriter } from '../../src/tracking/log.js';
import { listLogFiles } from '../../src/tracking/log-format.js';
import type { Trace } from '../../src/tracking/types.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BIN = join(ROOT, 'bin', 'switchyard.js');

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, 'traces', ...args], { cwd: ROOT, env: { ...process.env, NODE_OPTIONS: '' } }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1;
      resolve({ code, stdout, stderr });
    });
  });
}

function trace(i: number, ts: number): Trace {
  return {
    request_id: `cli-${i}`,
    node_id: i % 2,
    worker_url: `http://127.0.0.1:${30001 + (i % 2)}`,
    routing_policy: 'round_robin',
    status: i === 3 ? 'failed' : 'completed',
    timestamp_ms: ts,
    route: 'generate',
    stream: false,
    reason: 'rr',
    scores: null,
    queue_ms: 0.1,
    ttft_ms: 2,
    e2e_ms: 3,
    server_queue_ms: null,
    input_tokens: 4,
    output_tokens: 5,
    cached_tokens: 0,
    http_status: i === 3 ? 502 : 200,
    error_code: i === 3 ? 'upstream_error' : null,
    error_message: i === 3 ? 'upstream failed, badly' : null,
    attempts: 1,
  };
}

t.test('export csv / jsonl, --since, --out, torn tails, bad flags', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-traces-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const now = Date.now();
  const w = TraceLogWriter.open({ dir, maxBytes: 2048, maxFiles: 10 });
  for (let i = 0; i < 30; i++) w.append(trace(i, now - (30 - i) * 60_000)); // one a minute, the last a minute ago
  w.close();

  const csv = await run(['export', '--dir', dir, '--format', 'csv']);
  t.equal(csv.code, 0, csv.stderr);
  const lines = csv.stdout.trim().split('\n');
  t.equal(lines.length, 31, 'header + 30 rows across the rotated files');
  t.match(lines[0], /^request_id,node_id,worker_url,routing_policy,status,timestamp,/);
  t.match(lines[4], /^cli-3,1,http:\/\/127\.0\.0\.1:30002,round_robin,failed,.*"upstream failed, badly"/);
  t.match(csv.stderr, /exported 30 traces from \d+ file/);

  const recent = await run(['export', '--dir', dir, '--since', '630s']);
  t.equal(recent.code, 0);
  const rows = recent.stdout.trim().split('\n').map((l) => JSON.parse(l) as { request_id: string });
  t.same(
    rows.map((r) => r.request_id),
    Array.from({ length: 10 }, (_, i) => `cli-${20 + i}`),
    'jsonl by default; only the last 10.5 minutes',
  );

  const out = join(dir, 'out.jsonl');
  const toFile = await run(['export', '--dir', dir, '--format', 'jsonl', '--out', out, '--until', String(now - 25 * 60_000)]);
  t.equal(toFile.code, 0);
  t.equal(toFile.stdout, '');
  t.equal(readFileSync(out, 'utf8').trim().split('\n').length, 5, '--until: the first five');

  // a torn tail is read up to the last whole record and reported
  const last = listLogFiles(dir).pop()!;
  const whole = statSync(last.path).size;
  appendFileSync(last.path, Buffer.from([0xde, 0x00])); // a map16 header with its length cut off
  const torn = await run(['export', '--dir', dir]);
  t.equal(torn.code, 0);
  t.equal(torn.stdout.trim().split('\n').length, 30);
  t.match(torn.stderr, /ends in a partial record/);

  truncateSync(last.path, whole);
  appendFileSync(last.path, Buffer.from([0xd4, 0x55, 0x00])); // an extension type nobody defines: not a trace log
  const corrupt = await run(['export', '--dir', dir]);
  t.equal(corrupt.code, 1, 'unreadable bytes: exit 1');
  t.match(corrupt.stderr, /unreadable record at byte \d+/);

  for (const [args, pattern] of [
    [['export'], /--dir is required/],
    [['export', '--dir', join(dir, 'nope')], /is not a folder/],
    [['export', '--dir', dir, '--format', 'xml'], /must be one of csv, jsonl/],
    [['export', '--dir', dir, '--since', 'yesterday'], /is not a time/],
    [['frobnicate'], /unknown subcommand/],
  ] as const) {
    const r = await run([...args]);
    t.equal(r.code, 2, args.join(' '));
    t.match(r.stderr, pattern);
  }
  const help = await run(['export', '--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /--format/);
  const usage = await run([]);
  t.equal(usage.code, 2);
  t.match(usage.stdout, /Subcommands:/);
});
