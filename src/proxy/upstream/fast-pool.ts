/**
 * A keep-alive HTTP/1.1 client for one origin, specialised for what the router sends: one request at a
 * time per connection (no pipelining), a header block and a body known up front, answers framed by
 * content-length, chunked coding or the end of the connection (SSE streams included). It speaks the same
 * dispatch/handler interface as undici's Pool (types.ts), so the relay does not know which it has.
 *
 * Per request: one object (PendingRequest) and one closure (its abort function); the request line,
 * headers and a small body go out as one buffer in one write. Timeouts are deadlines checked by one
 * ticker per pool (no timer per request); body bytes reach the handler as views of the socket's chunks.
 *
 * Connection life: a request takes the most recently idle connection (LIFO: warm, least likely closed by
 * the server), or opens one while under `connections`, or waits in FIFO order. A connection goes back to
 * the idle stack when a response ends cleanly and neither side asked to close; it leaves it after the
 * idle timeout (ours, or the server's Keep-Alive: timeout= minus a safety margin). A request that finds
 * its reused connection closed before any response byte arrived is sent once more on a fresh connection
 * when it is marked idempotent.
 */
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { errors } from 'undici';
import { ParserState, protocolError, ResponseParser, type ResponseSink } from './response-parser.js';
import type { UpstreamDispatcher, UpstreamHandler, UpstreamRequestOptions } from './types.js';

export interface FastPoolOptions {
  /** Most connections to the origin; requests beyond wait (default: unlimited, as undici's Pool). */
  connections?: number | null;
  /** Idle time before a kept-alive connection is closed, when the server gives no Keep-Alive hint (ms). */
  keepAliveTimeout?: number;
  /** Upper bound on a server's Keep-Alive: timeout= hint (ms). */
  keepAliveMaxTimeout?: number;
  /** Subtracted from the server's hint so we never send on a connection it is about to close (ms). */
  keepAliveTimeoutThreshold?: number;
  headersTimeout?: number;
  bodyTimeout?: number;
  connectTimeout?: number;
  /** Largest response header block (and trailer section) in bytes. */
  maxHeaderSize?: number;
}

/** undici's defaults, so that the two clients behave alike when options are left out. */
const DEFAULTS = {
  keepAliveTimeout: 4_000,
  keepAliveMaxTimeout: 600_000,
  keepAliveTimeoutThreshold: 2_000,
  headersTimeout: 300_000,
  bodyTimeout: 300_000,
  connectTimeout: 10_000,
  maxHeaderSize: 16 * 1024,
};

/** Bodies up to this size are copied behind the header block (one buffer, one write); larger ones are written corked. */
const COPY_BODY_LIMIT = 64 * 1024;
const MAX_TICK_MS = 500;
const EMPTY_BUFFER = Buffer.alloc(0);

const enum ReqState {
  Queued,
  Running,
  Done,
}

const enum Timer {
  None,
  Connect,
  Headers,
  Body,
  Idle,
}

const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Field values: HTAB, SP, visible ASCII and obs-text; never CR, LF or NUL (header injection). */
const BAD_HEADER_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
const BAD_PATH = /[^\x21-\x7e\x80-\xff]/;
/** Errors that mean "the connection was already gone", not "the server failed this request". */
const STALE_CODES = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET']);

/** One request: built once, sent once (twice at most: the stale keep-alive retry). */
class PendingRequest {
  state = ReqState.Queued;
  conn: Connection | null = null;
  retried = false;
  /** The request line, headers and (when small) the body. */
  readonly payload: Buffer;
  /** A large body, written after the payload in the same corked write. */
  readonly tail: Buffer | null;
  readonly abort: (err?: Error) => void;

  constructor(
    pool: FastPool,
    readonly handler: UpstreamHandler,
    opts: UpstreamRequestOptions,
    readonly headersTimeout: number,
    readonly bodyTimeout: number,
  ) {
    const method = opts.method;
    if (typeof method !== 'string' || !HEADER_NAME.test(method)) throw new errors.InvalidArgumentError('invalid method');
    const path = opts.path;
    if (typeof path !== 'string' || path === '' || (path[0] !== '/' && path !== '*') || BAD_PATH.test(path)) throw new errors.InvalidArgumentError('invalid path');
    this.noBody = method === 'HEAD';
    this.mayRetry = opts.idempotent ?? (method === 'GET' || method === 'HEAD');
    let body: Buffer | null;
    const b = opts.body;
    if (b === undefined || b === null) body = null;
    else if (typeof b === 'string') body = Buffer.from(b, 'utf8');
    else if (Buffer.isBuffer(b)) body = b;
    else if (b instanceof Uint8Array) body = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
    else throw new errors.NotSupportedError('the fast upstream client takes a Buffer, Uint8Array or string body');

    let head = `${method} ${path} HTTP/1.1\r\n`;
    let hasHost = false;
    const h = opts.headers;
    if (Array.isArray(h)) {
      if ((h.length & 1) !== 0) throw new errors.InvalidArgumentError('headers array must be even');
      for (let i = 0; i < h.length; i += 2) {
        const line = headerLine(h[i]!, h[i + 1]!);
        if (line === HOST) {
          hasHost = true;
          head += `host: ${h[i + 1]}\r\n`;
        } else head += line;
      }
    } else if (h !== undefined && h !== null) {
      for (const name in h) {
        const value = h[name];
        if (value === undefined) continue;
        if (typeof value === 'string') {
          const line = headerLine(name, value);
          if (line === HOST) {
            hasHost = true;
            head += `host: ${value}\r\n`;
          } else head += line;
        } else {
          for (const v of value) {
            const line = headerLine(name, v);
            if (line === HOST) throw new errors.InvalidArgumentError('invalid host header');
            head += line;
          }
        }
      }
    }
    if (!hasHost) head += pool.hostLine;
    head += 'connection: keep-alive\r\n';
    const length = body === null ? 0 : body.length;
    // As undici: methods that carry a body always say how long it is, even when empty.
    if (length > 0 || method === 'POST' || method === 'PUT' || method === 'PATCH') head += `content-length: ${length}\r\n`;
    head += '\r\n';
    if (body !== null && body.length <= COPY_BODY_LIMIT) {
      const out = Buffer.allocUnsafe(head.length + body.length);
      out.write(head, 0, 'latin1');
      body.copy(out, head.length);
      this.payload = out;
      this.tail = null;
    } else {
      this.payload = Buffer.from(head, 'latin1');
      this.tail = body !== null && body.length > 0 ? body : null;
    }
    this.abort = (err?: Error): void => pool.abortRequest(this, err);
  }

  readonly noBody: boolean;
  readonly mayRetry: boolean;

  fail(err: Error): void {
    if (this.state === ReqState.Done) return;
    this.state = ReqState.Done;
    this.conn = null;
    this.handler.onError?.(err);
  }
}

const HOST = '\0host';
const FORBIDDEN_REQUEST_HEADERS = new Set(['connection', 'transfer-encoding', 'keep-alive', 'upgrade', 'expect', 'content-length']);

/** One validated `name: value\r\n` line; HOST for a host header (the caller writes it); '' for headers we set ourselves. */
function headerLine(name: string, value: string): string {
  if (typeof name !== 'string' || !HEADER_NAME.test(name)) throw new errors.InvalidArgumentError(`invalid header name ${JSON.stringify(name)}`);
  if (typeof value !== 'string' || BAD_HEADER_VALUE.test(value)) throw new errors.InvalidArgumentError(`invalid ${name} header`);
  const n = name.length;
  if (n === 4 || n === 6 || n === 7 || n === 10 || n === 14 || n === 17) {
    const lower = name.toLowerCase();
    if (lower === 'host') return HOST;
    // content-length is computed from the body; framing and connection management are ours.
    if (FORBIDDEN_REQUEST_HEADERS.has(lower)) {
      if (lower === 'content-length') return '';
      throw new errors.InvalidArgumentError(`invalid ${lower} header`);
    }
  }
  return `${name}: ${value}\r\n`;
}

class Connection implements ResponseSink {
  readonly socket: Socket;
  readonly parser: ResponseParser;
  req: PendingRequest | null = null;
  /** Responses completed on this connection (0: fresh, so a failure is not a stale keep-alive). */
  served = 0;
  closed = false;
  /** The handler asked for a pause; the socket is paused until resume(). */
  paused = false;
  private socketPaused = false;
  private endedWhilePaused = false;
  private pendingBuf: Buffer | null = null;
  private pendingPos = 0;
  private refed = true;
  /** Deadline bookkeeping read by the pool's ticker. */
  timer = Timer.Connect;
  timeoutMs: number;
  /** performance.now() ms; -1: set at the next tick. */
  deadline = -1;
  /** Body bytes arrived since the last tick (the body timeout is a gap, not a total). */
  activity = false;
  /** How long this connection may stay idle after the current response. */
  idleMs = 0;

  constructor(
    private readonly pool: FastPool,
    host: string,
    port: number,
    connectTimeout: number,
  ) {
    this.parser = new ResponseParser(this, pool.maxHeaderSize);
    this.timeoutMs = connectTimeout;
    if (!(connectTimeout > 0)) this.timer = Timer.None;
    const socket = connect({ host, port, noDelay: true, keepAlive: true, keepAliveInitialDelay: 60_000 });
    this.socket = socket;
    socket.on('connect', this.onSocketConnect);
    socket.on('data', this.onSocketData);
    socket.on('end', this.onSocketEnd);
    socket.on('error', this.onSocketError);
    socket.on('close', this.onSocketClose);
  }

  /** Send a request on this connection (connected or still connecting: net queues the write). */
  assign(req: PendingRequest): void {
    this.req = req;
    req.conn = this;
    req.state = ReqState.Running;
    this.parser.reset(req.noBody);
    if (!this.refed) {
      this.socket.ref();
      this.refed = true;
    }
    if (this.socket.connecting) {
      // Headers timeout starts once connected (the connect timeout runs until then).
    } else this.setTimer(Timer.Headers, req.headersTimeout);
    const socket = this.socket;
    if (req.tail === null) socket.write(req.payload);
    else {
      socket.cork();
      socket.write(req.payload);
      socket.write(req.tail);
      socket.uncork();
    }
  }

  /** Put back on the idle stack: the socket no longer keeps the process alive. */
  parkIdle(): void {
    this.setTimer(Timer.Idle, this.idleMs);
    if (this.refed) {
      this.socket.unref();
      this.refed = false;
    }
  }

  setTimer(kind: Timer, ms: number): void {
    if (!(ms > 0) || !Number.isFinite(ms)) {
      this.timer = Timer.None;
      return;
    }
    this.timer = kind;
    this.timeoutMs = ms;
    this.deadline = -1;
    this.activity = false;
    this.pool.needTick(ms);
  }

  /** The pool's ticker: fire a deadline that has passed. */
  check(now: number): void {
    const kind = this.timer;
    if (kind === Timer.None) return;
    if (this.deadline < 0 || this.activity || this.paused) {
      // Armed since the last tick, body bytes flowed, or the handler holds us back (a slow client is not a slow upstream).
      this.deadline = now + this.timeoutMs;
      this.activity = false;
      return;
    }
    if (now < this.deadline) return;
    switch (kind) {
      case Timer.Connect:
        this.fail(new errors.ConnectTimeoutError(`Connect Timeout Error (attempted address: ${this.pool.origin}, timeout: ${this.timeoutMs}ms)`));
        return;
      case Timer.Headers:
        this.fail(new errors.HeadersTimeoutError('Headers Timeout Error'));
        return;
      case Timer.Body:
        this.fail(new errors.BodyTimeoutError('Body Timeout Error'));
        return;
      default:
        // Idle too long: close quietly.
        this.shutdown();
    }
  }

  // --- socket events (one closure each per connection, not per request) ---

  private readonly onSocketConnect = (): void => {
    const req = this.req;
    if (req !== null) this.setTimer(Timer.Headers, req.headersTimeout);
    else if (this.timer === Timer.Connect) this.timer = Timer.None;
  };

  private readonly onSocketData = (chunk: Buffer): void => {
    if (this.req === null) {
      // Bytes nobody asked for (a response after its end, or an unsolicited one): the connection is unusable.
      this.shutdown();
      return;
    }
    if (this.paused) {
      // Should not happen (the socket is paused), but never lose or reorder bytes.
      this.pendingBuf = this.pendingBuf === null ? chunk : Buffer.concat([this.pendingBuf.subarray(this.pendingPos), chunk]);
      this.pendingPos = 0;
      return;
    }
    this.feed(chunk, 0);
  };

  private readonly onSocketEnd = (): void => {
    if (this.paused) {
      this.endedWhilePaused = true;
      return;
    }
    this.ended();
  };

  private readonly onSocketError = (err: Error): void => {
    this.fail(err);
  };

  private readonly onSocketClose = (): void => {
    this.pool.socketClosed();
    if (!this.closed) this.fail(new errors.SocketError('other side closed'));
  };

  private ended(): void {
    if (this.req !== null && this.parser.finish()) {
      // A close-delimited body is complete.
      this.complete();
      return;
    }
    this.fail(new errors.SocketError('other side closed'));
  }

  // --- parser sink ---

  onHead(status: number, statusText: string, rawHeaders: string[]): boolean {
    const req = this.req!;
    this.setTimer(Timer.Body, req.bodyTimeout);
    const onHeaders = req.handler.onHeaders;
    const ok = onHeaders === undefined ? true : req.handler.onHeaders!(status, rawHeaders, this.resume, statusText);
    if (this.req !== req) return false; // aborted from inside the callback
    if (ok === false) {
      this.paused = true;
      return false;
    }
    return true;
  }

  onBody(chunk: Buffer): boolean {
    const req = this.req!;
    const ok = req.handler.onData === undefined ? true : req.handler.onData(chunk);
    if (this.req !== req) return false;
    if (ok === false) {
      this.paused = true;
      return false;
    }
    return true;
  }

  /** Passed to onHeaders; resumes a paused response (a no-op otherwise). */
  readonly resume = (): void => {
    if (!this.paused || this.req === null || this.closed) return;
    this.paused = false;
    const buf = this.pendingBuf;
    this.pendingBuf = null;
    this.feed(buf ?? EMPTY_BUFFER, buf === null ? 0 : this.pendingPos);
    if (this.paused || this.closed) return;
    if (this.endedWhilePaused) {
      this.endedWhilePaused = false;
      this.ended();
      return;
    }
    if (this.socketPaused) {
      this.socketPaused = false;
      this.socket.resume();
    }
  };

  private feed(buf: Buffer, pos: number): void {
    const req = this.req!;
    const parser = this.parser;
    this.activity = true;
    let at: number;
    try {
      at = parser.execute(buf, pos);
    } catch (err) {
      // A handler callback threw: the request fails with that error.
      if (this.req === req) this.fail(err as Error);
      return;
    }
    if (this.req !== req) return;
    if (at < 0) {
      this.fail(parser.error!);
      return;
    }
    if (parser.state === ParserState.Done) {
      if (at < buf.length) {
        this.fail(protocolError('bytes after the end of the response', 'INVALID_CONSTANT'));
        return;
      }
      this.complete();
      return;
    }
    if (this.paused) {
      if (at < buf.length) {
        this.pendingBuf = buf;
        this.pendingPos = at;
      }
      if (!this.socketPaused) {
        this.socketPaused = true;
        this.socket.pause();
      }
    }
  }

  private complete(): void {
    const req = this.req!;
    const parser = this.parser;
    this.req = null;
    req.conn = null;
    req.state = ReqState.Done;
    this.served++;
    this.timer = Timer.None;
    let reuse = parser.keepAlive && !this.closed && !this.endedWhilePaused && !(this.pool.closing && this.pool.queued === 0);
    if (reuse) {
      const hint = parser.keepAliveTimeoutMs;
      this.idleMs = hint < 0 ? this.pool.keepAliveTimeout : Math.min(hint - this.pool.keepAliveTimeoutThreshold, this.pool.keepAliveMaxTimeout);
      if (this.idleMs <= 0) reuse = false;
    }
    // Release before telling the handler, so a request it dispatches from onComplete can take this connection.
    if (reuse) this.pool.release(this);
    else this.shutdown();
    this.pool.finished();
    req.handler.onComplete?.(parser.trailers);
  }

  /** The request in flight (if any) fails with err, or goes once more on a fresh connection; the connection closes. */
  fail(err: Error): void {
    const req = this.req;
    const stale = req !== null && req.mayRetry && !req.retried && this.served > 0 && !this.parser.started && STALE_CODES.has((err as { code?: string }).code ?? '');
    this.req = null;
    this.shutdown();
    if (req === null) return;
    if (stale) {
      req.retried = true;
      req.conn = null;
      this.pool.retry(req);
      return;
    }
    req.fail(err);
    this.pool.finished();
  }

  /** Abort the running request: destroy the socket so the upstream sees the cancel. */
  abortCurrent(err: Error): void {
    const req = this.req;
    this.req = null;
    this.shutdown();
    if (req !== null) {
      req.fail(err);
      this.pool.finished();
    }
  }

  shutdown(): void {
    if (this.closed) return;
    this.closed = true;
    this.timer = Timer.None;
    this.pool.detach(this);
    this.socket.destroy();
    this.pool.pump();
  }
}

export class FastPool implements UpstreamDispatcher {
  readonly origin: string;
  readonly hostLine: string;
  readonly maxHeaderSize: number;
  readonly keepAliveTimeout: number;
  readonly keepAliveMaxTimeout: number;
  readonly keepAliveTimeoutThreshold: number;
  closing = false;
  private destroyed = false;
  private readonly host: string;
  private readonly port: number;
  private readonly maxConnections: number;
  private readonly headersTimeout: number;
  private readonly bodyTimeout: number;
  private readonly connectTimeout: number;
  private readonly conns = new Set<Connection>();
  /** Idle connections, most recently used last. */
  private readonly idle: Connection[] = [];
  private queue: PendingRequest[] = [];
  private queueHead = 0;
  /** Requests dispatched and not yet finished (queued or running). */
  private active = 0;
  private openSockets = 0;
  private ticker: NodeJS.Timeout | undefined;
  private tickMs = MAX_TICK_MS;
  private closeWaiters: (() => void)[] = [];
  private destroyWaiters: (() => void)[] = [];

  constructor(origin: string | URL, options: FastPoolOptions = {}) {
    const url = typeof origin === 'string' ? new URL(origin) : origin;
    if (url.protocol !== 'http:') throw new errors.InvalidArgumentError(`the fast upstream client speaks plain http only, not ${url.protocol}`);
    this.origin = url.origin;
    this.host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    this.port = url.port === '' ? 80 : Number(url.port);
    this.hostLine = `host: ${url.host}\r\n`;
    this.maxConnections = options.connections == null || options.connections <= 0 ? Infinity : options.connections;
    this.keepAliveTimeout = options.keepAliveTimeout ?? DEFAULTS.keepAliveTimeout;
    this.keepAliveMaxTimeout = options.keepAliveMaxTimeout ?? DEFAULTS.keepAliveMaxTimeout;
    this.keepAliveTimeoutThreshold = options.keepAliveTimeoutThreshold ?? DEFAULTS.keepAliveTimeoutThreshold;
    this.headersTimeout = options.headersTimeout ?? DEFAULTS.headersTimeout;
    this.bodyTimeout = options.bodyTimeout ?? DEFAULTS.bodyTimeout;
    this.connectTimeout = options.connectTimeout ?? DEFAULTS.connectTimeout;
    this.maxHeaderSize = options.maxHeaderSize ?? DEFAULTS.maxHeaderSize;
  }

  /** Open connections (idle or busy), for tests and metrics. */
  get connections(): number {
    return this.conns.size;
  }

  get idleConnections(): number {
    return this.idle.length;
  }

  get queued(): number {
    return this.queue.length - this.queueHead;
  }

  dispatch(opts: UpstreamRequestOptions, handler: UpstreamHandler): boolean {
    let req: PendingRequest;
    try {
      if (this.destroyed) throw new errors.ClientDestroyedError();
      if (this.closing) throw new errors.ClientClosedError();
      req = new PendingRequest(this, handler, opts, opts.headersTimeout ?? this.headersTimeout, opts.bodyTimeout ?? this.bodyTimeout);
    } catch (err) {
      // As undici: a request refused up front is reported through the handler.
      if (handler.onError === undefined) throw err;
      handler.onError(err as Error);
      return false;
    }
    this.active++;
    handler.onConnect?.(req.abort);
    if (req.state !== ReqState.Queued) return true; // aborted from onConnect
    const conn = this.idle.pop();
    if (conn !== undefined) {
      conn.assign(req);
      return true;
    }
    if (this.conns.size < this.maxConnections) {
      this.open().assign(req);
      return true;
    }
    this.queue.push(req);
    return false;
  }

  close(): Promise<void> {
    this.closing = true;
    if (this.active === 0) {
      this.closeIdle();
      return Promise.resolve();
    }
    return new Promise((resolve) => this.closeWaiters.push(resolve));
  }

  destroy(err?: Error | null): Promise<void> {
    this.closing = true;
    this.destroyed = true;
    const reason = err ?? new errors.ClientDestroyedError();
    const queued = this.queue.slice(this.queueHead);
    this.queue = [];
    this.queueHead = 0;
    for (const r of queued) {
      if (r.state !== ReqState.Queued) continue;
      r.fail(reason);
      this.finished();
    }
    for (const c of [...this.conns]) {
      if (c.req !== null) c.abortCurrent(reason);
      else c.shutdown();
    }
    this.stopTicker();
    if (this.openSockets === 0) return Promise.resolve();
    return new Promise((resolve) => this.destroyWaiters.push(resolve));
  }

  // --- for Connection and PendingRequest ---

  abortRequest(req: PendingRequest, err: Error | undefined): void {
    if (req.state === ReqState.Done) return;
    const reason = err ?? new errors.RequestAbortedError();
    if (req.state === ReqState.Queued) {
      // Left in the queue array as Done; pump() skips it.
      req.fail(reason);
      this.finished();
      return;
    }
    req.conn!.abortCurrent(reason);
  }

  /** A connection finished a response and may carry another: give it the next request or park it. */
  release(conn: Connection): void {
    const next = this.dequeue();
    if (next !== undefined) {
      conn.assign(next);
      return;
    }
    conn.parkIdle();
    this.idle.push(conn);
  }

  /** The stale keep-alive retry: the request goes first, on a new connection. */
  retry(req: PendingRequest): void {
    req.state = ReqState.Queued;
    if (this.destroyed) {
      req.fail(new errors.ClientDestroyedError());
      this.finished();
      return;
    }
    if (this.conns.size < this.maxConnections) this.open().assign(req);
    else this.queue.splice(this.queueHead, 0, req);
  }

  /** Start queued requests on idle or new connections while there is room. */
  pump(): void {
    while (!this.destroyed && this.queueHead < this.queue.length) {
      if (this.idle.length === 0 && this.conns.size >= this.maxConnections) return;
      const next = this.dequeue();
      if (next === undefined) return;
      (this.idle.pop() ?? this.open()).assign(next);
    }
  }

  detach(conn: Connection): void {
    this.conns.delete(conn);
    const i = this.idle.lastIndexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
    if (this.conns.size === 0) this.stopTicker();
  }

  socketClosed(): void {
    this.openSockets--;
    if (this.openSockets === 0 && this.destroyWaiters.length > 0) {
      const waiters = this.destroyWaiters;
      this.destroyWaiters = [];
      for (const w of waiters) w();
    }
  }

  /** A request is over (completed, failed or aborted). */
  finished(): void {
    this.active--;
    if (this.active === 0 && this.closing && this.closeWaiters.length > 0) {
      this.closeIdle();
      const waiters = this.closeWaiters;
      this.closeWaiters = [];
      for (const w of waiters) w();
    }
  }

  /** Make sure deadlines of `ms` are checked often enough (an eighth of the shortest timeout, at most every 500 ms). */
  needTick(ms: number): void {
    const want = Math.max(1, Math.min(MAX_TICK_MS, Math.floor(ms / 8)));
    if (this.ticker !== undefined) {
      if (want >= this.tickMs) return;
      clearInterval(this.ticker);
    }
    this.tickMs = want;
    this.ticker = setInterval(this.tick, want);
    this.ticker.unref();
  }

  private readonly tick = (): void => {
    const now = performance.now();
    for (const c of this.conns) c.check(now);
  };

  private stopTicker(): void {
    if (this.ticker !== undefined) {
      clearInterval(this.ticker);
      this.ticker = undefined;
    }
  }

  private open(): Connection {
    const conn = new Connection(this, this.host, this.port, this.connectTimeout);
    this.openSockets++;
    this.conns.add(conn);
    if (conn.timer !== Timer.None) this.needTick(this.connectTimeout);
    return conn;
  }

  private dequeue(): PendingRequest | undefined {
    while (this.queueHead < this.queue.length) {
      const r = this.queue[this.queueHead]!;
      this.queue[this.queueHead] = undefined as unknown as PendingRequest;
      this.queueHead++;
      if (r.state !== ReqState.Queued) continue; // aborted while waiting
      if (this.queueHead === this.queue.length) {
        this.queue.length = 0;
        this.queueHead = 0;
      } else if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
        this.queue = this.queue.slice(this.queueHead);
        this.queueHead = 0;
      }
      return r;
    }
    this.queue.length = 0;
    this.queueHead = 0;
    return undefined;
  }

  private closeIdle(): void {
    for (const c of [...this.idle]) c.shutdown();
  }
}
