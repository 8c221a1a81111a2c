import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CSV_COLUMNS, Recorder, type FinishedRequest } from '../../src/load/recorder.js';
import { GpuMapper } from '../../src/load/gpu-map.js';
import type { ExchangeOutcome } from '../../src/load/client.js';
import { readCsv } from './helpers.js';

function outcome(i: number, error: string, workerUrl: string): ExchangeOutcome {
  const failed = error !== '';
  return {
    status: failed ? 502 : 200,
    workerUrl,
    requestId: '',
    streamed: true,
    firstContentAt: 1000 + i + 5,
    completedAt: 1000 + i + 9,
    gaps: failed ? [] : [1, 2, 1],
    counts: { promptTokens: 10, completionTokens: 4, cachedTokens: -1, finishReason: failed ? '' : 'length' },
    generatedChars: 16,
    error,
  };
}

t.test('requests.csv: every row once, in order, across many write chunks, non-ASCII and quoted fields intact', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-recorder-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const csv = join(dir, 'requests.csv');
  // Enough rows for several 64 KB chunks; some with multi-byte UTF-8 (a row's byte length is not its length).
  const n = 2500;
  const rec = new Recorder(csv, n, new GpuMapper({ kind: 'server', workers: [] }));
  const errors = new Map<number, string>();
  for (let i = 0; i < n; i++) {
    let error = '';
    if (i % 7 === 3) error = `上游失败 "worker ${i}", 重试 ✓ ${'é'.repeat(i % 50)}`;
    else if (i % 11 === 5) error = `line one\nline two ${i}`;
    if (error !== '') errors.set(i, error);
    const r: FinishedRequest = { index: i, requestId: `run-${i}`, scheduledMs: i, readyMs: i, sentMs: i + 0.25, clockOffset: 1000, outcome: outcome(i, error, ''), specPromptTokens: 10, group: -1 };
    rec.add(r);
  }
  await rec.close();
  t.ok(readFileSync(csv, 'utf8').endsWith('\n'), 'the file ends with a line break');
  const rows = readCsv(csv);
  t.equal(rows.length, n, 'one line per request');
  t.same(Object.keys(rows[0] ?? {}), [...CSV_COLUMNS], 'the header');
  let bad = 0;
  for (let i = 0; i < n; i++) {
    const r = rows[i] as Record<string, string>;
    const want = (errors.get(i) ?? '').replace(/[\r\n]+/g, ' ');
    if (r['index'] !== String(i) || r['request_id'] !== `run-${i}` || r['error'] !== want || r['send_lag_ms'] !== '0.250') bad++;
  }
  t.equal(bad, 0, 'every row parses back to what was recorded');
  t.equal(rec.failed, errors.size);
});
