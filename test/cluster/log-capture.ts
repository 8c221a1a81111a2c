/** A pino logger that keeps its records in memory, to count log lines by event (one per transition). */
import { pino, type Logger } from 'pino';
import { Writable } from 'node:stream';

export interface CapturedLog {
  readonly logger: Logger;
  readonly records: Record<string, unknown>[];
  count(event: string): number;
}

export function captureLog(level: 'debug' | 'info' | 'warn' = 'info'): CapturedLog {
  const records: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line.trim() !== '') records.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  const logger = pino({ level }, stream);
  return { logger, records, count: (event) => records.filter((r) => r['event'] === event).length };
}
