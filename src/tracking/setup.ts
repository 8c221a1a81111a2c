/**
 * What startRouter calls to wire request tracking and node ids from the serve options (kept here so the
 * router's own file only gains a few lines).
 */
import type { Logger } from '../util/log.js';
import type { RouterOptions } from '../config/router-options.js';
import { RequestTracker, checkTraceLogDir } from './tracker.js';
import { assignNodeIds, resolveNodeMapOption } from './node-ids.js';

export { registerTraceRoutes } from './routes.js';
export { RequestTracker } from './tracker.js';

type TrackingOptions = Pick<
  RouterOptions,
  'enableRequestTracking' | 'maxTraceEntries' | 'traceTtlSeconds' | 'traceLogDir' | 'traceLogMaxBytes' | 'traceLogMaxFiles' | 'traceFlushMs' | 'policy'
>;

/** The tracker for these options, or undefined when tracking is off (then nothing is created at all). */
export function createTracker(opts: TrackingOptions, logger?: Logger): RequestTracker | undefined {
  if (!opts.enableRequestTracking) return undefined;
  if (opts.traceLogDir !== undefined) checkTraceLogDir(opts.traceLogDir);
  return new RequestTracker({
    maxEntries: opts.maxTraceEntries,
    ttlSeconds: opts.traceTtlSeconds,
    logDir: opts.traceLogDir,
    logMaxBytes: opts.traceLogMaxBytes,
    logMaxFiles: opts.traceLogMaxFiles,
    flushMs: opts.traceFlushMs,
    policy: opts.policy,
    logger,
  });
}

/** Node ids for the start-up workers: --worker-node-ids, else --worker-node-map, else port order. */
export function resolveWorkerNodeIds(opts: Pick<RouterOptions, 'workerNodeIds' | 'workerNodeMap' | 'config'>, urls: readonly string[]): number[] {
  return assignNodeIds(urls, opts.workerNodeIds, resolveNodeMapOption(opts.workerNodeMap, opts.config));
}
