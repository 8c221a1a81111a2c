/**
 * The trace log's on-disk format, shared by the writer (log.ts) and the reader (reader.ts).
 *
 * A log is a folder of files `traces-NNNNNN.msgpack` (NNNNNN: a sequence number, higher = newer). Each file
 * is one msgpackr stream in sequential record mode (what PackrStream writes): the first trace written
 * carries the record structure (its key list) inline, every later trace references it, so a trace costs
 * only its values. Every file starts with a header record and is decodable on its own.
 *
 *   header  { format: 'switchyard-traces', version: 1, created_ms, seq, pid }
 *   trace   { request_id, node_id, worker_url, ..., attempts }   (the Trace fields, in TRACE_FIELDS order
 *                                                                  minus the derived `timestamp`)
 *
 * `scores` objects are written as plain msgpack maps (their keys vary per policy and worker set; as records
 * they would mint a structure per key set).
 *
 * Bytes are appended whole records at a time, so a file can only be torn at its very end (a process killed
 * mid-write): decoding stops at the last whole record, and opening the log cuts the torn tail.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Packr, Unpackr } from 'msgpackr';
import type { Trace } from './types.js';

export const LOG_FORMAT = 'switchyard-traces';
export const LOG_VERSION = 1;

const FILE_PATTERN = /^traces-(\d{6,})\.msgpack$/;

export interface LogHeader {
  format: typeof LOG_FORMAT;
  version: number;
  created_ms: number;
  seq: number;
  pid: number;
}

export interface LogFile {
  readonly seq: number;
  readonly name: string;
  readonly path: string;
}

export function logFileName(seq: number): string {
  return `traces-${String(seq).padStart(6, '0')}.msgpack`;
}

/** The log's files, oldest first. A missing folder has none. */
export function listLogFiles(dir: string): LogFile[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const out: LogFile[] = [];
  for (const name of names) {
    const m = FILE_PATTERN.exec(name);
    if (m !== null) out.push({ seq: Number(m[1]), name, path: join(dir, name) });
  }
  return out.sort((a, b) => a.seq - b.seq);
}

/** Records (traces, headers) as structures; everything else (scores) as maps. */
function isRecordShape(o: object): boolean {
  return 'request_id' in o || 'format' in o;
}

/** A fresh encoder: one per file, since its structures are defined inline as the file goes. */
export function logPackr(): Packr {
  return new Packr({ sequential: true, useRecords: isRecordShape as (o: unknown) => boolean, useToJSON: false });
}

export function logUnpackr(): Unpackr {
  return new Unpackr({ sequential: true, mapsAsObjects: true });
}

/** The trace as written (an explicit copy: a stored trace carries bookkeeping fields that stay in memory). */
export function toLogRecord(t: Trace): Trace {
  return {
    request_id: t.request_id,
    node_id: t.node_id,
    worker_url: t.worker_url,
    routing_policy: t.routing_policy,
    status: t.status,
    timestamp_ms: t.timestamp_ms,
    route: t.route,
    stream: t.stream,
    reason: t.reason,
    scores: t.scores,
    queue_ms: t.queue_ms,
    ttft_ms: t.ttft_ms,
    e2e_ms: t.e2e_ms,
    server_queue_ms: t.server_queue_ms,
    input_tokens: t.input_tokens,
    output_tokens: t.output_tokens,
    cached_tokens: t.cached_tokens,
    http_status: t.http_status,
    error_code: t.error_code,
    error_message: t.error_message,
    attempts: t.attempts,
  };
}

export function isLogHeader(v: unknown): v is LogHeader {
  return typeof v === 'object' && v !== null && (v as { format?: unknown }).format === LOG_FORMAT;
}

/** A decoded value that is a trace (loosely checked: the fields every consumer relies on). */
export function isTraceRecord(v: unknown): v is Trace {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  return typeof r['request_id'] === 'string' && typeof r['status'] === 'string' && typeof r['timestamp_ms'] === 'number';
}

export class TraceLogCorruptError extends Error {
  constructor(
    readonly file: string,
    readonly offset: number,
    message: string,
  ) {
    super(`${file}: unreadable record at byte ${offset}: ${message}`);
    this.name = 'TraceLogCorruptError';
  }
}

/**
 * Decodes a file chunk by chunk and knows, after every chunk, the file offset just past the last whole
 * record (`offset`). A record cut by the end of a chunk is held until the next; one still held at the end of
 * the file is the torn tail (`heldBytes` > 0).
 */
export class ChunkDecoder {
  private readonly unpackr = logUnpackr();
  private held: Buffer | null = null;
  /** File offset just past the last whole record decoded. */
  offset = 0;

  constructor(private readonly file: string) {}

  get heldBytes(): number {
    return this.held === null ? 0 : this.held.length;
  }

  /** Decode the records completed by `chunk` into `out`. Throws TraceLogCorruptError on bytes that are not msgpack. */
  push(chunk: Buffer, out: unknown[]): void {
    if (chunk.length === 0) return;
    const source = this.held === null ? chunk : Buffer.concat([this.held, chunk]);
    const base = this.offset;
    let end = 0;
    try {
      this.unpackr.unpackMultiple(source, (value: unknown, _start?: number, stop?: number) => {
        out.push(value);
        end = stop as number;
      });
      this.held = null;
    } catch (err) {
      const e = err as Error & { incomplete?: boolean };
      if (e.incomplete !== true) {
        this.offset = base + end;
        this.held = null;
        throw new TraceLogCorruptError(this.file, base + end, e.message);
      }
      // Copy: the caller reuses its read buffer.
      this.held = Buffer.from(source.subarray(end));
    }
    this.offset = base + end;
  }
}
