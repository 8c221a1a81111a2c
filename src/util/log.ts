/**
 * Structured logging with pino. The main thread and actor threads log synchronously to stdout
 * (pino.destination(1)): pino.transport would start one extra thread per call.
 */
import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

const REDACT = ['req.headers.authorization', 'headers.authorization', 'apiKey', 'api_key', 'adminApiKey', '*.apiKey', '*.adminApiKey'];

export function createLogger(options: { level?: string; name?: string; destination?: number | string } = {}): Logger {
  const level = (options.level ?? process.env['SWITCHYARD_LOG_LEVEL'] ?? 'info') as LevelWithSilent;
  const dest = pino.destination({ dest: options.destination ?? 1, sync: true });
  return pino(
    {
      level,
      base: options.name === undefined ? { pid: process.pid } : { pid: process.pid, name: options.name },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    dest,
  );
}

/** A logger that drops everything (tests, embedded use). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
