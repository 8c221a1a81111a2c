/**
 * The upstream client the relay uses, chosen by `--upstream-client`: `fast` (FastPool, ours: plain
 * http only) or `undici` (an undici Pool). Both answer the same dispatch/handler interface (types.ts).
 */
import { Pool } from 'undici';
import { FastPool, type FastPoolOptions } from './fast-pool.js';
import type { UpstreamClientKind, UpstreamDispatcher } from './types.js';

export { FastPool, type FastPoolOptions } from './fast-pool.js';
export type { UpstreamClientKind, UpstreamDispatcher, UpstreamHandler, UpstreamRequestOptions } from './types.js';
export { UPSTREAM_CLIENT_KINDS } from './types.js';

/** Options both clients understand (undici's Pool names). */
export interface UpstreamPoolOptions extends FastPoolOptions {
  connections?: number;
}

/**
 * A pool for one origin. `fast` falls back to undici for https origins (FastPool speaks plain http);
 * `existing` reuses an undici Pool the caller already has for that origin.
 */
export function createUpstream(kind: UpstreamClientKind, origin: string, options: UpstreamPoolOptions, existing?: Pool): UpstreamDispatcher {
  if (kind === 'fast' && origin.startsWith('http:')) return new FastPool(origin, options);
  return (existing ?? new Pool(origin, { ...options, pipelining: 1 })) as unknown as UpstreamDispatcher;
}
