/**
 * OpenTelemetry traces of routed requests, exported over OTLP/HTTP (protobuf or JSON) in batches. This
 * module is imported dynamically, and only when an OTLP endpoint is configured (config.ts): a router
 * without one never loads the SDK and pays nothing per request.
 *
 * Per request, built from its completion record when it ends (no span objects live during the request):
 *   <route span>  chat_completion | generate | completion | passthrough   (SERVER, arrival -> last byte)
 *     routing_decision                                                     (INTERNAL, arrival -> decision)
 *       routing.input_tokens, routing.predicted_kv_mb (when the decision carries it), routing.decision,
 *       routing.trigger_reason, routing.worker, routing.node_id, routing.policy, routing.score.<name>
 * A client's W3C `traceparent` makes the route span its child. Times are the front end's monotonic
 * stamps placed on the arrival's wall-clock time, so durations are exact.
 */
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type HrTime } from '@opentelemetry/api';
import { BasicTracerProvider, BatchSpanProcessor, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { OTLPTraceExporter as OtlpHttpJsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as OtlpHttpProtoExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import type { CompletionRecord, CompletionSink } from '../proxy/completion.js';
import type { RequestFeatures, RouteKind } from '../policies/types.js';
import type { Logger } from '../util/log.js';
import type { RequestEventView, RequestEvents } from '../metrics/events.js';
import { displayUrl, type OtlpConfig } from './config.js';
import { ROUTE_LABELS, routeLabelIndex } from '../metrics/route-labels.js';

/** What tracing needs of size-aware admission (src/policies/admission.ts): the KV estimate of a request. */
export interface KvEstimator {
  classify(req: RequestFeatures): { readonly predictedKvMb: number };
}

export interface OtelTracing {
  readonly sink: CompletionSink;
  readonly events: RequestEvents;
  /** Size-aware admission, once the router has it: routing.predicted_kv_mb comes from its estimate. */
  useAdmission(a: KvEstimator | undefined): void;
  describe(): Record<string, unknown>;
  /** Export what is queued and stop (bounded). */
  close(timeoutMs?: number): Promise<void>;
}

/** Per-request facts only known at decision time, kept until the completion record arrives. */
interface Pending {
  readonly traceparent: string;
  readonly inputTokens: number;
  /** Admission's action (worker group) and reason, when admission classed the request. */
  readonly group: string | undefined;
  readonly admission: string | undefined;
  readonly kvMb: number | undefined;
}
const MAX_PENDING = 100_000;

const SPAN_NAMES: Record<RouteKind, string> = { generate: 'generate', chat: 'chat_completion', completions: 'completion', other: 'passthrough' };

export function startOtelTracing(cfg: OtlpConfig, log: Logger, version: string): OtelTracing {
  const inner: SpanExporter = cfg.protocol === 'http/json' ? new OtlpHttpJsonExporter({ url: cfg.tracesUrl }) : new OtlpHttpProtoExporter({ url: cfg.tracesUrl });
  const counts = { exportedSpans: 0, failedSpans: 0, failedExports: 0, lastError: null as string | null };
  // Count what the collector accepted or refused (the SDK itself drops failures silently).
  const exporter: SpanExporter = {
    export(spans: ReadableSpan[], done) {
      inner.export(spans, (result) => {
        if (result.code === 0) counts.exportedSpans += spans.length;
        else {
          counts.failedSpans += spans.length;
          counts.failedExports++;
          counts.lastError = result.error?.message ?? 'export failed';
          if (counts.failedExports === 1 || counts.failedExports % 100 === 0) {
            log.warn({ event: 'otel.export_failed', endpoint: displayUrl(cfg.tracesUrl), failures: counts.failedExports, err: counts.lastError }, 'OTLP span export failed');
          }
        }
        done(result);
      });
    },
    shutdown: () => inner.shutdown(),
    forceFlush: () => inner.forceFlush?.() ?? Promise.resolve(),
  };
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': cfg.serviceName, 'service.version': version }),
    spanProcessors: [new BatchSpanProcessor(exporter, cfg.flushMs === undefined ? { maxQueueSize: 8192, maxExportBatchSize: 512 } : { maxQueueSize: 8192, maxExportBatchSize: 512, scheduledDelayMillis: cfg.flushMs })],
  });
  const tracer = provider.getTracer('switchyard', version);
  const pending = new Map<string, Pending>();
  let recorded = 0;
  let admission: KvEstimator | undefined;

  const events: RequestEvents = {
    accepted() {},
    rejected() {},
    decided(req: RequestEventView) {
      if (pending.size >= MAX_PENDING) pending.clear(); // records that never came (cannot happen today): do not grow
      const f = req.features;
      const kvMb = admission === undefined ? undefined : admission.classify(f).predictedKvMb;
      pending.set(req.requestId, { traceparent: req.traceparent, inputTokens: f.inputTokens, group: f.group, admission: f.admission, kvMb });
    },
  };

  const sink: CompletionSink = {
    record(rec: CompletionRecord) {
      const info = pending.get(rec.requestId);
      if (info !== undefined) pending.delete(rec.requestId);
      const parent = info === undefined || info.traceparent === '' ? ROOT_CONTEXT : remoteParent(info.traceparent);
      const at = (mono: number): HrTime => hrTime(rec.timestamp + (mono - rec.arrivedAt));
      const start = hrTime(rec.timestamp);
      const attrs: Attributes = {
        'http.request.method': 'POST',
        // The path the request came in on (pass-through routes too: /v1/embeddings, /v1/rerank, ...), from
        // the bounded set the request metrics use, so the attribute never carries an arbitrary path.
        'http.route': ROUTE_LABELS[routeLabelIndex(rec.route, rec.path)] as string,
        'http.response.status_code': rec.httpStatus,
        'switchyard.request_id': rec.requestId,
        'switchyard.status': rec.status,
        'switchyard.stream': rec.stream,
        'switchyard.attempts': rec.attempts,
        'gen_ai.usage.input_tokens': rec.inputTokens,
        'gen_ai.usage.output_tokens': rec.outputTokens,
        'switchyard.cached_tokens': rec.cachedTokens,
      };
      if (rec.workerUrl !== '') {
        attrs['switchyard.worker'] = rec.workerUrl;
        attrs['switchyard.node_id'] = rec.nodeId;
      }
      if (rec.sentAt > 0) attrs['switchyard.e2e_ms'] = round3(rec.finishedAt - rec.sentAt);
      if (rec.stream && rec.firstTokenAt >= rec.sentAt && rec.sentAt > 0) attrs['switchyard.ttft_ms'] = round3(rec.firstTokenAt - rec.sentAt);
      if (rec.queueTime !== undefined) attrs['switchyard.server_queue_ms'] = round3(rec.queueTime * 1000);
      if (rec.errorCode !== undefined) attrs['error.type'] = rec.errorCode;
      else if (rec.status === 'aborted') attrs['error.type'] = 'client_closed';
      const span = tracer.startSpan(SPAN_NAMES[rec.route], { kind: SpanKind.SERVER, startTime: start, attributes: attrs }, parent);

      const routed = rec.slot >= 0 && rec.workerUrl !== '';
      // With size-aware admission the decision is its action (single / multi) and the trigger its
      // reason (seed 002); otherwise the policy's decision kind and reason.
      const admitted = info?.group !== undefined && info.admission !== undefined;
      const decision: Attributes = {
        'routing.input_tokens': info?.inputTokens ?? rec.inputTokens,
        'routing.decision': admitted ? (info.group as string) : routed ? decisionKind(rec.reason) : 'no_worker',
        'routing.trigger_reason': admitted ? (info.admission as string).replace(/^admission: /, '') : routed ? rec.reason : (rec.errorCode ?? rec.status),
        'routing.policy': rec.policy,
      };
      if (admitted) decision['routing.policy_reason'] = routed ? rec.reason : (rec.errorCode ?? rec.status);
      if (info?.kvMb !== undefined) decision['routing.predicted_kv_mb'] = Math.round(info.kvMb * 10) / 10;
      if (routed) {
        decision['routing.worker'] = rec.workerUrl;
        decision['routing.node_id'] = rec.nodeId;
      }
      const scores = rec.scores;
      if (scores !== undefined) {
        for (const k in scores) {
          const v = scores[k];
          if (typeof v !== 'number') continue;
          if (k === 'predicted_kv_mb') decision['routing.predicted_kv_mb'] = v;
          else decision[`routing.score.${k}`] = v;
        }
      }
      const child = tracer.startSpan('routing_decision', { kind: SpanKind.INTERNAL, startTime: start, attributes: decision }, trace.setSpan(ROOT_CONTEXT, span));
      child.end(at(rec.decidedAt > 0 ? rec.decidedAt : rec.finishedAt));

      if (rec.status !== 'completed') span.setStatus({ code: SpanStatusCode.ERROR, message: rec.errorMessage ?? rec.errorCode ?? rec.status });
      span.end(at(rec.finishedAt));
      recorded++;
    },
  };

  log.info({ event: 'otel.ready', endpoint: displayUrl(cfg.tracesUrl), protocol: cfg.protocol, service: cfg.serviceName }, `OpenTelemetry traces to ${displayUrl(cfg.tracesUrl)} (${cfg.protocol})`);

  let closing: Promise<void> | undefined;
  return {
    sink,
    events,
    useAdmission(a) {
      admission = a;
    },
    describe() {
      return { endpoint: displayUrl(cfg.tracesUrl), protocol: cfg.protocol, service_name: cfg.serviceName, requests_traced: recorded, pending: pending.size, exported_spans: counts.exportedSpans, failed_spans: counts.failedSpans, failed_exports: counts.failedExports, last_error: counts.lastError };
    },
    close(timeoutMs = 5000) {
      closing ??= new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        provider.shutdown().then(
          () => {
            clearTimeout(timer);
            resolve();
          },
          (err: unknown) => {
            clearTimeout(timer);
            log.warn({ err }, 'OpenTelemetry shutdown failed');
            resolve();
          },
        );
      });
      return closing;
    },
  };
}

function hrTime(epochMs: number): HrTime {
  const secs = Math.floor(epochMs / 1000);
  return [secs, Math.round((epochMs - secs * 1000) * 1e6)];
}

function round3(v: number): number {
  return Math.round(v * 1000) / 1000;
}

/** The reason's leading word: "cache_hit: match 0.82 > 0.30" -> "cache_hit"; "round_robin: ..." -> "round_robin". */
export function decisionKind(reason: string): string {
  const m = /^[A-Za-z0-9_.-]+/.exec(reason);
  return m === null ? 'unspecified' : m[0];
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** A remote parent from a W3C traceparent header; an invalid one is ignored (the span becomes a root). */
export function remoteParent(header: string): Context {
  const m = TRACEPARENT.exec(header.trim().toLowerCase());
  if (m === null || m[1] === 'ff' || /^0+$/.test(m[2] as string) || /^0+$/.test(m[3] as string)) return ROOT_CONTEXT;
  return trace.setSpanContext(ROOT_CONTEXT, { traceId: m[2] as string, spanId: m[3] as string, traceFlags: parseInt(m[4] as string, 16) & 1, isRemote: true });
}
