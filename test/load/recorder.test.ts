import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CSV_COLUMNS, Recorder, type FinishedRequest } from '../../src/load/recorder.js';
import { GpuMapper } from '../../src/load/gpu-map.js';
import type { ExchangeOutcome } from '../../src/load/client.js';

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

/** Splits one CSV line into fields (quotes as RFC 4180; the recorder never writes a line break inside a field). */
function fields(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let k = 0; k < line.length; k++) {
    const c = line[k] as string;
    if (quoted) {
      if (c === '"' && line[k + 1] === '"') {
        cur += '"';
        k++;
      } else if (c === '"') quoted = false;
      else cur += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
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
  const lines = readFileSync(csv, 'utf8').split('\n');
  t.equal(lines.pop(), '', 'the file ends with a line break');
  t.equal(lines.length, n + 1, 'a header and one line per request');
  t.same(fields(lines[0] as string), [...CSV_COLUMNS]);
  const errorCol = CSV_COLUMNS.indexOf('error');
  const lagCol = CSV_COLUMNS.indexOf('send_lag_ms');
  let bad = 0;
  for (let i = 0; i < n; i++) {
    const f = fields(lines[i + 1] as string);
    const want = (errors.get(i) ?? '').replace(/[\r\n]+/g, ' ');
    if (f.length !== CSV_COLUMNS.length || f[0] !== String(i) || f[1] !== `run-${i}` || f[errorCol] !== want || f[lagCol] !== '0.250') bad++;
  }
  t.equal(bad, 0, 'every row parses back to what was recorded');
  t.equal(rec.failed, errors.size);
});
