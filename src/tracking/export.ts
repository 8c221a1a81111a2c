/**
 * Exporting the trace log as CSV or JSON lines (`switchyard traces export`). The rows are the API's trace
 * objects (types.ts traceView): the same fields, in the same order, with `timestamp` as ISO 8601 text.
 */
import type { Writable } from 'node:stream';
import { once } from 'node:events';
import { readTraceLog } from './reader.js';
import { listLogFiles } from './log-format.js';
import { TRACE_FIELDS, traceView, type Trace } from './types.js';

export type ExportFormat = 'csv' | 'jsonl';

export interface ExportOptions {
  readonly format: ExportFormat;
  readonly sinceMs?: number | undefined;
  readonly untilMs?: number | undefined;
}

export interface ExportSummary {
  records: number;
  /** Log files found (those skipped by --since included). */
  files: number;
  /** Files that ended in a partial record (live, or torn by a crash and not yet repaired). */
  truncated: string[];
}

export function csvHeader(): string {
  return TRACE_FIELDS.join(',') + '\n';
}

export function csvRow(t: Trace): string {
  const v = traceView(t);
  let line = '';
  for (let i = 0; i < TRACE_FIELDS.length; i++) {
    if (i > 0) line += ',';
    line += csvCell(v[TRACE_FIELDS[i] as (typeof TRACE_FIELDS)[number]]);
  }
  return line + '\n';
}

export function jsonlLine(t: Trace): string {
  return JSON.stringify(traceView(t)) + '\n';
}

function csvCell(value: unknown): string {
  if (value === null || value === undefined) return '';
  const text = typeof value === 'object' ? JSON.stringify(value) : String(value);
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** Write the traces of the log in `dir` to `out`; resolves when written (honours backpressure). */
export async function exportTraces(dir: string, out: Writable, options: ExportOptions): Promise<ExportSummary> {
  const summary: ExportSummary = { records: 0, files: listLogFiles(dir).length, truncated: [] };
  const line = options.format === 'csv' ? csvRow : jsonlLine;
  if (options.format === 'csv') await write(out, csvHeader());
  const traces = readTraceLog(dir, {
    sinceMs: options.sinceMs,
    untilMs: options.untilMs,
    onTruncated: (file) => summary.truncated.push(file),
  });
  let chunk = '';
  for await (const t of traces) {
    summary.records++;
    chunk += line(t);
    if (chunk.length >= 64 * 1024) {
      await write(out, chunk);
      chunk = '';
    }
  }
  if (chunk !== '') await write(out, chunk);
  return summary;
}

async function write(out: Writable, text: string): Promise<void> {
  if (!out.write(text)) await once(out, 'drain');
}

const RELATIVE = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * A point in time for --since/--until: a duration back from now ("90s", "15m", "2h", "1d"), epoch
 * seconds (10 digits) or milliseconds (13 digits), or an ISO 8601 date/time. Throws on anything else.
 */
export function parseTimePoint(text: string, now = Date.now()): number {
  const s = text.trim();
  const rel = RELATIVE.exec(s);
  if (rel !== null) return now - Number(rel[1]) * (UNIT_MS[rel[2] as string] as number);
  if (/^\d{10}$/.test(s)) return Number(s) * 1000;
  if (/^\d{13}$/.test(s)) return Number(s);
  if (/^\d{4}-\d{2}-\d{2}/.test(s)) {
    const ms = Date.parse(s);
    if (Number.isFinite(ms)) return ms;
  }
  throw new Error(`'${text}' is not a time: use a duration back from now (15m, 2h, 1d), epoch seconds/ms, or ISO 8601`);
}
