/**
 * Relays one upstream exchange to a uWS response with undici's dispatch (its fastest API; the legacy
 * handler callbacks are what undici's core calls natively, new-style handlers are adapted onto them).
 *
 * - Non-streaming bodies with a known length are gathered and written with one `end()` (one syscall,
 *   content-length, no chunked framing).
 * - Streams (SSE, or unknown length) are written chunk by chunk, byte for byte. Backpressure both ways:
 *   when uWS buffers (write() === false) the upstream parser is paused (onData returns false) and resumed
 *   from onWritable; a slow upstream simply delivers fewer chunks.
 * - A client abort aborts the upstream request. Exactly one `finish` callback per relay.
 */
import { isStaleKeepAlive, type UpstreamDispatcher, type UpstreamHandler } from './upstream/types.js';
import { SwitchyardError, type ErrorCode } from '../errors.js';
import type { Exchange } from '../frontend/http.js';
import { SseScanner } from './sse-scanner.js';

export type RelayOutcomeKind = 'completed' | 'failed' | 'aborted';

export interface RelayOutcome {
  kind: RelayOutcomeKind;
  /** Upstream status, or the status we answered with on failure (0 when the client went away first). */
  status: number;
  /** ms (performance.now) of the first response byte from upstream; 0 if none. */
  firstByteAt: number;
  finishedAt: number;
  bytes: number;
  /** Set for event streams. */
  scanner: SseScanner | undefined;
  /** The whole body of a non-streaming response (to read meta_info / usage); undefined for streams. */
  body: Buffer | undefined;
  error: SwitchyardError | undefined;
  /** True when nothing at all reached the client: the caller may retry on another worker. */
  retryable: boolean;
  /** A connection-level failure (refused/reset/connect timeout): evidence against the worker itself. */
  connectionFailure: boolean;
}

export interface RelayRequest {
  method: 'POST' | 'GET' | 'PUT';
  path: string;
  headers: Record<string, string>;
  body: Buffer | undefined;
  /** Headers added to the client response (x-request-id, X-SGLang-Worker). */
  responseHeaders: readonly [string, string][];
  /** Per-request upstream timeout (ms) for headers and for gaps between body chunks. */
  timeoutMs: number;
  /** When the relay fails before anything was written, let the caller decide (retry) instead of answering. */
  deferConnectErrors: boolean;
  /**
   * Also defer (gather, do not write) an upstream answer whose status this predicate accepts, and any
   * non-timeout error before the client got a byte: the outcome is then `retryable` with the body kept.
   */
  deferStatus?: ((status: number) => boolean) | undefined;
}

const KEEP_UNSIZED_BODY_LIMIT = 1 << 20;
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'date', 'server', 'upgrade', 'proxy-connection', 'te', 'trailer', 'x-request-id', 'x-sglang-worker', 'uwebsockets']);
const CONNECT_ERROR_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED']);

export function relay(
  ex: Exchange,
  dispatcher: UpstreamDispatcher,
  req: RelayRequest,
  now: () => number,
  finish: (outcome: RelayOutcome) => void,
): void {
  const handler = new RelayHandler(ex, req, now, finish);
  ex.onAbort = () => handler.clientAborted();
  try {
    dispatcher.dispatch(
      {
        path: req.path,
        method: req.method,
        headers: req.headers,
        body: req.body ?? null,
        headersTimeout: req.timeoutMs,
        bodyTimeout: req.timeoutMs,
        // A reused keep-alive connection found closed may be retried by the client itself exactly when
        // the router would retry the request elsewhere (nothing reached the client, retries allowed).
        idempotent: req.deferConnectErrors,
      },
      handler,
    );
  } catch (err) {
    handler.onError(err as Error);
  }
}

class RelayHandler implements UpstreamHandler {
  private abortUpstream: ((err?: Error) => void) | undefined;
  private resumeUpstream: (() => void) | undefined;
  private status = 0;
  private streaming = false;
  private gathered: Buffer[] | undefined;
  private bytes = 0;
  private firstByteAt = 0;
  private scanner: SseScanner | undefined;
  private done = false;
  private paused = false;
  private writableHooked = false;

  constructor(
    private readonly ex: Exchange,
    private readonly req: RelayRequest,
    private readonly now: () => number,
    private readonly finish: (outcome: RelayOutcome) => void,
  ) {}

  onConnect(abort: (err?: Error) => void): void {
    this.abortUpstream = abort;
    if (this.ex.aborted) abort(new Error('client aborted'));
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[] | string[], resume: () => void, statusText: string): boolean {
    if (statusCode < 200) return true; // 1xx informational
    this.status = statusCode;
    this.resumeUpstream = resume;
    this.firstByteAt = this.now();
    if (this.ex.aborted) return false;
    let contentType = '';
    let contentLength = -1;
    const forward: string[] = [];
    for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
      const name = rawHeaders[i]!.toString().toLowerCase();
      const value = rawHeaders[i + 1]!.toString();
      if (name === 'content-type') contentType = value;
      else if (name === 'content-length') contentLength = Number(value);
      if (!HOP_BY_HOP.has(name)) forward.push(name, value);
    }
    const isEventStream = contentType.startsWith('text/event-stream');
    // A deferred (retryable) status is always gathered, even when chunked: it may never reach the client.
    this.deferred = this.req.deferStatus !== undefined && this.req.deferStatus(statusCode);
    this.streaming = !this.deferred && (isEventStream || contentLength < 0);
    if (isEventStream) this.scanner = new SseScanner();
    else if (this.streaming) this.kept = [];
    if (!this.streaming) {
      this.gathered = [];
      this.pendingHeaders = forward;
      this.pendingStatusText = statusText;
      return true;
    }
    const res = this.ex.res;
    res.cork(() => {
      res.writeStatus(`${statusCode} ${statusText || 'OK'}`);
      for (let i = 0; i < forward.length; i += 2) res.writeHeader(forward[i]!, forward[i + 1]!);
      for (const [k, v] of this.req.responseHeaders) res.writeHeader(k, v);
    });
    this.ex.started = true;
    return true;
  }

  private pendingHeaders: string[] = [];
  private deferred = false;
  private kept: Buffer[] | undefined;
  private pendingStatusText = '';

  onData(chunk: Buffer): boolean {
    this.bytes += chunk.length;
    if (this.ex.aborted) return false;
    if (!this.streaming) {
      if (this.deferred && this.bytes > KEEP_UNSIZED_BODY_LIMIT) {
        // An error body this large is not worth keeping for a retry: answer with it as it stands.
        this.deferred = false;
      }
      this.gathered!.push(chunk);
      return true;
    }
    const t = this.now();
    if (this.scanner !== undefined) this.scanner.push(chunk, t);
    else if (this.kept !== undefined) {
      // Chunked JSON of unknown length: keep a bounded copy-free list to read usage/meta_info at the end.
      if (this.bytes <= KEEP_UNSIZED_BODY_LIMIT) this.kept.push(chunk);
      else this.kept = undefined;
    }
    const res = this.ex.res;
    let ok = true;
    res.cork(() => {
      ok = res.write(chunk);
    });
    if (!ok) {
      // uWS buffered the chunk (not lost): stop reading upstream until the client drains.
      this.paused = true;
      if (!this.writableHooked) {
        this.writableHooked = true;
        res.onWritable(() => {
          if (this.paused) {
            this.paused = false;
            this.resumeUpstream?.();
          }
          return true;
        });
      }
      return false;
    }
    return true;
  }

  onComplete(): void {
    if (this.done) return;
    if (this.ex.aborted) {
      this.settle('aborted', 0, undefined, false, false);
      return;
    }
    const res = this.ex.res;
    let body: Buffer | undefined;
    if (!this.streaming) {
      const parts = this.gathered!;
      body = parts.length === 1 ? parts[0]! : Buffer.concat(parts, this.bytes);
      if (this.deferred) {
        const error = new SwitchyardError('upstream_error', `upstream answered ${this.status}`, { status: this.status });
        this.settle('failed', this.status, error, true, false, body);
        return;
      }
      const headers = this.pendingHeaders;
      res.cork(() => {
        res.writeStatus(`${this.status} ${this.pendingStatusText || 'OK'}`);
        for (let i = 0; i < headers.length; i += 2) res.writeHeader(headers[i]!, headers[i + 1]!);
        for (const [k, v] of this.req.responseHeaders) res.writeHeader(k, v);
        res.end(body);
      });
    } else {
      res.cork(() => {
        res.end();
      });
      if (this.kept !== undefined) body = Buffer.concat(this.kept);
    }
    this.ex.started = true;
    this.ex.finished = true;
    this.settle('completed', this.status, undefined, false, false, body);
  }

  onError(err: Error): void {
    if (this.done) return;
    if (this.ex.aborted) {
      this.settle('aborted', 0, undefined, false, false);
      return;
    }
    const code = (err as { code?: string }).code ?? '';
    const connectionFailure = this.status === 0 && CONNECT_ERROR_CODES.has(code);
    // A reused connection the server closed as the request went out is not the worker failing: retry
    // (when allowed) like any connection error, but do not eject the worker for it.
    const stale = isStaleKeepAlive(err);
    const workerFailure = connectionFailure && !stale;
    let errorCode: ErrorCode;
    if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') errorCode = 'upstream_timeout';
    else if (connectionFailure) errorCode = 'upstream_connect_failed';
    else errorCode = 'upstream_error';
    const error = new SwitchyardError(errorCode, `upstream ${describe(code, err)}`);
    if (!this.ex.started) {
      // Nothing reached the client yet.
      const timedOut = errorCode === 'upstream_timeout';
      if ((this.req.deferConnectErrors && connectionFailure) || (this.req.deferStatus !== undefined && !timedOut)) {
        this.settle('failed', error.status, error, true, !stale);
        return;
      }
      this.ex.error(error);
      this.settle('failed', error.status, error, false, workerFailure);
      return;
    }
    // Headers (and maybe chunks) are out: end the stream with an SSE error event, or cut the connection.
    const res = this.ex.res;
    if (this.scanner !== undefined) {
      const event = `data: ${JSON.stringify(error.toJSON())}\n\ndata: [DONE]\n\n`;
      res.cork(() => {
        res.write(event);
        res.end();
      });
    } else {
      res.cork(() => {
        res.close();
      });
    }
    this.ex.finished = true;
    this.settle('failed', this.status, error, false, workerFailure);
  }

  clientAborted(): void {
    if (this.done) return;
    // Abort the upstream; undici then calls onError, which settles as 'aborted'.
    if (this.abortUpstream !== undefined) this.abortUpstream(new Error('client aborted'));
    else this.settle('aborted', 0, undefined, false, false);
  }

  private settle(kind: RelayOutcomeKind, status: number, error: SwitchyardError | undefined, retryable: boolean, connectionFailure: boolean, body?: Buffer): void {
    if (this.done) return;
    this.done = true;
    this.ex.onAbort = undefined;
    this.finish({
      kind,
      status,
      firstByteAt: this.firstByteAt,
      finishedAt: this.now(),
      bytes: this.bytes,
      scanner: this.scanner,
      body,
      error,
      retryable,
      connectionFailure,
    });
  }
}

function describe(code: string, err: Error): string {
  switch (code) {
    case 'ECONNREFUSED':
      return 'refused the connection';
    case 'UND_ERR_HEADERS_TIMEOUT':
      return 'did not answer in time';
    case 'UND_ERR_BODY_TIMEOUT':
      return 'stalled mid-response';
    case 'UND_ERR_CONNECT_TIMEOUT':
      return 'connect timed out';
    default:
      return `failed: ${err.message || code || err.name}`;
  }
}
