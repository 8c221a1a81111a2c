/**
 * The hot path: one data request (/generate, /v1/chat/completions, /v1/completions, pass-through POSTs)
 * from the uWS handler to the upstream worker and back, with one completion record at the end.
 * The request's state is an InFlight (in-flight.ts); its completion record is built in finish.ts.
 */
import { performance } from 'node:perf_hooks';
import { SwitchyardError } from '../errors.js';
import { Exchange, parseContentLength, parseJsonObject, type HttpRequest, type HttpResponse } from './http.js';
import { extractFeatures, generateRequestId, isValidRequestId, withRid } from './features.js';
import { relay, type RelayOutcome } from '../proxy/relay.js';
import type { Decision, RequestFeatures, RouteKind } from '../policies/types.js';
import type { WorkerEntry } from '../workers/registry.js';
import type { DataPlaneContext, RequestProgressHook } from './context.js';
import { checkBearer } from './auth.js';
import { backoffMs, isRetryableStatus } from './retry.js';
import { Permit } from '../workers/breaker.js';
import type { InFlight } from './in-flight.js';
import { finishRelayed, finishWithoutWorker } from './finish.js';

const now = (): number => performance.now();
const MAX_REDECIDE = 3;
const TRACEPARENT_RE = /^[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$/;

export function handleDataRequest(ctx: DataPlaneContext, res: HttpResponse, req: HttpRequest, route: RouteKind, path: string): void {
  const ex = new Exchange(res);
  const arrivedAt = now();
  // uWS: the request object is only valid now, read everything needed synchronously.
  const rawLength = req.getHeader('content-length');
  const declaredLength = parseContentLength(rawLength);
  const contentType = req.getHeader('content-type');
  const authorization = req.getHeader('authorization');
  // W3C trace context: an invalid traceparent is dropped (not forwarded), as the spec asks of a participant.
  const rawTraceparent = req.getHeader('traceparent');
  const traceparent = rawTraceparent === '' || TRACEPARENT_RE.test(rawTraceparent) ? rawTraceparent : '';
  const headerLimits = ctx.settings.headerLimits;
  if (headerLimits !== undefined) {
    let count = 0;
    let bytes = 0;
    let conflictingLength = false;
    req.forEach((k, v) => {
      count++;
      bytes += k.length + v.length + 4;
      // uWS frames the body by the first Content-Length; a differing second one is a smuggling attempt.
      if (k === 'content-length' && v !== rawLength) conflictingLength = true;
    });
    if (count > headerLimits.count || bytes > headerLimits.bytes) {
      ex.fail('headers_too_large', `request headers exceed the limits (${count} headers of at most ${headerLimits.count}, ${bytes} bytes of at most ${headerLimits.bytes})`);
      return;
    }
    if (conflictingLength || (rawLength !== '' && Number.isNaN(declaredLength))) {
      // The body's framing is ambiguous or invalid: answer and close the connection (RFC 9112 section 6.3).
      // (For a non-numeric length uWS drops the connection itself right after this handler, so that answer
      // never leaves; the request is at least not counted as accepted and then aborted.)
      ex.closeWithError(new SwitchyardError('invalid_request', conflictingLength ? 'conflicting Content-Length headers' : `invalid Content-Length: ${rawLength.slice(0, 40)}`));
      return;
    }
  }
  let headerId = '';
  for (const h of ctx.settings.requestIdHeaders) {
    const v = req.getHeader(h);
    if (v !== '') {
      headerId = v;
      break;
    }
  }
  const s = ctx.settings;
  if (s.apiKey !== undefined && !checkBearer(authorization, s.apiKey)) {
    ex.fail('unauthorized', 'missing or invalid API key (Authorization: Bearer <key>)', { 'www-authenticate': 'Bearer' });
    return;
  }
  if (contentType !== '' && !/^application\/([a-z.+-]*\+)?json\b/i.test(contentType)) {
    ex.fail('unsupported_media_type', `content-type must be application/json, got ${contentType.slice(0, 100)}`);
    return;
  }
  if (ctx.shuttingDown) {
    ex.fail('shutting_down', 'the router is shutting down');
    return;
  }
  if (headerId !== '' && !isValidRequestId(headerId)) {
    ex.fail('invalid_request_id', 'request id must be 1-128 characters of [A-Za-z0-9._:-]');
    return;
  }
  ctx.counters.requests++;
  ctx.counters.active++;
  ctx.events?.accepted(route, path);
  // Slow-body guard (slowloris): the body must arrive by a deadline that grows with its declared length.
  let bodyDone = false;
  const deadline = s.bodyDeadline;
  const bodyTimer =
    deadline === undefined
      ? undefined
      : setTimeout(
          () => {
            if (bodyDone) return;
            bodyDone = true;
            ex.onAbort = undefined;
            ctx.counters.active--;
            if (ex.aborted) {
              ctx.counters.aborted++;
              return;
            }
            ctx.counters.failed++;
            ctx.events?.rejected(route, 'request_body_timeout', path);
            // Close after answering: the client is still (slowly) sending.
            ex.closeWithError(new SwitchyardError('request_body_timeout', 'the request body did not arrive in time'));
          },
          Number.isNaN(declaredLength) ? deadline.unknownLengthMs : deadline.baseMs + (declaredLength * 1000) / deadline.minBytesPerSec,
        );
  // A client gone while its body was arriving is counted as aborted at once.
  ex.onAbort = () => {
    if (bodyDone) return;
    bodyDone = true;
    if (bodyTimer !== undefined) clearTimeout(bodyTimer);
    ctx.counters.active--;
    ctx.counters.aborted++;
    ctx.events?.rejected(route, 'client_closed', path);
  };
  ex.readBody(s.maxPayloadSize, declaredLength, (err, body) => {
    if (bodyDone) return;
    bodyDone = true;
    ex.onAbort = undefined;
    if (bodyTimer !== undefined) clearTimeout(bodyTimer);
    if (err !== null) {
      ctx.counters.active--;
      ctx.counters.failed++;
      ctx.events?.rejected(route, err.code, path);
      return;
    }
    const limits = ctx.limits;
    if (limits === undefined || limits.unlimited) return onBody(ctx, ex, route, path, body, headerId, arrivedAt, traceparent, authorization);
    // Concurrency limit / rate limit: admitted now, refused now, or queued until a slot frees.
    const admitted = limits.acquire((qerr) => {
      ex.onAbort = undefined;
      if (qerr !== null) return refuse(ctx, ex, qerr, route, path);
      onBody(ctx, ex, route, path, body, headerId, arrivedAt, traceparent, authorization);
    });
    if (admitted === null) return onBody(ctx, ex, route, path, body, headerId, arrivedAt, traceparent, authorization);
    if (admitted instanceof SwitchyardError) return refuse(ctx, ex, admitted, route, path);
    ex.onAbort = () => {
      // The client left while queued: it leaves the queue and is counted as aborted.
      limits.cancel(admitted);
      ctx.counters.active--;
      ctx.counters.aborted++;
      ctx.events?.rejected(route, 'client_closed', path);
    };
  });
}

/** Refused before admission (no limiter slot held). */
function refuse(ctx: DataPlaneContext, ex: Exchange, err: SwitchyardError, route: RouteKind, path: string): void {
  ctx.counters.active--;
  ctx.counters.failed++;
  ctx.events?.rejected(route, err.code, path);
  ex.error(err);
}

function onBody(ctx: DataPlaneContext, ex: Exchange, route: RouteKind, path: string, raw: Buffer, headerId: string, arrivedAt: number, traceparent: string, authorization: string): void {
  const parsed = parseJsonObject(raw);
  if (parsed instanceof SwitchyardError) return reject(ctx, ex, parsed, route, path);
  const extracted = extractFeatures(route, parsed);
  if (extracted instanceof SwitchyardError) return reject(ctx, ex, extracted, route, path);
  let requestId = headerId;
  if (requestId === '' && extracted.rid !== undefined) {
    if (!isValidRequestId(extracted.rid)) return reject(ctx, ex, new SwitchyardError('invalid_request_id', '`rid` must be 1-128 characters of [A-Za-z0-9._:-]'), route, path);
    requestId = extracted.rid;
  }
  if (requestId === '') requestId = generateRequestId();
  const body = route === 'generate' ? withRid(raw, parsed, extracted, requestId) : raw;
  const extractedFeatures: RequestFeatures = {
    requestId,
    route,
    text: extracted.text,
    inputTokens: extracted.inputTokens,
    maxNewTokens: extracted.maxNewTokens,
    stream: extracted.stream,
    model: extracted.model,
  };
  // Size-aware admission classes the request into a worker group the policy then decides within.
  const features = ctx.admission === undefined ? extractedFeatures : ctx.admission.admit(extractedFeatures);
  const state: InFlight = {
    ex,
    route,
    path,
    requestId,
    features,
    body,
    arrivedAt,
    timestamp: Date.now() - (now() - arrivedAt),
    decidedAt: 0,
    sentAt: 0,
    attempts: 0,
    decision: undefined,
    worker: undefined,
    failedSlots: [],
    permit: Permit.Normal,
    backoff: undefined,
    traceparent,
    authorization,
    traceHold: 0,
  };
  decideAndSend(ctx, state, 0);
}

function reject(ctx: DataPlaneContext, ex: Exchange, err: SwitchyardError, route: RouteKind, path: string): void {
  ctx.limits?.release();
  ctx.counters.active--;
  ctx.counters.failed++;
  ctx.events?.rejected(route, err.code, path);
  ex.error(err);
}

function decideAndSend(ctx: DataPlaneContext, st: InFlight, redecides: number): void {
  if (st.ex.aborted) return finishWithoutWorker(ctx, st, 'aborted', 0, undefined);
  ctx.policy.decide(st.features, (err, decision) => {
    if (st.ex.aborted) return finishWithoutWorker(ctx, st, 'aborted', 0, undefined);
    if (err !== null) {
      ctx.log.error({ err, request_id: st.requestId }, 'policy failed');
    }
    const breakers = ctx.breakers;
    let permit = Permit.Normal;
    if (decision !== null && decision !== undefined && breakers !== undefined && !st.failedSlots.includes(decision.slot)) {
      // A half-open breaker lets only a few probes through at once; the rest go elsewhere.
      permit = breakers.tryAcquire(decision);
      if (permit === Permit.Refused) {
        const alt = leastLoadedExcluding(ctx, [...st.failedSlots, decision.slot], 'half-open breaker is full');
        if (alt !== undefined) permit = breakers.tryAcquire(alt);
        decision = alt !== undefined && permit !== Permit.Refused ? alt : null;
      }
    }
    if (decision === null || decision === undefined || st.failedSlots.includes(decision.slot)) {
      let alt = decision !== null && decision !== undefined ? leastLoadedExcluding(ctx, st.failedSlots, 'after a failed attempt') : undefined;
      // No other worker: a worker that failed this request may still be tried again (it is still available).
      if (alt === undefined && decision !== null && decision !== undefined && ctx.table.isAvailable(decision.slot)) alt = decision;
      if (alt !== undefined && breakers !== undefined) {
        permit = breakers.tryAcquire(alt);
        if (permit === Permit.Refused) alt = undefined;
      }
      if (alt === undefined) {
        const e = new SwitchyardError('no_healthy_workers', ctx.registry.size === 0 ? 'no workers are registered' : 'no healthy worker is available');
        st.ex.error(e);
        return finishWithoutWorker(ctx, st, 'failed', e.status, e);
      }
      decision = alt;
    }
    const worker = ctx.registry.bySlot(decision.slot);
    if (worker === undefined || worker.generation !== decision.generation || !ctx.table.acquire(worker.ref, st.features.inputTokens)) {
      // The worker was removed between decision and dispatch: decide again.
      if (permit === Permit.Probe && worker !== undefined) breakers?.record(worker.ref, permit, undefined);
      if (redecides < MAX_REDECIDE) return decideAndSend(ctx, st, redecides + 1);
      const e = new SwitchyardError('no_healthy_workers', 'workers changed too quickly to route the request');
      st.ex.error(e);
      return finishWithoutWorker(ctx, st, 'failed', e.status, e);
    }
    st.decision = decision;
    st.worker = worker;
    st.permit = permit;
    st.decidedAt = now();
    st.attempts++;
    ctx.progress?.decided(st);
    ctx.events?.decided(st);
    if (st.attempts === 1) {
      ctx.log.info(
        { event: 'routing.decision', request_id: st.requestId, worker: worker.url, node_id: worker.nodeId, policy: ctx.policy.name, reason: decision.reason, input_tokens: st.features.inputTokens, route: st.route },
        'routing.decision',
      );
    }
    send(ctx, st, worker);
  });
}

function leastLoadedExcluding(ctx: DataPlaneContext, excluded: readonly number[], why: string): Decision | undefined {
  let best: WorkerEntry | undefined;
  let bestLoad = Infinity;
  for (const w of ctx.registry.list()) {
    if (excluded.includes(w.slot) || !ctx.table.isAvailable(w.slot)) continue;
    const load = ctx.table.load(w.slot);
    if (load < bestLoad) {
      best = w;
      bestLoad = load;
    }
  }
  if (best === undefined) return undefined;
  return { slot: best.slot, generation: best.generation, url: best.url, reason: `retry: least loaded (${bestLoad}) ${why}` };
}

function send(ctx: DataPlaneContext, st: InFlight, worker: WorkerEntry): void {
  const headers: Record<string, string> = { 'content-type': 'application/json', 'x-request-id': st.requestId };
  if (st.traceparent !== '') headers['traceparent'] = st.traceparent;
  if (st.authorization !== '' && ctx.settings.apiKey === undefined) headers['authorization'] = st.authorization;
  st.sentAt = now();
  const progress = ctx.progress;
  relay(
    st.ex,
    worker.upstream,
    {
      method: 'POST',
      path: st.path,
      headers,
      body: st.body,
      responseHeaders: relayHeaders(st, worker),
      timeoutMs: ctx.settings.requestTimeoutMs,
      deferConnectErrors: mayRetry(ctx, st),
      deferStatus: ctx.settings.retry !== undefined && mayRetry(ctx, st) ? isRetryableStatus : undefined,
    },
    progress !== undefined && st.features.stream ? firstByteClock(progress, st) : now,
    (outcome) => onRelayFinished(ctx, st, worker, outcome),
  );
}

/** Headers on the relayed answer: the request id, the worker, and the exchange's CORS headers if any. */
function relayHeaders(st: InFlight, worker: WorkerEntry): readonly [string, string][] {
  const extra = st.ex.extraHeaders;
  if (extra === undefined) {
    return [
      ['x-request-id', st.requestId],
      ['X-SGLang-Worker', worker.url],
    ];
  }
  return [['x-request-id', st.requestId], ['X-SGLang-Worker', worker.url], ...extra];
}

/**
 * The relay's clock for a stream while a progress hook listens: its first reading after the response
 * started (the first body chunk) is reported as the stream's first byte. Allocated only when tracking is on.
 */
function firstByteClock(progress: RequestProgressHook, st: InFlight): () => number {
  let reported = false;
  return () => {
    const t = now();
    if (!reported && st.ex.started) {
      reported = true;
      progress.firstByte(st, t);
    }
    return t;
  };
}

/** May the attempt now being sent be retried if it fails before reaching the client? */
function mayRetry(ctx: DataPlaneContext, st: InFlight): boolean {
  const policy = ctx.settings.retry;
  if (policy === undefined) return ctx.settings.retryConnectFailures && st.attempts === 1;
  return st.attempts <= policy.maxRetries;
}

function onRelayFinished(ctx: DataPlaneContext, st: InFlight, worker: WorkerEntry, outcome: RelayOutcome): void {
  const completed = outcome.kind === 'completed' && outcome.status < 400;
  ctx.table.releaseLoad(worker.ref, st.features.inputTokens, completed);
  if (outcome.connectionFailure) ctx.monitor.reportConnectionFailure(worker, outcome.error?.message ?? 'connection failure');
  // Breaker: an error or a 5xx counts against the worker, an answer below 500 for it, a client abort neither.
  ctx.breakers?.record(worker.ref, st.permit, outcome.kind === 'aborted' ? undefined : outcome.error === undefined && outcome.status < 500);
  if (outcome.retryable && !st.ex.aborted) {
    // Nothing reached the client: back off, then choose a worker again (avoiding this one if possible).
    ctx.counters.retries++;
    if (!st.failedSlots.includes(worker.slot)) st.failedSlots.push(worker.slot);
    const policy = ctx.settings.retry;
    const delay = policy === undefined ? 0 : backoffMs(policy, st.attempts);
    ctx.log.warn({ event: 'routing.retry', request_id: st.requestId, worker: worker.url, status: outcome.status, error: outcome.error?.message, attempt: st.attempts, backoff_ms: delay }, 'retrying');
    if (delay <= 0) return decideAndSend(ctx, st, 0);
    st.ex.onAbort = () => {
      if (st.backoff !== undefined) clearTimeout(st.backoff);
      st.backoff = undefined;
      finishWithoutWorker(ctx, st, 'aborted', 0, undefined);
    };
    st.backoff = setTimeout(() => {
      st.backoff = undefined;
      st.ex.onAbort = undefined;
      decideAndSend(ctx, st, 0);
    }, delay);
    return;
  }
  finishRelayed(ctx, st, worker, outcome);
}

