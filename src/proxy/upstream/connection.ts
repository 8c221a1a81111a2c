/**
 * One keep-alive connection of a FastPool: a socket, a response parser, the request in flight (at most
 * one: no pipelining), and the deadlines the pool's ticker checks. Socket event handlers are one closure
 * each per connection, not per request.
 */
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { errors } from 'undici';
import { ParserState, protocolError, ResponseParser, type ResponseSink } from './response-parser.js';
import { ReqState, type PendingRequest } from './request.js';
import { markStaleKeepAlive } from './types.js';

/** What a connection needs from its pool. */
export interface ConnectionOwner {
  readonly origin: string;
  readonly maxHeaderSize: number;
  readonly keepAliveTimeout: number;
  readonly keepAliveMaxTimeout: number;
  readonly keepAliveTimeoutThreshold: number;
  readonly closing: boolean;
  readonly queued: number;
  /** Check deadlines of `ms` often enough. */
  needTick(ms: number): void;
  /** The connection can take another request. */
  release(conn: Connection): void;
  /** Send once more on a fresh connection (the stale keep-alive retry). */
  retry(req: PendingRequest): void;
  /** A request is over. */
  finished(): void;
  /** The connection is closing: forget it. */
  detach(conn: Connection): void;
  /** Start queued requests where there is room. */
  pump(): void;
  socketClosed(): void;
}

const EMPTY_BUFFER = Buffer.alloc(0);
export const enum Timer {
  None,
  Connect,
  Headers,
  Body,
  Idle,
}

/** Errors that mean "the connection was already gone", not "the server failed this request". */
const STALE_CODES = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET']);

export class Connection implements ResponseSink {
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
  /** performance.now() ms when it was last parked idle. */
  private idleSince = 0;

  constructor(
    private readonly pool: ConnectionOwner,
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
    this.idleSince = performance.now();
    this.setTimer(Timer.Idle, this.idleMs);
    if (this.refed) {
      this.socket.unref();
      this.refed = false;
    }
  }

  /**
   * Idle for its whole idle time already? The ticker closes such a connection up to two ticks late, so
   * the pool asks this before reusing one: a connection is never sent on past the idle time that keeps
   * it clear of the server's own idle close.
   */
  idleExpired(now: number): boolean {
    return now - this.idleSince >= this.idleMs;
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
    const reusedClosed = req !== null && this.served > 0 && !this.parser.started && STALE_CODES.has((err as { code?: string }).code ?? '');
    this.req = null;
    this.shutdown();
    if (req === null) return;
    if (reusedClosed && req.mayRetry && !req.retried) {
      req.retried = true;
      req.conn = null;
      this.pool.retry(req);
      return;
    }
    req.fail(reusedClosed ? markStaleKeepAlive(err) : err);
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

  /** Close the connection; `pump`: let queued requests take its place (not when the pool is itself choosing a connection). */
  shutdown(pump = true): void {
    if (this.closed) return;
    this.closed = true;
    this.timer = Timer.None;
    this.pool.detach(this);
    this.socket.destroy();
    if (pump) this.pool.pump();
  }
}

