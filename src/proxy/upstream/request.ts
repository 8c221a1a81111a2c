/**
 * One upstream request, serialised once: the request line, the validated headers and (when small) the
 * body in a single buffer, so it goes out in one write. Also its state and its abort function (the one
 * closure a request costs).
 */
import { errors } from 'undici';
import type { Connection } from './connection.js';
import type { UpstreamHandler, UpstreamRequestOptions } from './types.js';

/** What a request needs from its pool. */
export interface RequestOwner {
  /** `host: <origin host>\r\n`, written unless the caller gave a host header. */
  readonly hostLine: string;
  abortRequest(req: PendingRequest, err: Error | undefined): void;
}

/** Bodies up to this size are copied behind the header block (one buffer, one write); larger ones are written corked. */
export const COPY_BODY_LIMIT = 64 * 1024;
export const enum ReqState {
  Queued,
  Running,
  Done,
}

const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Field values: HTAB, SP, visible ASCII and obs-text; never CR, LF or NUL (header injection). */
const BAD_HEADER_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
const BAD_PATH = /[^\x21-\x7e\x80-\xff]/;

/** One request: built once, sent once (twice at most: the stale keep-alive retry). */
export class PendingRequest {
  state = ReqState.Queued;
  conn: Connection | null = null;
  retried = false;
  /** The request line, headers and (when small) the body. */
  readonly payload: Buffer;
  /** A large body, written after the payload in the same corked write. */
  readonly tail: Buffer | null;
  readonly abort: (err?: Error) => void;

  constructor(
    owner: RequestOwner,
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
    if (!hasHost) head += owner.hostLine;
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
    this.abort = (err?: Error): void => owner.abortRequest(this, err);
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

