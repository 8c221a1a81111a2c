/**
 * What startRouter calls to wire request tracking and node ids from the serve options (kept here so the
 * router's own file only gains a few lines).
 */
import type { Logger } from '../util/log.js';
import type { RouterOptions } from '../config/router-options.js';
import { RequestTracker, checkTraceLogDir } from './tracker.js';
import { assignNodeIds, resolveNodeMapOption } from './node-ids.js';
import { resolvesWithin } from '../util/wait.js';

export { registerTraceRoutes } from './routes.js';
export { RequestTracker } from './tracker.js';

type TrackingOptions = Pick<
  RouterOptions,
  'enableRequestTracking' | 'maxTraceEntries' | 'traceTtlSeconds' | 'traceLogDir' | 'traceLogMaxBytes' | 'traceLogMaxFiles' | 'traceFlushMs' | 'policy' | 'redisUrl'
>;

/**
 * With --redis-url, finished traces the tracker actor keeps for the shared-traces part between two drains
 * (every 50 ms; more only if the main thread stalls): beyond this the oldest are dropped, and counted.
 */
export const SHARE_QUEUE_MAX = 50_000;

/** How long start-up waits for the tracker thread before going on without it (its events queue meanwhile). */
const READY_TIMEOUT_MS = 15_000;

/**
 * The tracker for these options, or undefined when tracking is off (then nothing is created at all).
 * Resolves once the tracker thread is up (and has reloaded the trace log): when the router says it is
 * ready, traces are answered and flushed on schedule from the first request on.
 */
export async function createTracker(opts: TrackingOptions, logger?: Logger): Promise<RequestTracker | undefined> {
  if (!opts.enableRequestTracking) return undefined;
  if (opts.traceLogDir !== undefined) checkTraceLogDir(opts.traceLogDir);
  const tracker = new RequestTracker({
    maxEntries: opts.maxTraceEntries,
    ttlSeconds: opts.traceTtlSeconds,
    logDir: opts.traceLogDir,
    logMaxBytes: opts.traceLogMaxBytes,
    logMaxFiles: opts.traceLogMaxFiles,
    flushMs: opts.traceFlushMs,
    shareQueueMax: opts.redisUrl === undefined ? 0 : SHARE_QUEUE_MAX,
    policy: opts.policy,
    logger,
  });
  if (!(await resolvesWithin(tracker.ready(), READY_TIMEOUT_MS))) logger?.warn({ event: 'tracker.slow_start', waited_ms: READY_TIMEOUT_MS }, 'the tracker thread is not up yet; starting anyway (its events are queued)');
  return tracker;
}

/** Node ids for the start-up workers: --worker-node-ids, else --worker-node-map, else port order. */
export function resolveWorkerNodeIds(opts: Pick<RouterOptions, 'workerNodeIds' | 'workerNodeMap' | 'config'>, urls: readonly string[]): number[] {
  return assignNodeIds(urls, opts.workerNodeIds, resolveNodeMapOption(opts.workerNodeMap, opts.config));
}
