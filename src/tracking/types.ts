/**
 * The request trace: one per request, kept by the tracker actor (src/tracking/tracker-actor.ts), served by
 * /v1/traces and written to the trace log. Field names are snake_case because they are the API's names
 * (seed 001: request_id, node_id, worker_url, routing_policy, status, timestamp) and the log's.
 */

export const TRACE_STATUSES = ['pending', 'streaming', 'completed', 'failed', 'aborted'] as const;
export type TraceStatus = (typeof TRACE_STATUSES)[number];

export function isTraceStatus(s: string): s is TraceStatus {
  return (TRACE_STATUSES as readonly string[]).includes(s);
}

/** Final statuses: the request ended; only these are written to the trace log. */
export function isFinalStatus(s: TraceStatus): boolean {
  return s === 'completed' || s === 'failed' || s === 'aborted';
}

/**
 * One request's trace. The store keeps exactly this object; the log writes it (as a msgpack record); the API
 * answers it with `timestamp` (ISO 8601) added beside `timestamp_ms`. Durations are milliseconds measured from
 * the request's arrival at the router; null while unknown.
 */
export interface Trace {
  request_id: string;
  /** GPU/node id of the worker (as /list_workers reports it); null when no worker was ever chosen. */
  node_id: number | null;
  worker_url: string | null;
  routing_policy: string;
  status: TraceStatus;
  /** Wall-clock ms of the request's arrival. */
  timestamp_ms: number;
  /** Route kind: generate | chat | completions | other. */
  route: string;
  stream: boolean;
  /** The policy's reason for its decision. */
  reason: string | null;
  /** The policy's per-worker (or per-criterion) scores, when it gave any. */
  scores: Record<string, number> | null;
  /** Router-side queueing: decided - arrived. */
  queue_ms: number | null;
  /** First content chunk (streams) or first response byte (otherwise), from arrival. */
  ttft_ms: number | null;
  /** Arrival to the end of the response. */
  e2e_ms: number | null;
  /** Queue time the worker reported (meta_info.queue_time), in ms. */
  server_queue_ms: number | null;
  input_tokens: number;
  output_tokens: number | null;
  cached_tokens: number | null;
  http_status: number | null;
  error_code: string | null;
  error_message: string | null;
  /** Workers tried (a connection failure is retried once on another worker). */
  attempts: number;
}

/** Field order of exports (CSV header) and of the API's JSON. */
export const TRACE_FIELDS = [
  'request_id',
  'node_id',
  'worker_url',
  'routing_policy',
  'status',
  'timestamp',
  'timestamp_ms',
  'route',
  'stream',
  'reason',
  'scores',
  'queue_ms',
  'ttft_ms',
  'e2e_ms',
  'server_queue_ms',
  'input_tokens',
  'output_tokens',
  'cached_tokens',
  'http_status',
  'error_code',
  'error_message',
  'attempts',
] as const;

/** The API's JSON text for one trace (seed 001's field names first). */
export function traceJson(t: Trace): string {
  return JSON.stringify(traceView(t));
}

/** The API's object for one trace: the trace plus `timestamp` as ISO 8601 text. */
export function traceView(t: Trace): Record<(typeof TRACE_FIELDS)[number], unknown> {
  return {
    request_id: t.request_id,
    node_id: t.node_id,
    worker_url: t.worker_url,
    routing_policy: t.routing_policy,
    status: t.status,
    timestamp: isoTime(t.timestamp_ms),
    timestamp_ms: t.timestamp_ms,
    route: t.route,
    stream: t.stream,
    reason: t.reason,
    scores: t.scores,
    queue_ms: t.queue_ms,
    ttft_ms: t.ttft_ms,
    e2e_ms: t.e2e_ms,
    server_queue_ms: t.server_queue_ms,
    input_tokens: t.input_tokens,
    output_tokens: t.output_tokens,
    cached_tokens: t.cached_tokens,
    http_status: t.http_status,
    error_code: t.error_code,
    error_message: t.error_message,
    attempts: t.attempts,
  };
}

function isoTime(ms: number): string | null {
  const d = new Date(ms);
  return Number.isFinite(d.getTime()) ? d.toISOString() : null;
}

/** Filters of GET /v1/traces. */
export interface TraceQuery {
  readonly limit: number;
  readonly nodeId?: number | null | undefined;
  readonly status?: TraceStatus | undefined;
}

/** GET /v1/traces/stats. */
export interface TraceStats {
  /** Traces held now (= the sum of requests_per_status). */
  total_requests: number;
  /** Held traces still in flight (pending or streaming). */
  active_traces: number;
  /** Held traces per node id ("none": never routed). */
  requests_per_node: Record<string, number>;
  requests_per_status: Record<TraceStatus, number>;
  /** Traces created since the tracker started (including evicted and expired ones). */
  recorded_total: number;
  evicted_lru: number;
  expired_ttl: number;
  /** Traces loaded from the trace log at start. */
  loaded_from_log: number;
  max_entries: number;
  ttl_seconds: number;
  /** The trace log's counters; null when there is no log. */
  log: TraceLogStats | null;
  /** Why the trace log could not be opened or reloaded, if it could not. */
  log_error: string | null;
  /** Shared traces through Redis (--redis-url only; docs/deployment.md, "Traces"). */
  cluster?: SharedTraceStats;
}

export interface TraceLogStats {
  dir: string;
  file: string;
  files: number;
  records_written: number;
  bytes_written: number;
  flushes: number;
  rotations: number;
  /** Bytes cut from a torn tail when the log was opened. */
  recovered_bytes_cut: number;
  write_errors: number;
  last_error: string | null;
}

export interface TrackerConfig {
  /** The router's policy name (for a trace whose decision event was lost to eviction). */
  readonly policy: string;
  readonly maxEntries: number;
  readonly ttlSeconds: number;
  /** Trace log folder; undefined: no log. */
  readonly logDir: string | undefined;
  readonly logMaxBytes: number;
  readonly logMaxFiles: number;
  readonly flushMs: number;
  /**
   * Finished traces kept for the shared-traces part to drain (src/cluster/traces-redis.ts), oldest dropped
   * beyond this; 0 or absent: none kept (no --redis-url).
   */
  readonly shareQueueMax?: number | undefined;
}

/**
 * Finished traces handed from the tracker actor to the shared-traces part, oldest first: trace i is
 * `bytes[offsets[i] .. offsets[i + 1])` (trace-codec.ts), its request id `ids[i]`, and it finished at
 * wall-clock `ends[i]` (its TTL runs from there, as in the store).
 */
export interface FinishedTraces {
  readonly ids: string[];
  readonly ends: Float64Array;
  readonly offsets: Uint32Array;
  readonly bytes: Uint8Array;
  /** Traces dropped from the actor's queue since the last drain (nobody drained in time). */
  readonly dropped: number;
}

/** What a shared-traces part adds to GET /v1/traces/stats (`cluster`). */
export type SharedTraceStats = Record<string, unknown>;
