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
import { performance } from 'node:perf_hooks';
import { errors } from 'undici';
import { Connection, Timer, type ConnectionOwner } from './connection.js';
import { PendingRequest, ReqState, type RequestOwner } from './request.js';
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

const MAX_TICK_MS = 500;
export class FastPool implements UpstreamDispatcher, ConnectionOwner, RequestOwner {
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
    const conn = this.takeIdle();
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
      (this.takeIdle() ?? this.open()).assign(next);
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

  /** The warmest idle connection still inside its idle time; expired ones on the way are closed. */
  private takeIdle(): Connection | undefined {
    let conn = this.idle.pop();
    if (conn === undefined) return undefined;
    const now = performance.now();
    while (conn !== undefined && conn.idleExpired(now)) {
      conn.shutdown(false);
      conn = this.idle.pop();
    }
    return conn;
  }

  private closeIdle(): void {
    for (const c of [...this.idle]) c.shutdown();
  }
}
