/**
 * The traces API on the router's main port (seed 001's endpoints):
 *
 *   GET  /v1/traces/{request_id}     one trace (404 trace_not_found when unknown)
 *   POST /v1/traces/batch            {"request_ids": [...]} -> the known traces, in request order
 *   GET  /v1/traces?limit=&node_id=&status=   most recent first
 *   GET  /v1/traces/stats            {total_requests, active_traces, requests_per_node, requests_per_status, ...}
 *
 * With --api-key set, these need the key like the admin routes do. With tracking off, they answer 404
 * tracking_disabled. Every bad input is a JSON error with a stable code.
 */
import { SwitchyardError, toSwitchyardError } from '../errors.js';
import { Exchange, parseContentLength, parseJsonObject, type HttpRequest, type TemplatedApp } from '../frontend/http.js';
import { checkBearer } from '../frontend/auth.js';
import { isValidRequestId } from '../frontend/features.js';
import type { RouterContext } from '../frontend/context.js';
import type { RequestTracker } from './tracker.js';
import { isTraceStatus, TRACE_STATUSES, type TraceQuery } from './types.js';

/** Most ids one batch query may name. */
export const MAX_BATCH_IDS = 1000;
/** Largest batch body (1000 ids of 128 characters fit with room to spare). */
export const MAX_BATCH_BODY = 256 * 1024;
export const DEFAULT_LIST_LIMIT = 100;
export const MAX_LIST_LIMIT = 1000;

const LIST_PARAMS = ['limit', 'node_id', 'status'];
/** The data routes' rule: application/json or any application/*+json. */
const JSON_CONTENT_TYPE = /^application\/([a-z.+-]*\+)?json\b/i;

export function registerTraceRoutes(app: TemplatedApp, ctx: RouterContext, tracker: RequestTracker | undefined): void {
  app.get('/v1/traces/stats', (res, req) => {
    const ex = new Exchange(res);
    if (!allowed(ctx, ex, req, tracker)) return;
    answer(ex, tracker!.stats(), (s) => JSON.stringify(s));
  });

  app.post('/v1/traces/batch', (res, req) => {
    const ex = new Exchange(res);
    if (!allowed(ctx, ex, req, tracker)) return;
    const contentType = req.getHeader('content-type');
    if (contentType !== '' && !JSON_CONTENT_TYPE.test(contentType)) {
      return ex.fail('unsupported_media_type', `content-type must be application/json, got ${contentType.slice(0, 100)}`);
    }
    const declared = parseContentLength(req.getHeader('content-length'));
    ex.readBody(MAX_BATCH_BODY, declared, (err, body) => {
      if (err !== null) return; // answered by readBody
      const ids = parseBatchBody(body);
      if (ids instanceof SwitchyardError) return ex.error(ids);
      answer(ex, tracker!.batch(ids), (s) => s);
    });
  });

  app.get('/v1/traces', (res, req) => {
    const ex = new Exchange(res);
    if (!allowed(ctx, ex, req, tracker)) return;
    const q = parseListQuery(req.getQuery() ?? '');
    if (q instanceof SwitchyardError) return ex.error(q);
    answer(ex, tracker!.list(q), (s) => s);
  });

  app.get('/v1/traces/:request_id', (res, req) => {
    const ex = new Exchange(res);
    if (!allowed(ctx, ex, req, tracker)) return;
    const id = parseRequestIdParam(req.getParameter(0) ?? '');
    if (id instanceof SwitchyardError) return ex.error(id);
    answer(ex, tracker!.get(id), (s) => {
      if (s === null) throw new SwitchyardError('trace_not_found', `no trace for request id ${id} (unknown, or expired/evicted)`);
      return s;
    });
  });

  // Wrong methods: 405 with Allow (method-specific handlers take precedence over any()).
  wrongMethod(app, '/v1/traces', 'GET');
  wrongMethod(app, '/v1/traces/stats', 'GET');
  wrongMethod(app, '/v1/traces/batch', 'POST');
  wrongMethod(app, '/v1/traces/:request_id', 'GET');
}

function allowed(ctx: RouterContext, ex: Exchange, req: HttpRequest, tracker: RequestTracker | undefined): boolean {
  const key = ctx.settings.apiKey;
  if (key !== undefined && !checkBearer(req.getHeader('authorization'), key)) {
    ex.fail('unauthorized', 'missing or invalid API key (Authorization: Bearer <key>)', { 'www-authenticate': 'Bearer' });
    return false;
  }
  if (tracker === undefined) {
    ex.fail('tracking_disabled', 'request tracking is off (start the router with --enable-request-tracking)');
    return false;
  }
  return true;
}

/** Answer with the actor's reply (already JSON text), or the error it failed with. */
function answer<T>(ex: Exchange, reply: Promise<T>, body: (v: T) => string): void {
  reply.then(
    (v) => {
      let text: string;
      try {
        text = body(v);
      } catch (err) {
        return ex.error(toSwitchyardError(err));
      }
      ex.json(200, text);
    },
    (err: unknown) => ex.error(toSwitchyardError(err)),
  );
}

function wrongMethod(app: TemplatedApp, path: string, allow: string): void {
  app.any(path, (res, req) => {
    const ex = new Exchange(res);
    ex.fail('method_not_allowed', `${req.getCaseSensitiveMethod()} is not allowed on ${path.replace(':request_id', '{request_id}')}; use ${allow}`, { allow });
  });
}

/** The id from the path: percent-decoded, then held to the request-id rule (features.ts). */
export function parseRequestIdParam(raw: string): string | SwitchyardError {
  let id: string;
  try {
    id = decodeURIComponent(raw);
  } catch {
    return new SwitchyardError('invalid_request_id', 'request id is not valid percent-encoding');
  }
  if (!isValidRequestId(id)) return new SwitchyardError('invalid_request_id', 'request id must be 1-128 characters of [A-Za-z0-9._:-]');
  return id;
}

/** `{"request_ids": [...]}`: an array of at most MAX_BATCH_IDS valid ids; duplicates answered once. */
export function parseBatchBody(body: Buffer): string[] | SwitchyardError {
  const parsed = parseJsonObject(body);
  if (parsed instanceof SwitchyardError) return parsed;
  for (const k of Object.keys(parsed)) {
    if (k !== 'request_ids') return new SwitchyardError('invalid_request', `unknown field "${k.slice(0, 64)}"; the body is {"request_ids": [...]}`);
  }
  const ids = parsed['request_ids'];
  if (!Array.isArray(ids)) return new SwitchyardError('invalid_request', '"request_ids" must be an array of request ids');
  if (ids.length > MAX_BATCH_IDS) {
    return new SwitchyardError('invalid_request', `at most ${MAX_BATCH_IDS} request ids per batch, got ${ids.length}`, { details: { limit: MAX_BATCH_IDS } });
  }
  const seen = new Set<string>();
  const out: string[] = [];
  for (let i = 0; i < ids.length; i++) {
    const id: unknown = ids[i];
    if (typeof id !== 'string' || !isValidRequestId(id)) {
      return new SwitchyardError('invalid_request_id', `request_ids[${i}] must be 1-128 characters of [A-Za-z0-9._:-]`, { details: { index: i } });
    }
    if (seen.has(id)) continue;
    seen.add(id);
    out.push(id);
  }
  return out;
}

/** `limit` (1..MAX_LIST_LIMIT, default DEFAULT_LIST_LIMIT), `node_id` (integer >= 0, or "none"), `status`. */
export function parseListQuery(query: string): TraceQuery | SwitchyardError {
  const params = new URLSearchParams(query);
  let limit = DEFAULT_LIST_LIMIT;
  let nodeId: number | null | undefined;
  let status: TraceQuery['status'];
  const seen = new Set<string>();
  for (const [key, value] of params) {
    if (!LIST_PARAMS.includes(key)) {
      return new SwitchyardError('invalid_request', `unknown query parameter "${key.slice(0, 64)}"; known: ${LIST_PARAMS.join(', ')}`);
    }
    if (seen.has(key)) return new SwitchyardError('invalid_request', `query parameter "${key}" given more than once`);
    seen.add(key);
    if (key === 'limit') {
      if (!/^\d{1,7}$/.test(value) || Number(value) < 1 || Number(value) > MAX_LIST_LIMIT) {
        return new SwitchyardError('invalid_request', `limit must be an integer from 1 to ${MAX_LIST_LIMIT}, got "${value.slice(0, 32)}"`);
      }
      limit = Number(value);
    } else if (key === 'node_id') {
      if (value === 'none') nodeId = null;
      else if (/^\d{1,9}$/.test(value)) nodeId = Number(value);
      else return new SwitchyardError('invalid_request', `node_id must be a non-negative integer (or "none"), got "${value.slice(0, 32)}"`);
    } else {
      if (!isTraceStatus(value)) return new SwitchyardError('invalid_request', `status must be one of ${TRACE_STATUSES.join(', ')}, got "${value.slice(0, 32)}"`);
      status = value;
    }
  }
  return { limit, nodeId, status };
}
