/**
 * Reading the trace log for analysis: an async iterator over the traces of every file of a log folder,
 * oldest file first, in the order they were written (finish order). Safe on a live log (the file being
 * written may end in a record cut short: reading stops before it) and on a log left by a killed process.
 *
 *   for await (const t of readTraceLog('/var/log/switchyard/traces', { sinceMs: Date.now() - 3600e3 })) ...
 */
import { open, stat } from 'node:fs/promises';
import { ChunkDecoder, isTraceRecord, listLogFiles } from './log-format.js';
import type { Trace } from './types.js';

export interface ReadTraceLogOptions {
  /** Only traces that arrived at or after this wall-clock ms. */
  readonly sinceMs?: number | undefined;
  /** Only traces that arrived before this wall-clock ms. */
  readonly untilMs?: number | undefined;
  /** Read newest files first (traces within a file stay in file order). */
  readonly newestFirst?: boolean | undefined;
  /** Called for a file that ends in a partial record (a live file, or a torn tail not yet repaired). */
  readonly onTruncated?: ((file: string, validBytes: number, heldBytes: number) => void) | undefined;
  /** Called for a file that was removed (retention) between listing and reading. */
  readonly onMissing?: ((file: string) => void) | undefined;
}

const CHUNK = 256 * 1024;

export async function* readTraceLog(dir: string, options: ReadTraceLogOptions = {}): AsyncGenerator<Trace, void, undefined> {
  const files = listLogFiles(dir);
  if (options.newestFirst === true) files.reverse();
  for (const f of files) {
    if (options.sinceMs !== undefined) {
      // A file last written before `since` holds only traces that finished, so arrived, before it.
      let mtimeMs: number;
      try {
        mtimeMs = (await stat(f.path)).mtimeMs;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        options.onMissing?.(f.path);
        continue;
      }
      if (mtimeMs < options.sinceMs) continue;
    }
    yield* readTraceFile(f.path, options);
  }
}

/** The traces of one log file. Throws TraceLogCorruptError for bytes that are not a trace log at all. */
export async function* readTraceFile(path: string, options: ReadTraceLogOptions = {}): AsyncGenerator<Trace, void, undefined> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    options.onMissing?.(path);
    return;
  }
  const since = options.sinceMs;
  const until = options.untilMs;
  try {
    const decoder = new ChunkDecoder(path);
    const buf = Buffer.allocUnsafe(CHUNK);
    const out: unknown[] = [];
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, CHUNK, null);
      if (bytesRead === 0) break;
      let corrupt: unknown = null;
      try {
        decoder.push(buf.subarray(0, bytesRead), out);
      } catch (err) {
        corrupt = err; // delivered after the records that precede it
      }
      for (const v of out) {
        // Headers, and record shapes from a newer writer this reader does not know, are skipped.
        if (!isTraceRecord(v)) continue;
        if (since !== undefined && v.timestamp_ms < since) continue;
        if (until !== undefined && v.timestamp_ms >= until) continue;
        yield v;
      }
      out.length = 0;
      if (corrupt !== null) throw corrupt;
    }
    if (decoder.heldBytes > 0) options.onTruncated?.(path, decoder.offset, decoder.heldBytes);
  } finally {
    await fh.close();
  }
}
