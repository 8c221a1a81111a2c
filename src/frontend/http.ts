/**
 * uWebSockets.js helpers shared by the router front end and the simulated worker.
 *
 * uWS rules these helpers encode: read everything from `req` synchronously; register onAborted before
 * any async work; copy each onData chunk (its ArrayBuffer is reused); count body bytes ourselves (uWS
 * has no limit); wrap writes made outside the handler in res.cork; writeStatus before writeHeader.
 */
import uWS from 'uWebSockets.js';
import { StartupError, SwitchyardError, type ErrorCode } from '../errors.js';

export type HttpResponse = uWS.HttpResponse;
export type HttpRequest = uWS.HttpRequest;
export type TemplatedApp = uWS.TemplatedApp;
export type ListenSocket = uWS.us_listen_socket;

/** Throws unless the native uWS binary is loaded: the package silently falls back to a slow JS server. */
export function assertNativeUws(): void {
  if (!/\[native code\]/.test(Function.prototype.toString.call(uWS.App))) {
    throw new Error('uWebSockets.js native binary failed to load (JS fallback in use); refusing to run slowly');
  }
}

export function createApp(): TemplatedApp {
  assertNativeUws();
  return uWS.App();
}

const STATUS_TEXT: Record<number, string> = {
  200: '200 OK',
  201: '201 Created',
  204: '204 No Content',
  400: '400 Bad Request',
  401: '401 Unauthorized',
  403: '403 Forbidden',
  404: '404 Not Found',
  405: '405 Method Not Allowed',
  408: '408 Request Timeout',
  409: '409 Conflict',
  413: '413 Payload Too Large',
  415: '415 Unsupported Media Type',
  429: '429 Too Many Requests',
  431: '431 Request Header Fields Too Large',
  499: '499 Client Closed Request',
  500: '500 Internal Server Error',
  502: '502 Bad Gateway',
  503: '503 Service Unavailable',
  504: '504 Gateway Timeout',
};

export function statusLine(status: number): string {
  return STATUS_TEXT[status] ?? `${status} Status`;
}

/** Header pairs a response carries whatever it says (the CORS headers of an allowed origin). */
export type ResponseHeaders = readonly [string, string][];

/**
 * Where a route wrapper leaves the per-request response headers (cors.ts sets them before the handler
 * runs; uWS hands each request a fresh response object). Nothing is stored when there are none, so the
 * no-CORS path reads one absent property and allocates nothing.
 */
const RESPONSE_HEADERS = Symbol('switchyard.responseHeaders');

interface HeaderCarrier {
  [RESPONSE_HEADERS]?: ResponseHeaders;
}

export function setResponseHeaders(res: HttpResponse, headers: ResponseHeaders): void {
  (res as HeaderCarrier)[RESPONSE_HEADERS] = headers;
}

/** The response headers a wrapper attached to this request (undefined: none). */
export function responseHeadersOf(res: HttpResponse): ResponseHeaders | undefined {
  return (res as HeaderCarrier)[RESPONSE_HEADERS];
}

/** Write the per-request headers (call inside cork, after writeStatus). */
export function writeResponseHeaders(res: HttpResponse, headers: ResponseHeaders | undefined): void {
  if (headers === undefined) return;
  for (let i = 0; i < headers.length; i++) {
    const h = headers[i]!;
    res.writeHeader(h[0], h[1]);
  }
}

/** Per-request state that survives the synchronous handler: the abort flag and an abort hook. */
export class Exchange {
  aborted = false;
  /** True once a status line was written (headers or body may have reached the client). */
  started = false;
  finished = false;
  onAbort: (() => void) | undefined = undefined;
  /** Headers every answer of this exchange carries, errors included (CORS); undefined when none. */
  readonly extraHeaders: ResponseHeaders | undefined;

  constructor(readonly res: HttpResponse) {
    this.extraHeaders = (res as HeaderCarrier)[RESPONSE_HEADERS];
    res.onAborted(() => {
      this.aborted = true;
      const hook = this.onAbort;
      this.onAbort = undefined;
      if (hook !== undefined) hook();
    });
  }

  /** Send a complete JSON (or pre-serialised) response; no-op if the client is gone. Safe outside handlers. */
  json(status: number, body: unknown, headers?: Record<string, string>): void {
    if (this.aborted || this.finished) return;
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    this.res.cork(() => {
      this.res.writeStatus(statusLine(status));
      this.res.writeHeader('content-type', 'application/json');
      writeResponseHeaders(this.res, this.extraHeaders);
      if (headers !== undefined) for (const k in headers) this.res.writeHeader(k, headers[k] as string);
      this.res.end(text);
    });
    this.started = true;
    this.finished = true;
  }

  /** Send a body-less or plain-text response. */
  text(status: number, body: string, contentType = 'text/plain; charset=utf-8', headers?: Record<string, string>): void {
    if (this.aborted || this.finished) return;
    this.res.cork(() => {
      this.res.writeStatus(statusLine(status));
      this.res.writeHeader('content-type', contentType);
      writeResponseHeaders(this.res, this.extraHeaders);
      if (headers !== undefined) for (const k in headers) this.res.writeHeader(k, headers[k] as string);
      this.res.end(body);
    });
    this.started = true;
    this.finished = true;
  }

  error(err: SwitchyardError, headers?: Record<string, string>): void {
    this.json(err.status, err.toJSON(), headers);
  }

  fail(code: ErrorCode, message: string, headers?: Record<string, string>): void {
    this.error(new SwitchyardError(code, message), headers);
  }

  /**
   * Read the request body up to `limit` bytes. `declaredLength` is the content-length header read
   * synchronously by the caller (NaN when absent) so oversize bodies are refused before reading.
   */
  readBody(limit: number, declaredLength: number, cb: (err: SwitchyardError | null, body: Buffer) => void): void {
    if (declaredLength > limit) {
      const err = new SwitchyardError('payload_too_large', `request body of ${declaredLength} bytes exceeds the limit of ${limit} bytes`);
      // Close after answering: the client may still be sending the body we refuse to read.
      this.closeWithError(err);
      cb(err, EMPTY);
      return;
    }
    const chunks: Buffer[] = [];
    let total = 0;
    let done = false;
    this.res.onData((ab, isLast) => {
      if (done) return;
      total += ab.byteLength;
      if (total > limit) {
        done = true;
        const err = new SwitchyardError('payload_too_large', `request body exceeds the limit of ${limit} bytes`);
        this.closeWithError(err);
        cb(err, EMPTY);
        return;
      }
      if (isLast) {
        done = true;
        let body: Buffer;
        if (chunks.length === 0) body = Buffer.copyBytesFrom(new Uint8Array(ab));
        else {
          chunks.push(Buffer.copyBytesFrom(new Uint8Array(ab)));
          body = Buffer.concat(chunks, total);
        }
        cb(null, body);
      } else if (ab.byteLength > 0) {
        chunks.push(Buffer.copyBytesFrom(new Uint8Array(ab)));
      }
    });
  }

  /** Answer with a JSON error and close the connection (the client may still be sending a body we refuse). */
  closeWithError(err: SwitchyardError): void {
    if (this.aborted || this.finished) return;
    this.res.cork(() => {
      this.res.writeStatus(statusLine(err.status));
      this.res.writeHeader('content-type', 'application/json');
      writeResponseHeaders(this.res, this.extraHeaders);
      this.res.end(JSON.stringify(err.toJSON()), true);
    });
    this.started = true;
    this.finished = true;
  }
}

const EMPTY = Buffer.alloc(0);

/** Parse a JSON body into an object, or a SwitchyardError with code invalid_json / invalid_request. */
export function parseJsonObject(body: Buffer): Record<string, unknown> | SwitchyardError {
  if (body.length === 0) return new SwitchyardError('invalid_json', 'request body is empty; a JSON object is required');
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch (err) {
    return new SwitchyardError('invalid_json', `request body is not valid JSON: ${(err as Error).message}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    return new SwitchyardError('invalid_request', 'request body must be a JSON object');
  }
  return parsed as Record<string, unknown>;
}

/**
 * How a listener shares its port. uSockets sets SO_REUSEPORT by default, so a second process started on
 * the same port (an old router not stopped, a second copy by mistake) binds too and the kernel splits the
 * connections between them, silently. 'exclusive' (the default) refuses that: the bind fails when anything
 * listens there. 'shared' is only for the front-end threads of one router, which spread connections over
 * one port on purpose (and check first that no one else holds it: frontend/threads/start.ts).
 */
export type PortSharing = 'exclusive' | 'shared';

/** The 4-argument listen uWS accepts (its typings list options only without a host). */
type ListenWithOptions = (host: string, port: number, options: number, cb: (socket: ListenSocket | false) => void) => TemplatedApp;
const LISTEN_DEFAULT = 0;
const LISTEN_EXCLUSIVE_PORT = 1;

export function listen(app: TemplatedApp, host: string, port: number, sharing: PortSharing = 'exclusive'): Promise<{ socket: ListenSocket; port: number }> {
  return new Promise((resolve, reject) => {
    const options = sharing === 'exclusive' ? LISTEN_EXCLUSIVE_PORT : LISTEN_DEFAULT;
    (app.listen as unknown as ListenWithOptions).call(app, host, port, options, (socket) => {
      if (socket === false) reject(new StartupError(`cannot listen on ${host}:${port}: the port is in use (another router or server on it?) or the address is not on this machine`));
      else resolve({ socket, port: uWS.us_socket_local_port(socket) });
    });
  });
}

export function closeListenSocket(socket: ListenSocket): void {
  uWS.us_listen_socket_close(socket);
}

/**
 * Close an app's listen sockets AND every connection it holds (keep-alive ones included). A worker thread
 * that ends while uWS still holds sockets aborts the whole process, so a thread's app must be closed first.
 * (The native App has close(); this build's typings omit it.)
 */
export function closeApp(app: TemplatedApp): void {
  (app as TemplatedApp & { close(): void }).close();
}

export function parseContentLength(value: string): number {
  if (value === '') return Number.NaN;
  const n = Number(value);
  return Number.isFinite(n) && n >= 0 ? n : Number.NaN;
}
