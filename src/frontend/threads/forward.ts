/**
 * With front-end threads, every route that is not a data route (health, models, admin, traces, /stats,
 * the debug bundle, CORS preflights, 404s and 405s, HEAD) is answered by ONE app: the main thread's control
 * app, listening on a loopback port. Each front end (the main thread's public app too) forwards such a
 * request there over HTTP and relays the answer, so every route answers the same whichever thread the
 * kernel gave the connection to, with the very handlers a single-threaded router uses.
 *
 * Routes that read what data paths report (traces, /stats, the debug bundle) first pass a barrier: every
 * thread hands over its buffered report before the request is forwarded, so a client that got its response
 * and then asks for its trace finds it, whichever threads served the two requests.
 */
import { Pool } from 'undici';
import { SwitchyardError } from '../../errors.js';
import { MAX_BATCH_BODY } from '../../tracking/routes.js';
import { Exchange, parseContentLength, statusLine, type HttpRequest, type HttpResponse, type TemplatedApp } from '../http.js';
import { CLIENT_KEEP_ALIVE_MS } from '../../util/keep-alive.js';

/**
 * The largest body a control route reads (the traces batch query's): a larger one is refused here exactly
 * as that route refuses it (413, connection closed), before it is forwarded.
 */
export const CONTROL_BODY_LIMIT = MAX_BATCH_BODY;

/** Paths whose answers come from reported events: they wait for the barrier. */
const BARRIER_PREFIXES = ['/v1/traces', '/stats', '/admin/'];
/** Hop-by-hop, and the headers the relaying uWS writes itself. */
const DROPPED = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'date', 'uwebsockets', 'upgrade', 'proxy-connection', 'te', 'trailer']);

export interface ForwarderOptions {
  /** The control app's base URL (http://127.0.0.1:PORT). */
  readonly controlUrl: string;
  /** Largest request body relayed. */
  readonly maxBodyBytes: number;
  readonly timeoutMs: number;
  /** Resolves once every thread's buffered report reached the hub. */
  readonly barrier: () => Promise<void>;
  /** True while the router shuts down (a refused forward then answers shutting_down). */
  readonly shuttingDown: () => boolean;
  /** Counted per forwarded request. */
  readonly onForward?: () => void;
}

export interface Forwarder {
  /** The catch-all handler: register it as app.any('/*'). */
  readonly handle: (res: HttpResponse, req: HttpRequest) => void;
  close(): Promise<void>;
}

export function createForwarder(options: ForwarderOptions): Forwarder {
  const pool = new Pool(options.controlUrl, { connections: 8, keepAliveTimeout: CLIENT_KEEP_ALIVE_MS, headersTimeout: options.timeoutMs, bodyTimeout: options.timeoutMs });
  const handle = (res: HttpResponse, req: HttpRequest): void => {
    const ex = new Exchange(res);
    // uWS: the request is valid only now.
    const method = req.getCaseSensitiveMethod();
    const url = req.getUrl();
    const query = req.getQuery() ?? '';
    const headers: Record<string, string> = Object.create(null) as Record<string, string>;
    req.forEach((k, v) => {
      if (DROPPED.has(k)) return;
      headers[k] = k in headers ? `${headers[k]}, ${v}` : v;
    });
    const declared = parseContentLength(req.getHeader('content-length'));
    options.onForward?.();
    ex.readBody(options.maxBodyBytes, declared, (err, body) => {
      if (err !== null) return; // answered by readBody
      const path = query === '' ? url : `${url}?${query}`;
      const go = (): void => void relay(ex, pool, method, path, headers, body, options);
      if (BARRIER_PREFIXES.some((p) => url.startsWith(p))) options.barrier().then(go, go);
      else go();
    });
  };
  return { handle, close: () => pool.close() };
}

async function relay(ex: Exchange, pool: Pool, method: string, path: string, headers: Record<string, string>, body: Buffer, options: ForwarderOptions): Promise<void> {
  if (ex.aborted) return;
  const head = method.toUpperCase() === 'HEAD';
  let status: number;
  let resHeaders: Record<string, string | string[] | undefined>;
  let resBody: Buffer;
  try {
    const r = await pool.request({ method: method as 'GET', path, headers, body: body.length > 0 ? body : undefined });
    status = r.statusCode;
    resHeaders = r.headers;
    resBody = Buffer.from(await r.body.arrayBuffer());
  } catch (err) {
    if (options.shuttingDown()) ex.fail('shutting_down', 'the router is shutting down');
    else ex.error(new SwitchyardError('upstream_error', `the router's control app did not answer: ${(err as Error).message}`));
    return;
  }
  if (ex.aborted || ex.finished) return;
  const res = ex.res;
  res.cork(() => {
    res.writeStatus(statusLine(status));
    for (const [k, v] of Object.entries(resHeaders)) {
      if (v === undefined || DROPPED.has(k)) continue;
      if (Array.isArray(v)) for (const one of v) res.writeHeader(k, one);
      else res.writeHeader(k, v);
    }
    if (head) res.endWithoutBody();
    else res.end(resBody);
  });
  ex.started = true;
  ex.finished = true;
}
