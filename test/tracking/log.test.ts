import t, { type Test } from 'tap';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { TraceLogWriter, recoverTail } from '../../src/tracking/log.js';
import { listLogFiles, logFileName, TraceLogCorruptError } from '../../src/tracking/log-format.js';
import { readTraceFile, readTraceLog } from '../../src/tracking/reader.js';
import { csvHeader, csvRow, exportTraces, jsonlLine, parseTimePoint } from '../../src/tracking/export.js';
import type { Trace } from '../../src/tracking/types.js';

function tmp(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-tracelog-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function trace(i: number, over: Partial<Trace> = {}): Trace {
  return {
    request_id: `req-${i}`,
    node_id: i % 4,
    worker_url: `http://127.0.0.1:${30001 + (i % 4)}`,
    routing_policy: 'cache_aware',
    status: 'completed',
    timestamp_ms: 1_700_000_000_000 + i,
    route: 'generate',
    stream: i % 2 === 0,
    reason: `cache hit ${i}`,
    scores: i % 3 === 0 ? { [`http://127.0.0.1:${30001 + (i % 4)}`]: 0.5, load: i } : null,
    queue_ms: 0.25,
    ttft_ms: 12.5,
    e2e_ms: 100 + i,
    server_queue_ms: null,
    input_tokens: 100,
    output_tokens: 20,
    cached_tokens: 5,
    http_status: 200,
    error_code: null,
    error_message: null,
    attempts: 1,
    ...over,
  };
}

async function readAll(dir: string): Promise<Trace[]> {
  const out: Trace[] = [];
  for await (const x of readTraceLog(dir)) out.push(x);
  return out;
}

t.test('append, flush, read back exactly (scores as objects, nulls kept)', async (t) => {
  const dir = tmp(t);
  const w = TraceLogWriter.open({ dir, maxBytes: 1 << 20, maxFiles: 4 });
  const written = Array.from({ length: 50 }, (_, i) => trace(i));
  for (const x of written) w.append(x);
  t.same(await readAll(dir), [], 'nothing on disk before the flush');
  t.ok(w.flush() > 0);
  t.equal(w.flush(), 0, 'nothing pending');
  t.same(await readAll(dir), written);
  const st = w.stats();
  t.equal(st.records_written, 50);
  t.equal(st.flushes, 1);
  t.equal(st.files, 1);
  t.equal(st.file, w.currentFile);
  w.close();
  w.close();
  // the encoding shares one structure per file: 50 records cost far less than 50 JSON objects
  const size = statSync(w.currentFile).size;
  t.ok(size < JSON.stringify(written).length * 0.6, `compact: ${size} bytes`);
});

t.test('rotation by size and retention by count', async (t) => {
  const dir = tmp(t);
  const w = TraceLogWriter.open({ dir, maxBytes: 4096, maxFiles: 3 });
  for (let i = 0; i < 400; i++) {
    w.append(trace(i));
    if (i % 25 === 0) w.flush();
  }
  w.close();
  const files = listLogFiles(dir);
  t.equal(files.length, 3, 'only maxFiles kept');
  for (const f of files) t.ok(statSync(f.path).size <= 4096, `${f.name} within maxBytes`);
  t.ok(w.stats().rotations >= 3);
  const got = await readAll(dir);
  t.ok(got.length > 0 && got.length < 400, 'oldest files removed');
  // what is left is the newest traces, in order, without gaps
  const last = got[got.length - 1]!;
  t.equal(last.request_id, 'req-399');
  const first = Number(got[0]!.request_id.slice(4));
  t.same(
    got.map((x) => x.request_id),
    Array.from({ length: got.length }, (_, i) => `req-${first + i}`),
  );
  t.same(files.map((f) => f.seq), [files[0]!.seq, files[0]!.seq + 1, files[0]!.seq + 2], 'consecutive sequence numbers');
});

t.test('a torn tail is read up to the last whole record and cut on open', async (t) => {
  const dir = tmp(t);
  const w = TraceLogWriter.open({ dir, maxBytes: 1 << 20, maxFiles: 4 });
  for (let i = 0; i < 20; i++) w.append(trace(i));
  w.close();
  const file = w.currentFile;
  const full = statSync(file).size;
  // cut into the middle of the last record
  truncateSync(file, full - 7);
  const truncated: number[] = [];
  const got: Trace[] = [];
  for await (const x of readTraceLog(dir, { onTruncated: (_f, valid, held) => truncated.push(valid, held) })) got.push(x);
  t.equal(got.length, 19, 'the 19 whole records');
  t.equal(truncated.length, 2, 'the torn tail is reported');
  t.equal(truncated[0]! + truncated[1]!, full - 7);
  // recovery on open: the tail is cut and a new file is started
  const w2 = TraceLogWriter.open({ dir, maxBytes: 1 << 20, maxFiles: 4 });
  t.equal(statSync(file).size, truncated[0], 'cut back to the last whole record');
  t.equal(w2.stats().recovered_bytes_cut, truncated[1]);
  t.not(w2.currentFile, file, 'new file');
  w2.append(trace(100));
  w2.close();
  const after = await readAll(dir);
  t.equal(after.length, 20);
  t.equal(after[19]!.request_id, 'req-100');
  // a file cut inside its header has no records: recovery removes it
  writeFileSync(join(dir, logFileName(50)), readFileSync(w2.currentFile).subarray(0, 5));
  const r = recoverTail(join(dir, logFileName(50)));
  t.equal(r.validBytes, 0);
  const w3 = TraceLogWriter.open({ dir, maxBytes: 1 << 20, maxFiles: 10 });
  t.equal(listLogFiles(dir).some((f) => f.seq === 50), false, 'the empty torn file is removed');
  t.equal(w3.currentFile, join(dir, logFileName(51)), 'numbering continues after it');
  w3.close();
});

t.test('garbage is reported as corrupt with file and offset; recovery cuts it', async (t) => {
  const dir = tmp(t);
  const w = TraceLogWriter.open({ dir, maxBytes: 1 << 20, maxFiles: 4 });
  for (let i = 0; i < 5; i++) w.append(trace(i));
  w.close();
  const good = statSync(w.currentFile).size;
  appendFileSync(w.currentFile, Buffer.from([0xd4, 0x55, 0x00, 0x01])); // fixext 1 of an extension type nobody defines
  const seen: string[] = [];
  await t.rejects(
    (async () => {
      for await (const x of readTraceFile(w.currentFile)) seen.push(x.request_id);
    })(),
    TraceLogCorruptError,
  );
  t.equal(seen.length, 5, 'records before the garbage were delivered');
  const r = recoverTail(w.currentFile);
  t.ok(r.corrupt);
  t.equal(r.validBytes, good);
  t.equal(statSync(w.currentFile).size, good);
  t.equal((await readAll(dir)).length, 5);
});

t.test('a file removed between listing and reading is skipped', async (t) => {
  const dir = tmp(t);
  const missing: string[] = [];
  const got: Trace[] = [];
  for await (const x of readTraceFile(join(dir, 'nope.msgpack'), { onMissing: (f) => missing.push(f) })) got.push(x);
  t.same(got, []);
  t.equal(missing.length, 1);
  t.same(await readAll(join(dir, 'no-such-dir')), [], 'no folder: no traces');
});

t.test('the writer survives a failed write: traces dropped, error counted, a new file continues', async (t) => {
  const dir = tmp(t);
  const w = TraceLogWriter.open({ dir, maxBytes: 1 << 20, maxFiles: 4 });
  w.append(trace(1));
  w.flush();
  // break the file descriptor under the writer
  const fd = (w as unknown as { fd: number }).fd;
  (await import('node:fs')).closeSync(fd);
  w.append(trace(2));
  t.equal(w.flush(), 0);
  const st = w.stats();
  t.equal(st.write_errors, 1);
  t.ok(st.last_error);
  t.equal(w.dropped, 1);
  w.append(trace(3));
  t.ok(w.flush() > 0, 'writes go on in the next file');
  w.close();
  t.same(
    (await readAll(dir)).map((x) => x.request_id),
    ['req-1', 'req-3'],
  );
});

t.test('bad options', async (t) => {
  const dir = tmp(t);
  t.throws(() => TraceLogWriter.open({ dir, maxBytes: 10, maxFiles: 1 }));
  t.throws(() => TraceLogWriter.open({ dir, maxBytes: 4096, maxFiles: 0 }));
});

t.test('since/until filter, newest-first order', async (t) => {
  const dir = tmp(t);
  const w = TraceLogWriter.open({ dir, maxBytes: 4096, maxFiles: 100 });
  const now = Date.now();
  for (let i = 0; i < 60; i++) w.append(trace(i, { timestamp_ms: now - 60_000 + i * 1000 }));
  w.close();
  const got: Trace[] = [];
  for await (const x of readTraceLog(dir, { sinceMs: now - 10_000, untilMs: now - 5_000 })) got.push(x);
  t.same(
    got.map((x) => x.request_id),
    ['req-50', 'req-51', 'req-52', 'req-53', 'req-54'],
  );
  const newest: string[] = [];
  for await (const x of readTraceLog(dir, { newestFirst: true })) newest.push(x.request_id);
  t.equal(newest.length, 60);
  t.ok(Number(newest[0]!.slice(4)) > 40, 'the newest file comes first');
  // a file last written before --since is not even opened
  const old = await readAll(dir);
  const skipAll: Trace[] = [];
  for await (const x of readTraceLog(dir, { sinceMs: Date.now() + 60_000 })) skipAll.push(x);
  t.same(skipAll, []);
  t.equal(old.length, 60);
});

t.test('export: CSV and JSON lines', async (t) => {
  const dir = tmp(t);
  const w = TraceLogWriter.open({ dir, maxBytes: 1 << 20, maxFiles: 4 });
  w.append(trace(0, { error_message: 'bad, "quoted"\nline', status: 'failed', http_status: 502, error_code: 'upstream_error' }));
  w.append(trace(1));
  w.close();
  const csv = await collect((out) => exportTraces(dir, out, { format: 'csv' }));
  const lines = csv.text.split('\n');
  t.equal(lines[0] + '\n', csvHeader());
  t.match(lines[0], /^request_id,node_id,worker_url,routing_policy,status,timestamp,/);
  t.match(csv.text, /"bad, ""quoted""\nline"/, 'CSV quoting');
  t.match(csv.text, /"\{""http:\/\/127\.0\.0\.1:30001"":0\.5,""load"":0\}"/, 'scores as JSON in one cell');
  t.equal(csv.summary.records, 2);
  const jsonl = await collect((out) => exportTraces(dir, out, { format: 'jsonl' }));
  const rows = jsonl.text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  t.equal(rows.length, 2);
  t.equal(rows[0]!['request_id'], 'req-0');
  t.equal(rows[0]!['timestamp'], new Date(1_700_000_000_000).toISOString());
  t.equal(rows[1]!['scores'], null);
  t.equal(jsonlLine(trace(5)), JSON.stringify(JSON.parse(jsonlLine(trace(5)))) + '\n');
  t.equal(csvRow(trace(2)).split(',').length, csvHeader().split(',').length);
});

t.test('parseTimePoint', async (t) => {
  const now = 1_800_000_000_000;
  t.equal(parseTimePoint('15m', now), now - 900_000);
  t.equal(parseTimePoint('2h', now), now - 7_200_000);
  t.equal(parseTimePoint('1.5s', now), now - 1500);
  t.equal(parseTimePoint('1d', now), now - 86_400_000);
  t.equal(parseTimePoint('250ms', now), now - 250);
  t.equal(parseTimePoint('1700000000', now), 1_700_000_000_000);
  t.equal(parseTimePoint('1700000000123', now), 1_700_000_000_123);
  t.equal(parseTimePoint('2024-01-01T00:00:00Z', now), Date.UTC(2024, 0, 1));
  for (const bad of ['', 'soon', '15x', '2024-13-45T99', '123']) t.throws(() => parseTimePoint(bad, now), bad);
});

async function collect<T>(fn: (out: PassThrough) => Promise<T>): Promise<{ text: string; summary: T }> {
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  const summary = await fn(out);
  out.end();
  return { text: Buffer.concat(chunks).toString('utf8'), summary };
}
