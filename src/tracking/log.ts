/**
 * The trace log writer, owned by the tracker actor's thread (synchronous file calls block only that thread).
 *
 * - append(trace) packs the finished trace into a pending buffer; flush() (every --trace-flush-ms, from the
 *   actor's timer) writes the buffer with one write(2). After a kill -9 the log holds everything flushed:
 *   at most one flush interval is lost. No fsync: the log survives the process, not the machine.
 * - Rotation by size: a trace that would take the current file past maxBytes goes to a new file (each file
 *   is a self-contained msgpack stream, see log-format.ts). Retention: at most maxFiles files, oldest removed.
 * - Recovery: open() cuts a torn tail of the newest file back to its last whole record, then starts a new
 *   file, so an existing file is never appended to by a second encoder.
 * - A failed write (disk full, folder removed) drops that flush's traces, cuts the file back to its last
 *   good byte and continues in a new file; the error is counted and kept for /v1/traces/stats.
 */
import { closeSync, fstatSync, ftruncateSync, mkdirSync, openSync, readSync, statSync, truncateSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Packr } from 'msgpackr';
import { ChunkDecoder, listLogFiles, logFileName, logPackr, LOG_FORMAT, LOG_VERSION, TraceLogCorruptError, type LogHeader } from './log-format.js';
import type { Trace, TraceLogStats } from './types.js';

export interface TraceLogOptions {
  readonly dir: string;
  /** Rotate when a file would exceed this many bytes. */
  readonly maxBytes: number;
  /** Files kept, the current one included. */
  readonly maxFiles: number;
  readonly now?: () => number;
}

export interface TailRecovery {
  readonly file: string;
  readonly size: number;
  /** Bytes kept: the end of the last whole record. */
  readonly validBytes: number;
  /** Whole records found. */
  readonly records: number;
  /** The tail was not msgpack at all (rather than a record cut short). */
  readonly corrupt: boolean;
}

const READ_CHUNK = 1 << 20;
const INITIAL_PENDING = 64 * 1024;

/**
 * Scan a log file and cut it back to its last whole record. Returns what was found; the file is only
 * written when something had to be cut.
 */
export function recoverTail(path: string): TailRecovery {
  const size = statSync(path).size;
  const fd = openSync(path, 'r+');
  try {
    const decoder = new ChunkDecoder(path);
    const buf = Buffer.allocUnsafe(READ_CHUNK);
    const sink: unknown[] = [];
    let records = 0;
    let pos = 0;
    let corrupt = false;
    while (pos < size) {
      const n = readSync(fd, buf, 0, Math.min(READ_CHUNK, size - pos), pos);
      if (n === 0) break;
      pos += n;
      try {
        decoder.push(buf.subarray(0, n), sink);
      } catch (err) {
        if (!(err instanceof TraceLogCorruptError)) throw err;
        corrupt = true;
        records += sink.length;
        break;
      }
      records += sink.length;
      sink.length = 0;
    }
    const validBytes = decoder.offset;
    if (validBytes < size) ftruncateSync(fd, validBytes);
    return { file: path, size, validBytes, records, corrupt };
  } finally {
    closeSync(fd);
  }
}

export class TraceLogWriter {
  readonly dir: string;
  private readonly maxBytes: number;
  private readonly maxFiles: number;
  private readonly now: () => number;
  private fd = -1;
  private seq = 0;
  private path = '';
  private packr: Packr = logPackr();
  /** Bytes of the current file known to be on disk. */
  private fileBytes = 0;
  private headerBytes = 0;
  private pending = Buffer.allocUnsafe(INITIAL_PENDING);
  private pendingLen = 0;
  private pendingRecords = 0;
  private readonly s: TraceLogStats;
  /** Traces dropped because a write failed or no file could be opened. */
  dropped = 0;

  private constructor(options: TraceLogOptions) {
    if (!Number.isInteger(options.maxBytes) || options.maxBytes < 1024) throw new Error(`trace log maxBytes must be an integer >= 1024, got ${options.maxBytes}`);
    if (!Number.isInteger(options.maxFiles) || options.maxFiles < 1) throw new Error(`trace log maxFiles must be a positive integer, got ${options.maxFiles}`);
    this.dir = options.dir;
    this.maxBytes = options.maxBytes;
    this.maxFiles = options.maxFiles;
    this.now = options.now ?? Date.now;
    this.s = { dir: options.dir, file: '', files: 0, records_written: 0, bytes_written: 0, flushes: 0, rotations: 0, recovered_bytes_cut: 0, write_errors: 0, last_error: null };
  }

  /** Create the folder if needed, repair the newest file's tail, and start a new file. */
  static open(options: TraceLogOptions): TraceLogWriter {
    const w = new TraceLogWriter(options);
    mkdirSync(options.dir, { recursive: true });
    const files = listLogFiles(options.dir);
    const last = files[files.length - 1];
    if (last !== undefined) {
      const r = recoverTail(last.path);
      w.s.recovered_bytes_cut = r.size - r.validBytes;
      w.seq = last.seq;
      // A file with no trace (a run that served nothing) would only push real data out of retention.
      if (r.records <= 1) unlinkSync(last.path);
    }
    w.openNext();
    return w;
  }

  /** The file being written. */
  get currentFile(): string {
    return this.path;
  }

  stats(): TraceLogStats {
    return { ...this.s, file: this.path, files: listLogFiles(this.dir).length };
  }

  /**
   * Queue a finished trace; written at the next flush (or now, if it starts a new file). `t` must hold
   * exactly the Trace fields, in TRACE_FIELDS order (what TraceStore hands out; toLogRecord makes such a
   * copy of anything else): its keys become the file's record structure.
   */
  append(t: Trace): void {
    if (this.fd < 0) {
      // No file (a previous open failed): dropped; flush() tries to open one again.
      this.dropped++;
      return;
    }
    let bytes = this.packr.pack(t);
    const used = this.fileBytes + this.pendingLen;
    if (used + bytes.length > this.maxBytes && used > this.headerBytes) {
      this.flush();
      if (!this.rotate()) {
        this.dropped++;
        return;
      }
      bytes = this.packr.pack(t);
    }
    this.reserve(bytes.length);
    this.pending.set(bytes, this.pendingLen);
    this.pendingLen += bytes.length;
    this.pendingRecords++;
  }

  /** Write what is pending with one write(2). Returns the bytes written. */
  flush(): number {
    if (this.fd < 0) this.openNext();
    if (this.pendingLen === 0) return 0;
    const len = this.pendingLen;
    const records = this.pendingRecords;
    this.pendingLen = 0;
    this.pendingRecords = 0;
    if (this.fd < 0) {
      this.dropped += records;
      return 0;
    }
    try {
      writeAll(this.fd, this.pending, len);
    } catch (err) {
      this.onWriteError(err, records);
      return 0;
    }
    this.fileBytes += len;
    this.s.bytes_written += len;
    this.s.records_written += records;
    this.s.flushes++;
    if (this.pending.length > 4 * INITIAL_PENDING && len < INITIAL_PENDING) this.pending = Buffer.allocUnsafe(INITIAL_PENDING);
    return len;
  }

  close(): void {
    this.flush();
    if (this.fd >= 0) {
      try {
        closeSync(this.fd);
      } catch {
        /* already gone */
      }
      this.fd = -1;
    }
  }

  // ---------------------------------------------------------------------------------------------

  private reserve(extra: number): void {
    const need = this.pendingLen + extra;
    if (need <= this.pending.length) return;
    const grown = Buffer.allocUnsafe(Math.max(need, this.pending.length * 2));
    this.pending.copy(grown, 0, 0, this.pendingLen);
    this.pending = grown;
  }

  private rotate(): boolean {
    this.s.rotations++;
    return this.openNext();
  }

  /** Close the current file (if any), open the next sequence number with a header, apply retention. */
  private openNext(): boolean {
    if (this.fd >= 0) {
      try {
        closeSync(this.fd);
      } catch {
        /* ignore */
      }
      this.fd = -1;
    }
    this.seq++;
    const path = join(this.dir, logFileName(this.seq));
    this.packr = logPackr();
    const header: LogHeader = { format: LOG_FORMAT, version: LOG_VERSION, created_ms: this.now(), seq: this.seq, pid: process.pid };
    try {
      mkdirSync(this.dir, { recursive: true });
      const fd = openSync(path, 'wx');
      const bytes = this.packr.pack(header);
      writeAll(fd, bytes, bytes.length);
      this.fd = fd;
      this.path = path;
      this.fileBytes = bytes.length;
      this.headerBytes = bytes.length;
    } catch (err) {
      this.recordError(err);
      return false;
    }
    this.applyRetention();
    return true;
  }

  private applyRetention(): void {
    const files = listLogFiles(this.dir);
    for (let i = 0; i < files.length - this.maxFiles; i++) {
      try {
        unlinkSync((files[i] as { path: string }).path);
      } catch (err) {
        this.recordError(err);
      }
    }
  }

  private onWriteError(err: unknown, records: number): void {
    this.recordError(err);
    this.dropped += records;
    // Part of the batch may be on disk: cut back to the last whole record, and continue in a fresh file
    // (the encoder believes the lost bytes defined structures the file now lacks).
    try {
      if (fstatSync(this.fd).size > this.fileBytes) ftruncateSync(this.fd, this.fileBytes);
    } catch {
      try {
        truncateSync(this.path, this.fileBytes);
      } catch {
        /* the file is gone */
      }
    }
    this.openNext();
  }

  private recordError(err: unknown): void {
    this.s.write_errors++;
    this.s.last_error = err instanceof Error ? err.message : String(err);
  }
}

function writeAll(fd: number, buf: Uint8Array, len: number): void {
  let off = 0;
  while (off < len) off += writeSync(fd, buf, off, len - off);
}
