/**
 * Narrow per-request hooks of the front end for observers (metrics now, OpenTelemetry when configured):
 * RouterContext.events. Called synchronously on the hot path, so implementations only count or append.
 */
import type { ErrorCode } from '../errors.js';
import type { Decision, RequestFeatures, RouteKind } from '../policies/types.js';
import type { WorkerEntry } from '../workers/registry.js';

/** What a hook may read of a request in flight (data-route.ts's own request state satisfies it). */
export interface RequestEventView {
  readonly requestId: string;
  readonly route: RouteKind;
  readonly features: RequestFeatures;
  /** The client's W3C traceparent header ('' when absent). */
  readonly traceparent: string;
  /** Wall-clock ms of arrival. */
  readonly timestamp: number;
  /** Monotonic ms (performance.now) stamps. */
  readonly arrivedAt: number;
  readonly decidedAt: number;
  readonly attempts: number;
  readonly decision: Decision | undefined;
  readonly worker: WorkerEntry | undefined;
}

export interface RequestEvents {
  /** A data request was accepted (counted before its body is read); `path` is the route's path (pass-through routes are labelled by it). */
  accepted(route: RouteKind, path?: string): void;
  /** An accepted request was refused before reaching a worker (bad body, too large): no completion record follows. */
  rejected(route: RouteKind, code: ErrorCode, path?: string): void;
  /** A worker was chosen (each attempt, retries included); `req.worker` and `req.decision` are set. */
  decided(req: RequestEventView): void;
}

/** Several observers behind one hook (built once at start-up, never per request). */
export function combineEvents(list: readonly (RequestEvents | undefined)[]): RequestEvents | undefined {
  const present = list.filter((e): e is RequestEvents => e !== undefined);
  if (present.length <= 1) return present[0];
  return {
    accepted(route, path) {
      for (const e of present) e.accepted(route, path);
    },
    rejected(route, code, path) {
      for (const e of present) e.rejected(route, code, path);
    },
    decided(req) {
      for (const e of present) e.decided(req);
    },
  };
}
