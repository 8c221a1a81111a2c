/**
 * marginal_utility's router-side decisions CSV (seed 003's marginal_utility_recorder, fixed): one row per
 * decision and one per observed completion, every gradient column a number, real request ids. Rows are
 * formatted in the policy's thread and written in batches (every `flushRows` rows or `flushIntervalMs`),
 * asynchronously, one write at a time; close() writes the rest synchronously. The file is appended to
 * (a restarted policy actor continues it); the header is written when the file is empty.
 */
import { accessSync, closeSync, constants, fstatSync, openSync, statSync, write, writeSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { SwitchyardError } from '../errors.js';

export const DECISIONS_CSV_COLUMNS = [
  'timestamp',
  'worker_url',
  'request_id',
  'throughput_gradient',
  'latency_gradient',
  'score',
  'outstanding_requests',
  'avg_throughput',
  'avg_latency',
  'window_size',
  'selection_reason',
] as const;

export type SelectionReason = 'gradient_based' | 'load_based' | 'completion_record';

export interface DecisionRow {
  /** Wall-clock ms. */
  readonly timestampMs: number;
  readonly workerUrl: string;
  readonly requestId: string;
  readonly throughputGradient: number;
  readonly latencyGradient: number;
  readonly score: number;
  readonly outstanding: number;
  /** Output tokens/s, mean over the worker's window. */
  readonly avgThroughput: number;
  /** Seconds, mean over the worker's window. */
  readonly avgLatency: number;
  /** Samples in the worker's window. */
  readonly windowSize: number;
  readonly selectionReason: SelectionReason;
}

export interface CsvWriterOptions {
  readonly flushRows?: number;
  readonly flushIntervalMs?: number;
}

export interface CsvWriterStats {
  readonly path: string;
  readonly rows: number;
  readonly written: number;
  readonly pending: number;
  readonly errors: number;
  readonly lastError: string | null;
}

/**
 * Fail early (at start-up, with a stable code) when rows could not be written: the folder must exist and be
 * writable, and an existing file must be a writable regular file.
 */
export function checkCsvPath(path: string): string {
  if (typeof path !== 'string' || path === '') throw new SwitchyardError('invalid_request', 'decisions CSV path must be a non-empty string');
  const abs = resolve(path);
  try {
    const dir = statSync(dirname(abs));
    if (!dir.isDirectory()) throw new Error(`${dirname(abs)} is not a directory`);
    accessSync(dirname(abs), constants.W_OK);
    let file: ReturnType<typeof statSync> | undefined;
    try {
      file = statSync(abs);
    } catch {
      file = undefined;
    }
    if (file !== undefined) {
      if (!file.isFile()) throw new Error(`${abs} exists and is not a regular file`);
      accessSync(abs, constants.W_OK);
    }
  } catch (err) {
    throw new SwitchyardError('invalid_request', `cannot write the decisions CSV at ${abs}: ${(err as Error).message}`, { cause: err });
  }
  return abs;
}

/** A number as CSV text: integers as they are, others to 6 significant digits; never empty. */
export function csvNumber(x: number): string {
  if (!Number.isFinite(x)) return '0';
  if (Number.isInteger(x)) return String(x);
  return String(Number(x.toPrecision(6)));
}

function csvText(s: string): string {
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** "2025-07-31 05:38:08.623" (UTC), the seed's format. */
export function csvTimestamp(ms: number): string {
  const iso = new Date(ms).toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 23)}`;
}

export function formatRow(r: DecisionRow): string {
  return (
    `${csvTimestamp(r.timestampMs)},${csvText(r.workerUrl)},${csvText(r.requestId)},${csvNumber(r.throughputGradient)},` +
    `${csvNumber(r.latencyGradient)},${csvNumber(r.score)},${csvNumber(r.outstanding)},${csvNumber(r.avgThroughput)},` +
    `${csvNumber(r.avgLatency)},${csvNumber(r.windowSize)},${r.selectionReason}\n`
  );
}

export class DecisionsCsv {
  readonly path: string;
  private readonly flushRows: number;
  private fd = -1;
  private pending: string[] = [];
  private writing: Promise<void> | null = null;
  private readonly timer: NodeJS.Timeout | null;
  private rows = 0;
  private written = 0;
  private errors = 0;
  private lastError: string | null = null;
  private closed = false;

  constructor(path: string, options: CsvWriterOptions = {}) {
    this.path = checkCsvPath(path);
    this.flushRows = options.flushRows ?? 256;
    const every = options.flushIntervalMs ?? 250;
    this.timer = every > 0 ? setInterval(() => this.flush(), every) : null;
    this.timer?.unref();
  }

  append(row: DecisionRow): void {
    if (this.closed) return;
    this.pending.push(formatRow(row));
    this.rows++;
    if (this.pending.length >= this.flushRows) this.flush();
  }

  /** Start writing what is pending (no-op while a write is in progress: the next flush takes it). */
  flush(): void {
    if (this.writing !== null || this.pending.length === 0 || this.closed) return;
    let chunk: Buffer;
    try {
      chunk = this.take();
    } catch (err) {
      this.fail(err);
      return;
    }
    const fd = this.fd;
    this.writing = new Promise<void>((done) => {
      write(fd, chunk, 0, chunk.length, null, (err) => {
        if (err !== null) this.fail(err);
        this.writing = null;
        done();
      });
    });
  }

  stats(): CsvWriterStats {
    return { path: this.path, rows: this.rows, written: this.written, pending: this.pending.length, errors: this.errors, lastError: this.lastError };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    if (this.timer !== null) clearInterval(this.timer);
    if (this.writing !== null) await this.writing;
    this.closed = true;
    try {
      if (this.pending.length > 0) {
        const chunk = this.take();
        writeSync(this.fd, chunk);
      }
    } catch (err) {
      this.fail(err);
    }
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }

  /** The pending rows as one buffer (opening the file, and writing the header into it, on first use). */
  private take(): Buffer {
    let header = '';
    if (this.fd < 0) {
      this.fd = openSync(this.path, 'a');
      if (fstatSync(this.fd).size === 0) header = DECISIONS_CSV_COLUMNS.join(',') + '\n';
    }
    const text = header + this.pending.join('');
    this.written += this.pending.length;
    this.pending = [];
    return Buffer.from(text);
  }

  private fail(err: unknown): void {
    this.errors++;
    this.lastError = err instanceof Error ? err.message : String(err);
  }
}
