/**
 * One finished trace as a self-contained msgpack value: what shared traces store in Redis under one key
 * per request id (src/cluster/traces-redis.ts). Unlike the trace log (log-format.ts), whose structures are
 * defined once per file, each value here must decode on its own, on any replica, so a trace is a msgpack
 * array in a fixed field order behind a version number: no field names, ~40% of the JSON's size.
 *
 *   [1, request_id, node_id, worker_url, routing_policy, status, timestamp_ms, route, stream, reason,
 *    scores, queue_ms, ttft_ms, e2e_ms, server_queue_ms, input_tokens, output_tokens, cached_tokens,
 *    http_status, error_code, error_message, attempts]
 */
import { Packr } from 'msgpackr';
import { isTraceStatus, type Trace } from './types.js';

export const TRACE_CODEC_VERSION = 1;
const FIELDS = 22;

const packr = new Packr({ useRecords: false, mapsAsObjects: true, useToJSON: false });

/** The trace's bytes (a fresh copy: msgpackr hands out a view of its reused buffer). */
export function encodeTrace(t: Trace): Uint8Array {
  const v = packr.pack([
    TRACE_CODEC_VERSION,
    t.request_id,
    t.node_id,
    t.worker_url,
    t.routing_policy,
    t.status,
    t.timestamp_ms,
    t.route,
    t.stream,
    t.reason,
    t.scores,
    t.queue_ms,
    t.ttft_ms,
    t.e2e_ms,
    t.server_queue_ms,
    t.input_tokens,
    t.output_tokens,
    t.cached_tokens,
    t.http_status,
    t.error_code,
    t.error_message,
    t.attempts,
  ]);
  return new Uint8Array(v);
}

const str = (v: unknown): v is string => typeof v === 'string';
const num = (v: unknown): v is number => typeof v === 'number';
const strOrNull = (v: unknown): v is string | null => v === null || typeof v === 'string';
const numOrNull = (v: unknown): v is number | null => v === null || typeof v === 'number';

/** The trace, or null when the bytes are not one (another version, garbage, a foreign key). */
export function decodeTrace(bytes: Uint8Array): Trace | null {
  let a: unknown;
  try {
    a = packr.unpack(bytes);
  } catch {
    return null;
  }
  if (!Array.isArray(a) || a.length !== FIELDS || a[0] !== TRACE_CODEC_VERSION) return null;
  const [, id, node, url, policy, status, ts, route, stream, reason, scores, queue, ttft, e2e, sq, input, output, cached, http, code, message, attempts] = a as unknown[];
  if (!str(id) || !numOrNull(node) || !strOrNull(url) || !str(policy) || !str(status) || !isTraceStatus(status) || !num(ts) || !str(route)) return null;
  if (typeof stream !== 'boolean' || !strOrNull(reason) || !(scores === null || (typeof scores === 'object' && !Array.isArray(scores)))) return null;
  if (!numOrNull(queue) || !numOrNull(ttft) || !numOrNull(e2e) || !numOrNull(sq) || !num(input) || !numOrNull(output) || !numOrNull(cached)) return null;
  if (!numOrNull(http) || !strOrNull(code) || !strOrNull(message) || !num(attempts)) return null;
  return {
    request_id: id,
    node_id: node,
    worker_url: url,
    routing_policy: policy,
    status,
    timestamp_ms: ts,
    route,
    stream,
    reason,
    scores: scores as Record<string, number> | null,
    queue_ms: queue,
    ttft_ms: ttft,
    e2e_ms: e2e,
    server_queue_ms: sq,
    input_tokens: input,
    output_tokens: output,
    cached_tokens: cached,
    http_status: http,
    error_code: code,
    error_message: message,
    attempts,
  };
}
