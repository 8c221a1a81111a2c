/**
 * Trace events, front end -> tracker actor. The front end appends each event's fields to one flat array per
 * event-loop turn (no object per event, no per-event crossing); the actor walks the array and applies the
 * events in order. Monotonic stamps are turned into durations on the front end, because a worker thread's
 * performance.now() has its own origin.
 *
 * Layouts (first slot: the kind):
 *   DECIDED     id, timestamp_ms, queue_ms, node_id, worker_url, policy, reason, scores, route, stream,
 *               input_tokens, attempts
 *   FIRST_BYTE  id, ttft_ms
 *   FINISHED    id, status, timestamp_ms, queue_ms, ttft_ms, e2e_ms, node_id, worker_url, policy, reason,
 *               scores, route, stream, http_status, error_code, error_message, input_tokens, output_tokens,
 *               cached_tokens, server_queue_ms, attempts
 *   OUTCOME     id, status, ttft_ms, e2e_ms, node_id, worker_url, route, stream, http_status, error_code,
 *               error_message, input_tokens, output_tokens, cached_tokens, server_queue_ms, attempts
 *
 * A request that was decided ends with OUTCOME: what its DECIDED event already carried (arrival time,
 * queueing, policy, reason, scores) is not sent twice, which keeps the per-turn crossing small. FINISHED
 * (everything) is for requests that never got a worker.
 */
import type { CompletionRecord } from '../proxy/completion.js';
import type { RequestProgressView } from '../frontend/context.js';
import type { TraceStatus } from './types.js';

export const EV_DECIDED = 1;
export const EV_FIRST_BYTE = 2;
export const EV_FINISHED = 3;
export const EV_OUTCOME = 4;

const DECIDED_SLOTS = 13;
const FIRST_BYTE_SLOTS = 3;
const FINISHED_SLOTS = 22;
const OUTCOME_SLOTS = 17;

/** A flat batch of events as it crosses to the actor. */
export type EventBatch = unknown[];

/** Milliseconds rounded to microseconds (keeps JSON short; finer is noise). */
function ms(x: number): number {
  return Math.round(x * 1000) / 1000;
}

export function pushDecided(buf: EventBatch, v: RequestProgressView, policy: string): void {
  const w = v.worker;
  const d = v.decision;
  buf.push(
    EV_DECIDED,
    v.requestId,
    ms(v.timestamp),
    ms(v.decidedAt - v.arrivedAt),
    w === undefined ? null : w.nodeId,
    w === undefined ? null : w.url,
    policy,
    d === undefined ? null : d.reason,
    d === undefined || d.scores === undefined ? null : d.scores,
    v.route,
    v.features.stream,
    v.features.inputTokens,
    v.attempts,
  );
}

export function pushFirstByte(buf: EventBatch, v: RequestProgressView, at: number): void {
  buf.push(EV_FIRST_BYTE, v.requestId, ms(at - v.arrivedAt));
}

export function pushFinished(buf: EventBatch, r: CompletionRecord): void {
  const routed = r.slot >= 0 && r.workerUrl !== '';
  if (routed && r.decidedAt > 0) {
    buf.push(
      EV_OUTCOME,
      r.requestId,
      r.status,
      r.firstTokenAt > 0 ? ms(r.firstTokenAt - r.arrivedAt) : null,
      ms(r.finishedAt - r.arrivedAt),
      r.nodeId,
      r.workerUrl,
      r.route,
      r.stream,
      r.httpStatus > 0 ? r.httpStatus : null,
      r.errorCode ?? null,
      r.errorMessage ?? null,
      r.inputTokens,
      r.outputTokens,
      r.cachedTokens,
      r.queueTime === undefined ? null : ms(r.queueTime * 1000),
      r.attempts,
    );
    return;
  }
  buf.push(
    EV_FINISHED,
    r.requestId,
    r.status,
    ms(r.timestamp),
    r.decidedAt > 0 ? ms(r.decidedAt - r.arrivedAt) : null,
    r.firstTokenAt > 0 ? ms(r.firstTokenAt - r.arrivedAt) : null,
    ms(r.finishedAt - r.arrivedAt),
    routed ? r.nodeId : null,
    routed ? r.workerUrl : null,
    r.policy,
    r.reason === '' ? null : r.reason,
    r.scores === undefined ? null : r.scores,
    r.route,
    r.stream,
    r.httpStatus > 0 ? r.httpStatus : null,
    r.errorCode ?? null,
    r.errorMessage ?? null,
    r.inputTokens,
    r.outputTokens,
    r.cachedTokens,
    r.queueTime === undefined ? null : ms(r.queueTime * 1000),
    r.attempts,
  );
}

/** What applying a batch needs: one method per event kind, fields already typed. */
export interface EventTarget {
  decided(e: DecidedEvent): void;
  firstByte(requestId: string, ttftMs: number): void;
  finished(e: FinishedEvent): void;
}

export interface DecidedEvent {
  requestId: string;
  timestampMs: number;
  queueMs: number;
  nodeId: number | null;
  workerUrl: string | null;
  policy: string;
  reason: string | null;
  scores: Record<string, number> | null;
  route: string;
  stream: boolean;
  inputTokens: number;
  attempts: number;
}

export interface FinishedEvent {
  /** OUTCOME form: timestampMs, queueMs, policy, reason and scores were sent with the DECIDED event (here: NaN, null, '', null, null). */
  outcomeOnly: boolean;
  requestId: string;
  status: TraceStatus;
  timestampMs: number;
  queueMs: number | null;
  ttftMs: number | null;
  e2eMs: number;
  nodeId: number | null;
  workerUrl: string | null;
  policy: string;
  reason: string | null;
  scores: Record<string, number> | null;
  route: string;
  stream: boolean;
  httpStatus: number | null;
  errorCode: string | null;
  errorMessage: string | null;
  inputTokens: number;
  outputTokens: number;
  cachedTokens: number;
  serverQueueMs: number | null;
  attempts: number;
}

/**
 * Walk a batch and hand each event to `target`, in order. One reusable event object per kind (the target
 * copies what it keeps). A malformed batch (unknown kind, short tail) stops the walk and throws: it can
 * only come from a version mismatch, never from client input.
 */
export function applyEvents(buf: readonly unknown[], target: EventTarget): number {
  const d = {} as DecidedEvent;
  const f = {} as FinishedEvent;
  let i = 0;
  let n = 0;
  const len = buf.length;
  while (i < len) {
    const kind = buf[i];
    if (kind === EV_DECIDED) {
      if (i + DECIDED_SLOTS > len) throw new Error('trace event batch: truncated decided event');
      d.requestId = buf[i + 1] as string;
      d.timestampMs = buf[i + 2] as number;
      d.queueMs = buf[i + 3] as number;
      d.nodeId = buf[i + 4] as number | null;
      d.workerUrl = buf[i + 5] as string | null;
      d.policy = buf[i + 6] as string;
      d.reason = buf[i + 7] as string | null;
      d.scores = buf[i + 8] as Record<string, number> | null;
      d.route = buf[i + 9] as string;
      d.stream = buf[i + 10] as boolean;
      d.inputTokens = buf[i + 11] as number;
      d.attempts = buf[i + 12] as number;
      target.decided(d);
      i += DECIDED_SLOTS;
    } else if (kind === EV_FIRST_BYTE) {
      if (i + FIRST_BYTE_SLOTS > len) throw new Error('trace event batch: truncated first-byte event');
      target.firstByte(buf[i + 1] as string, buf[i + 2] as number);
      i += FIRST_BYTE_SLOTS;
    } else if (kind === EV_FINISHED) {
      if (i + FINISHED_SLOTS > len) throw new Error('trace event batch: truncated finished event');
      f.requestId = buf[i + 1] as string;
      f.status = buf[i + 2] as TraceStatus;
      f.timestampMs = buf[i + 3] as number;
      f.queueMs = buf[i + 4] as number | null;
      f.ttftMs = buf[i + 5] as number | null;
      f.e2eMs = buf[i + 6] as number;
      f.nodeId = buf[i + 7] as number | null;
      f.workerUrl = buf[i + 8] as string | null;
      f.policy = buf[i + 9] as string;
      f.reason = buf[i + 10] as string | null;
      f.scores = buf[i + 11] as Record<string, number> | null;
      f.route = buf[i + 12] as string;
      f.stream = buf[i + 13] as boolean;
      f.httpStatus = buf[i + 14] as number | null;
      f.errorCode = buf[i + 15] as string | null;
      f.errorMessage = buf[i + 16] as string | null;
      f.inputTokens = buf[i + 17] as number;
      f.outputTokens = buf[i + 18] as number;
      f.cachedTokens = buf[i + 19] as number;
      f.serverQueueMs = buf[i + 20] as number | null;
      f.attempts = buf[i + 21] as number;
      f.outcomeOnly = false;
      target.finished(f);
      i += FINISHED_SLOTS;
    } else if (kind === EV_OUTCOME) {
      if (i + OUTCOME_SLOTS > len) throw new Error('trace event batch: truncated outcome event');
      f.outcomeOnly = true;
      f.requestId = buf[i + 1] as string;
      f.status = buf[i + 2] as TraceStatus;
      f.timestampMs = Number.NaN;
      f.queueMs = null;
      f.ttftMs = buf[i + 3] as number | null;
      f.e2eMs = buf[i + 4] as number;
      f.nodeId = buf[i + 5] as number | null;
      f.workerUrl = buf[i + 6] as string | null;
      f.policy = '';
      f.reason = null;
      f.scores = null;
      f.route = buf[i + 7] as string;
      f.stream = buf[i + 8] as boolean;
      f.httpStatus = buf[i + 9] as number | null;
      f.errorCode = buf[i + 10] as string | null;
      f.errorMessage = buf[i + 11] as string | null;
      f.inputTokens = buf[i + 12] as number;
      f.outputTokens = buf[i + 13] as number;
      f.cachedTokens = buf[i + 14] as number;
      f.serverQueueMs = buf[i + 15] as number | null;
      f.attempts = buf[i + 16] as number;
      target.finished(f);
      i += OUTCOME_SLOTS;
    } else {
      throw new Error(`trace event batch: unknown event kind ${String(kind)} at ${i}`);
    }
    n++;
  }
  return n;
}
