/**
 * What startRouter calls when `--redis-url` is given (this module, ioredis and everything under
 * src/cluster are imported only then: a single-process router never loads them).
 *
 * `createCluster` builds the RedisLink without connecting; the router then attaches the shared parts
 * (traces, admission, worker state, cache affinity), each registering its subscriptions and resync hooks,
 * and finally calls `start()`, which connects (waiting a short while) and runs the first resync.
 */
import type { Logger } from '../util/log.js';
import type { RouterOptions } from '../config/router-options.js';
import { RedisLink } from './redis-link.js';

export type ClusterOptions = Pick<RouterOptions, 'redisUrl' | 'redisKeyPrefix' | 'replicaId'>;

export interface Cluster {
  readonly link: RedisLink;
  /** Prometheus families of the shared parts (appended to /metrics). */
  metricsText(): string;
  /** Register a part's metrics text and its close hook. */
  attach(part: ClusterPart): void;
  /** Connect (waits at most `waitMs` for Redis) and run the first resync. Never throws. */
  start(waitMs?: number): Promise<void>;
  close(): Promise<void>;
}

export interface ClusterPart {
  readonly name: string;
  metricsText?(): string;
  close?(): Promise<void> | void;
}

export function createCluster(opts: ClusterOptions & { redisUrl: string }, log: Logger): Cluster {
  const link = new RedisLink({
    url: opts.redisUrl,
    keyPrefix: opts.redisKeyPrefix,
    ...(opts.replicaId !== undefined ? { replicaId: opts.replicaId } : {}),
    logger: log,
  });
  const parts: ClusterPart[] = [];
  let closed = false;
  return {
    link,
    metricsText() {
      let text = link.metricsText();
      for (const p of parts) if (p.metricsText !== undefined) text += p.metricsText();
      return text;
    },
    attach(part) {
      parts.push(part);
    },
    start(waitMs) {
      return link.start(waitMs);
    },
    async close() {
      if (closed) return;
      closed = true;
      // Parts first (they may release shared state, e.g. admission leases), then the connections.
      for (const p of parts.reverse()) {
        try {
          await p.close?.();
        } catch (err) {
          log.debug({ event: 'cluster.close_failed', part: p.name, err: (err as Error).message }, 'a cluster part failed to close');
        }
      }
      await link.close();
    },
  };
}
