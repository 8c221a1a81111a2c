/**
 * `switchyard traces <subcommand>`: offline tools for the trace log (--trace-log-dir of `serve`).
 *
 *   switchyard traces export --dir D --format csv|jsonl [--since 2h] [--until ISO] [--out FILE]
 *
 * Reads every log file of the folder (rotated ones included), oldest first; a file torn by a crash or still
 * being written is read up to its last whole record. For analysis in code, see src/tracking/reader.ts.
 */
import { createWriteStream, existsSync, statSync } from 'node:fs';
import { finished } from 'node:stream/promises';
import type { Writable } from 'node:stream';
import { parseOptions, OptionsError, type OptionSpec } from '../config/options.js';
import { exportTraces, parseTimePoint, type ExportFormat } from '../tracking/export.js';
import { TraceLogCorruptError } from '../tracking/log-format.js';

const EXPORT_SPECS = [
  { name: 'dir', type: 'string', env: false, metavar: 'DIR', help: 'the trace log folder (serve --trace-log-dir)' },
  { name: 'format', type: 'string', default: 'jsonl', choices: ['csv', 'jsonl'], env: false, help: 'output format' },
  { name: 'since', type: 'string', env: false, metavar: 'TIME', help: 'only requests that arrived at/after: 15m, 2h, 1d back, epoch s/ms, or ISO 8601' },
  { name: 'until', type: 'string', env: false, metavar: 'TIME', help: 'only requests that arrived before (same forms)' },
  { name: 'out', type: 'string', env: false, metavar: 'FILE', help: 'write here instead of stdout' },
] as const satisfies readonly OptionSpec[];

const USAGE = `Usage: switchyard traces <subcommand> [options]

Subcommands:
  export    write the trace log as CSV or JSON lines

Run \`switchyard traces export --help\` for its options.`;

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h') {
    process.stdout.write(USAGE + '\n');
    return sub === undefined ? 2 : 0;
  }
  if (sub !== 'export') throw new OptionsError(`unknown subcommand '${sub}' (known: export)`);
  const opts = parseOptions(EXPORT_SPECS, rest, { command: 'traces export', summary: 'Write the trace log (serve --trace-log-dir) as CSV or JSON lines, oldest first.' });
  if (opts.dir === undefined) throw new OptionsError('--dir is required');
  if (!existsSync(opts.dir) || !statSync(opts.dir).isDirectory()) throw new OptionsError(`--dir ${opts.dir} is not a folder`);
  const now = Date.now();
  let sinceMs: number | undefined;
  let untilMs: number | undefined;
  try {
    if (opts.since !== undefined) sinceMs = parseTimePoint(opts.since, now);
    if (opts.until !== undefined) untilMs = parseTimePoint(opts.until, now);
  } catch (err) {
    throw new OptionsError((err as Error).message);
  }
  const out: Writable = opts.out === undefined ? process.stdout : createWriteStream(opts.out);
  try {
    const summary = await exportTraces(opts.dir, out, { format: opts.format as ExportFormat, sinceMs, untilMs });
    for (const f of summary.truncated) process.stderr.write(`switchyard traces: ${f} ends in a partial record (live or torn); read up to it\n`);
    process.stderr.write(`switchyard traces: exported ${summary.records} traces from ${summary.files} file(s)\n`);
  } catch (err) {
    if (err instanceof TraceLogCorruptError) {
      process.stderr.write(`switchyard traces: ${err.message}\n`);
      return 1;
    }
    throw err;
  } finally {
    if (out !== process.stdout) {
      out.end();
      await finished(out);
    }
  }
  return 0;
}
