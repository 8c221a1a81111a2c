/**
 * The state of one data request across its attempts (data-route.ts), from its body's arrival to its
 * completion record (finish.ts).
 */
import type { Exchange } from './http.js';
import type { Decision, RequestFeatures, RouteKind } from '../policies/types.js';
import type { WorkerEntry } from '../workers/registry.js';
import type { Permit } from '../workers/breaker.js';

export interface InFlight {
  ex: Exchange;
  route: RouteKind;
  path: string;
  requestId: string;
  features: RequestFeatures;
  body: Buffer;
  arrivedAt: number;
  timestamp: number;
  decidedAt: number;
  sentAt: number;
  attempts: number;
  decision: Decision | undefined;
  worker: WorkerEntry | undefined;
  /** Workers that failed this request (avoided by its retries while another worker is available). */
  failedSlots: number[];
  /** What the circuit breaker granted the current attempt. */
  permit: Permit;
  /** Pending backoff before the next attempt (cleared if the client leaves). */
  backoff: NodeJS.Timeout | undefined;
  traceparent: string;
  authorization: string;
  /** The tracker's mark while it holds this request's decision (0: none; see RequestProgressView). */
  traceHold: number;
}
