/**
 * Helpers for the upstream client tests: a raw TCP server whose answers the test scripts byte for byte,
 * and a promise around one dispatch that records every handler callback.
 */
import net from 'node:net';
import type { UpstreamDispatcher, UpstreamHandler, UpstreamRequestOptions } from '../../src/proxy/upstream/types.js';

export interface RawRequest {
  /** Request line and headers as received. */
  head: string;
  method: string;
  path: string;
  headers: Record<string, string>;
  body: Buffer;
  /** 0-based index of this request on its connection. */
  index: number;
  /** 0-based index of the connection on the server. */
  connection: number;
}

export interface RawServer {
  port: number;
  origin: string;
  connections: number;
  requests: RawRequest[];
  /** Sockets still open on the server side. */
  open: Set<net.Socket>;
  /** Resolves when the server side of a connection closes. */
  closed: number;
  close(): Promise<void>;
}

/** Script: what to do with each request (write raw bytes, close, stall...). */
export type Script = (socket: net.Socket, req: RawRequest) => void;

/**
 * A server that reads HTTP/1.1 requests (head + content-length body) off each connection and hands each
 * to the script, which answers however it likes on the raw socket.
 */
export async function startRawServer(script: Script): Promise<RawServer> {
  const open = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    const connection = state.connections++;
    open.add(socket);
    socket.on('close', () => {
      open.delete(socket);
      state.closed++;
    });
    socket.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    let index = 0;
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.toString('latin1', 0, end);
        const lines = head.split('\r\n');
        const [method = '', path = ''] = (lines[0] ?? '').split(' ');
        const headers: Record<string, string> = {};
        for (const l of lines.slice(1)) {
          const c = l.indexOf(':');
          headers[l.slice(0, c).toLowerCase()] = l.slice(c + 1).trim();
        }
        const length = Number(headers['content-length'] ?? 0);
        if (buf.length < end + 4 + length) return;
        const body = Buffer.from(buf.subarray(end + 4, end + 4 + length));
        buf = buf.subarray(end + 4 + length);
        const req: RawRequest = { head, method, path, headers, body, index: index++, connection };
        state.requests.push(req);
        script(socket, req);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const state: RawServer = {
    port,
    origin: `http://127.0.0.1:${port}`,
    connections: 0,
    requests: [],
    open,
    closed: 0,
    close: async () => {
      for (const s of open) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return state;
}

export interface Exchange {
  status: number;
  statusText: string;
  rawHeaders: string[];
  body: Buffer;
  chunks: number;
  trailers: string[] | null;
  error: (Error & { code?: string }) | undefined;
  /** Handler callbacks in order (onConnect, onHeaders, onData, onComplete, onError). */
  calls: string[];
}

/** Dispatch one request and resolve when it completes or fails. `extra` may add to the handler. */
export function send(pool: UpstreamDispatcher, opts: Partial<UpstreamRequestOptions> = {}, extra: (h: UpstreamHandler & { abort?: (err?: Error) => void; resume?: () => void }, x: Exchange) => void = () => undefined): Promise<Exchange> {
  return new Promise((resolve) => {
    const x: Exchange = { status: 0, statusText: '', rawHeaders: [], body: Buffer.alloc(0), chunks: 0, trailers: null, error: undefined, calls: [] };
    const parts: Buffer[] = [];
    const h: UpstreamHandler & { abort?: (err?: Error) => void; resume?: () => void } = {
      onConnect(abort) {
        x.calls.push('onConnect');
        h.abort = abort;
      },
      onHeaders(status, raw, resume, text) {
        x.calls.push('onHeaders');
        x.status = status;
        x.statusText = text;
        x.rawHeaders = (raw as (string | Buffer)[]).map(String);
        h.resume = resume;
        return true;
      },
      onData(chunk) {
        x.calls.push('onData');
        x.chunks++;
        parts.push(chunk);
        return true;
      },
      onComplete(trailers) {
        x.calls.push('onComplete');
        x.trailers = trailers === null ? null : (trailers as (string | Buffer)[]).map(String);
        x.body = Buffer.concat(parts);
        resolve(x);
      },
      onError(err) {
        x.calls.push('onError');
        x.error = err;
        x.body = Buffer.concat(parts);
        resolve(x);
      },
    };
    extra(h, x);
    pool.dispatch({ path: '/generate', method: 'POST', headers: { 'content-type': 'application/json' }, body: Buffer.from('{"text":"hi"}'), ...opts }, h);
  });
}

/** Poll until cond() holds (or fail after timeoutMs). */
export async function until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A complete response with a content-length body. */
export function okResponse(body: string, extraHeaders = ''): string {
  return `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extraHeaders}\r\n${body}`;
}
