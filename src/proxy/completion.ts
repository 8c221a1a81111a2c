/**
 * One completion record per request: what the tracker (traces), the stats actor (percentiles) and the
 * policy (feedback) learn when a request ends. Built once by the front end, delivered to every sink.
 */
import type { RouteKind } from '../policies/types.js';

export type RequestStatus = 'completed' | 'failed' | 'aborted';

export interface CompletionRecord {
  requestId: string;
  route: RouteKind;
  /** The request's path (pass-through routes are labelled by it in metrics); absent: labelled by `route`. */
  path?: string;
  stream: boolean;
  workerUrl: string;
  slot: number;
  nodeId: number;
  policy: string;
  reason: string;
  scores: Readonly<Record<string, number>> | undefined;
  status: RequestStatus;
  httpStatus: number;
  errorCode: string | undefined;
  errorMessage: string | undefined;
  /** Wall-clock ms of arrival (for traces). */
  timestamp: number;
  /** Monotonic ms (performance.now) stamps. */
  arrivedAt: number;
  decidedAt: number;
  sentAt: number;
  firstTokenAt: number;
  finishedAt: number;
  inputTokens: number;
  outputTokens: number;
  cachedTokens: number;
  /** Server-reported queue time (s) when the worker said. */
  queueTime: number | undefined;
  /** Gaps between content chunks (ms), streams only. */
  itl: readonly number[] | undefined;
  attempts: number;
  /** The tracker's hold mark of the request's decision, copied from its state (RequestProgressView.traceHold). */
  traceHold?: number;
}

export interface CompletionSink {
  record(rec: CompletionRecord): void;
}
