/**
 * The dispatcher interface the relay talks to: the subset of undici's `Dispatcher.dispatch` with legacy
 * handler callbacks that the router uses. An undici Pool satisfies it, and so does our FastPool.
 */

/** The callbacks undici's core calls natively (its "legacy" handler shape). */
export interface UpstreamHandler {
  /** Called once the request is accepted; `abort` cancels it at any time (the socket is destroyed). */
  onConnect?(abort: (err?: Error) => void): void;
  /** A final (>= 200) response head; `rawHeaders` is [name, value, ...] as sent. False pauses the body. */
  onHeaders?(statusCode: number, rawHeaders: string[] | Buffer[], resume: () => void, statusText: string): boolean;
  /** A piece of the (de-chunked) body; a view the handler may keep. False pauses until resume(). */
  onData?(chunk: Buffer): boolean;
  onComplete?(trailers: string[] | Buffer[] | null): void;
  onError?(err: Error): void;
}

export interface UpstreamRequestOptions {
  path: string;
  method: string;
  /** A header record, or a flat [name, value, ...] list. */
  headers?: Record<string, string | string[] | undefined> | string[] | null;
  body?: Buffer | Uint8Array | string | null;
  /** ms from sending the request to the end of the response head (0 = none). */
  headersTimeout?: number | null;
  /** Longest gap between body bytes, in ms (0 = none). */
  bodyTimeout?: number | null;
  /**
   * The request may be sent again when a reused keep-alive connection turns out to be closed before any
   * byte of the response arrived (defaults to GET/HEAD only, as undici's `idempotent`).
   */
  idempotent?: boolean;
}

export interface UpstreamDispatcher {
  /** Returns false when the dispatcher is saturated (the request is queued). */
  dispatch(options: UpstreamRequestOptions, handler: UpstreamHandler): boolean;
  /** Refuse new requests; resolve once the queued and running ones are done. */
  close(): Promise<void>;
  /** Fail everything now and close every connection. */
  destroy(err?: Error | null): Promise<void>;
}

export type UpstreamClientKind = 'fast' | 'undici';
export const UPSTREAM_CLIENT_KINDS: readonly UpstreamClientKind[] = ['fast', 'undici'];

const STALE_KEEP_ALIVE = Symbol('switchyard.staleKeepAlive');

/**
 * Mark an error as "a reused keep-alive connection was found closed before any byte of the response":
 * the server closed an idle connection as the request went out. It says nothing about the worker's health
 * (the next connection works), so the router must not eject the worker for it.
 */
export function markStaleKeepAlive(err: Error): Error {
  (err as Error & { [STALE_KEEP_ALIVE]?: true })[STALE_KEEP_ALIVE] = true;
  return err;
}

export function isStaleKeepAlive(err: Error): boolean {
  return (err as Error & { [STALE_KEEP_ALIVE]?: true })[STALE_KEEP_ALIVE] === true;
}
