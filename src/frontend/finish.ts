/**
 * The end of a data request: its completion record (token accounting read from the answer's last
 * meta_info / usage, stream timings from the SSE scanner), handed to every sink (tracker, stats,
 * OpenTelemetry) with the front end's counters and admission slot settled, and the outcome fed back to
 * the policy.
 */
import { performance } from 'node:perf_hooks';
import type { SwitchyardError } from '../errors.js';
import type { RelayOutcome } from '../proxy/relay.js';
import { readTokenCounts } from '../proxy/sse-scanner.js';
import { extractAccounting } from '../proxy/json-tail.js';
import type { CompletionRecord } from '../proxy/completion.js';
import type { WorkerEntry } from '../workers/registry.js';
import type { DataPlaneContext } from './context.js';
import type { InFlight } from './in-flight.js';

/** The request was relayed (completed, failed or aborted on `worker`) and will not be retried. */
export function finishRelayed(ctx: DataPlaneContext, st: InFlight, worker: WorkerEntry, outcome: RelayOutcome): void {
  let input = st.features.inputTokens;
  let output = 0;
  let cached = 0;
  let queueTime: number | undefined;
  const scanner = outcome.scanner;
  const counts = readTokenCounts(scanner !== undefined ? scanner.lastEvent() : outcome.body !== undefined && outcome.status < 400 ? extractAccounting(outcome.body) : undefined);
  if (counts !== undefined) {
    if (counts.promptTokens > 0) input = counts.promptTokens;
    output = counts.completionTokens;
    cached = counts.cachedTokens;
    queueTime = counts.queueTime;
  } else if (scanner !== undefined) {
    output = scanner.contentEvents;
  }
  let firstTokenAt = outcome.firstByteAt;
  if (scanner !== undefined) firstTokenAt = scanner.firstContentAt;
  const status = outcome.kind === 'completed' ? (outcome.status < 400 ? 'completed' : 'failed') : outcome.kind;
  const rec: CompletionRecord = {
    requestId: st.requestId,
    route: st.route,
    path: st.path,
    stream: st.features.stream,
    workerUrl: worker.url,
    slot: worker.slot,
    nodeId: worker.nodeId,
    policy: ctx.policy.name,
    reason: st.decision?.reason ?? '',
    scores: st.decision?.scores,
    status,
    httpStatus: outcome.status,
    errorCode: outcome.error?.code ?? (status === 'failed' ? `http_${outcome.status}` : undefined),
    errorMessage: outcome.error?.message,
    timestamp: st.timestamp,
    arrivedAt: st.arrivedAt,
    decidedAt: st.decidedAt,
    sentAt: st.sentAt,
    firstTokenAt,
    finishedAt: outcome.finishedAt,
    inputTokens: input,
    outputTokens: output,
    cachedTokens: cached,
    queueTime,
    itl: scanner?.gaps,
    attempts: st.attempts,
    traceHold: st.traceHold,
  };
  finishRecord(ctx, rec);
  ctx.policy.observe({
    requestId: st.requestId,
    url: worker.url,
    slot: worker.slot,
    success: status === 'completed',
    sentAt: st.sentAt,
    firstTokenAt,
    finishedAt: outcome.finishedAt,
    inputTokens: input,
    outputTokens: output,
    cachedTokens: cached,
    queueTime,
  });
}

/** The request ends without a worker's answer (none available, or the client left before one was chosen). */
export function finishWithoutWorker(ctx: DataPlaneContext, st: InFlight, status: 'failed' | 'aborted', httpStatus: number, err: SwitchyardError | undefined): void {
  const t = performance.now();
  finishRecord(ctx, {
    requestId: st.requestId,
    route: st.route,
    path: st.path,
    stream: st.features.stream,
    workerUrl: '',
    slot: -1,
    nodeId: -1,
    policy: ctx.policy.name,
    reason: '',
    scores: undefined,
    status,
    httpStatus,
    errorCode: err?.code,
    errorMessage: err?.message,
    timestamp: st.timestamp,
    arrivedAt: st.arrivedAt,
    decidedAt: st.decidedAt,
    sentAt: 0,
    firstTokenAt: 0,
    finishedAt: t,
    inputTokens: st.features.inputTokens,
    outputTokens: 0,
    cachedTokens: 0,
    queueTime: undefined,
    itl: undefined,
    attempts: st.attempts,
    traceHold: st.traceHold,
  });
}

/** Settle the front end's counters and admission slot, and hand the record to every sink. */
function finishRecord(ctx: DataPlaneContext, rec: CompletionRecord): void {
  ctx.limits?.release();
  const c = ctx.counters;
  c.active--;
  if (rec.status === 'completed') c.completed++;
  else if (rec.status === 'failed') c.failed++;
  else c.aborted++;
  for (const sink of ctx.sinks) {
    try {
      sink.record(rec);
    } catch (err) {
      ctx.log.error({ err }, 'completion sink failed');
    }
  }
}
