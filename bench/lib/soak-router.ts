/**
 * The router under soak (bench/soak.ts), in a process of its own so its memory is its own: started with
 * the router's CLI flags as arguments, it answers IPC messages from the soak:
 *   { type: 'sample' }  -> memory (the heap right after a full GC) and every counter the
 *                          soak checks for leaks;
 *   { type: 'close' }   -> graceful close, then exit 0.
 * It announces { type: 'ready', url, metricsUrl } once listening.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { parseRouterOptions } from '../../src/config/router-options.js';
import { startRouter, type StartedRouter } from '../../src/router.js';
import { createLogger } from '../../src/util/log.js';
import { Field } from '../../src/actors/worker-table.js';

export interface RouterSample {
  readonly type: 'sample';
  /** ms since the router started. */
  readonly at: number;
  readonly rss: number;
  readonly heapUsed: number;
  readonly heapTotal: number;
  readonly external: number;
  readonly arrayBuffers: number;
  /** True when heapUsed was read right after a full GC (the live heap). */
  readonly afterGc: boolean;
  readonly counters: { requests: number; completed: number; failed: number; aborted: number; retries: number; active: number };
  readonly limiter: { active: number; queued: number } | null;
  readonly workers: { url: string; inFlight: number; inFlightTokens: number; healthy: boolean; breaker: number }[];
}

export type RouterMessage = { type: 'ready'; url: string; metricsUrl: string | undefined } | RouterSample | { type: 'closed'; unfinished: number } | { type: 'error'; message: string };

const started = Date.now();
// A full GC before each sample reads the live heap. Set at run time: --expose-gc on the command line
// would be inherited by the actor threads, which refuse it.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as (() => void) | undefined;

function sample(r: StartedRouter): RouterSample {
  if (gc !== undefined) gc();
  const m = process.memoryUsage();
  const { table, registry, counters, limits } = r.ctx;
  return {
    type: 'sample',
    at: Date.now() - started,
    rss: m.rss,
    heapUsed: m.heapUsed,
    heapTotal: m.heapTotal,
    external: m.external,
    arrayBuffers: m.arrayBuffers,
    afterGc: gc !== undefined,
    counters: { ...counters },
    limiter: limits === undefined ? null : { active: limits.active, queued: limits.queued },
    workers: registry.list().map((w) => ({
      url: w.url,
      inFlight: table.inFlight(w.slot),
      inFlightTokens: table.inFlightTokens(w.slot),
      healthy: table.get(w.slot, Field.Healthy) === 1,
      breaker: table.get(w.slot, Field.Breaker),
    })),
  };
}

async function main(): Promise<void> {
  const send = (m: RouterMessage): void => {
    process.send?.(m);
  };
  let r: StartedRouter;
  try {
    const opts = parseRouterOptions(process.argv.slice(2), {});
    // Warnings and errors only (breaker and ejection logs), to stderr: the soak's own output stays readable.
    r = await startRouter(opts, { logger: createLogger({ level: opts.logLevel === 'info' ? 'warn' : opts.logLevel, name: 'switchyard', destination: 2 }) });
  } catch (err) {
    send({ type: 'error', message: (err as Error).stack ?? String(err) });
    process.exit(1);
  }
  process.on('message', (m: { type: string }) => {
    if (m.type === 'sample') send(sample(r));
    else if (m.type === 'close') {
      void r.close(30_000).then(() => {
        send({ type: 'closed', unfinished: r.ctx.counters.active });
        process.disconnect?.();
        process.exit(0);
      });
    }
  });
  process.on('disconnect', () => void r.close(0).then(() => process.exit(0)));
  send({ type: 'ready', url: r.url, metricsUrl: r.observability.prometheus?.url });
}

void main();
