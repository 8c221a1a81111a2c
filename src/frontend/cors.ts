/**
 * CORS per --cors-allowed-origins (off when empty; `*` allows any origin): preflight OPTIONS answers, and
 * the Access-Control-Allow-Origin header on every response the router writes for an allowed origin
 * (relayed answers, streams and the router's own errors alike), so a browser can read error bodies too.
 */
import type { HttpRequest, HttpResponse, ResponseHeaders, TemplatedApp } from './http.js';
import { Exchange, setResponseHeaders } from './http.js';

const ALLOW_METHODS = 'GET, POST, PUT, OPTIONS';
const DEFAULT_ALLOW_HEADERS = 'authorization, content-type, x-request-id, traceparent';
const MAX_AGE_SECS = '600';
const EXPOSE_HEADERS = 'x-request-id, x-sglang-worker';
const ROUTE_METHODS = new Set(['get', 'post', 'put', 'del', 'patch', 'options', 'head', 'connect', 'trace', 'any']);
/** Header lists kept per allowed origin (with `*` any origin is allowed, so the cache is bounded). */
const MAX_CACHED_ORIGINS = 256;
const headerCache = new Map<string, ResponseHeaders>();

/** The headers a response to an allowed origin carries. */
export function corsResponseHeaders(origin: string): ResponseHeaders {
  let h = headerCache.get(origin);
  if (h === undefined) {
    h = [
      ['access-control-allow-origin', origin],
      ['access-control-expose-headers', EXPOSE_HEADERS],
      ['vary', 'origin'],
    ];
    if (headerCache.size < MAX_CACHED_ORIGINS) headerCache.set(origin, h);
  }
  return h;
}

type Handler = (res: HttpResponse, req: HttpRequest) => unknown;

/**
 * The app as route registration sees it: with CORS on, every handler registered through the returned
 * facade first attaches the CORS headers of an allowed Origin to the response (http.ts
 * setResponseHeaders), where Exchange and the relay pick them up for whatever they answer. With CORS off
 * the app itself is returned: no wrapper, no per-request cost.
 */
export function withCorsHeaders(app: TemplatedApp, allowed: readonly string[]): TemplatedApp {
  if (allowed.length === 0) return app;
  const wrap =
    (handler: Handler): Handler =>
    (res, req) => {
      const origin = corsOriginFor(allowed, req.getHeader('origin'));
      if (origin !== '') setResponseHeaders(res, corsResponseHeaders(origin));
      return handler(res, req);
    };
  const facade: TemplatedApp = new Proxy(app, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function') return value;
      if (typeof prop === 'string' && ROUTE_METHODS.has(prop)) {
        return (pattern: string, handler: Handler) => {
          (value as (p: string, h: Handler) => unknown).call(target, pattern, wrap(handler));
          return facade;
        };
      }
      return (value as (...a: unknown[]) => unknown).bind(target);
    },
  });
  return facade;
}

/** The value for Access-Control-Allow-Origin, or '' when the origin is not allowed (or CORS is off). */
export function corsOriginFor(allowed: readonly string[], origin: string): string {
  if (origin === '' || allowed.length === 0) return '';
  for (const a of allowed) if (a === origin || a === '*') return origin;
  return '';
}

/**
 * OPTIONS on the known paths and any other: 204 with the CORS headers for an allowed origin, 403 JSON
 * otherwise. Known paths are registered one by one: uWS prefers an exact path's any() over a wildcard.
 */
export function registerCorsPreflight(app: TemplatedApp, allowed: readonly string[], paths: readonly string[]): void {
  if (allowed.length === 0) return;
  const preflight = (res: HttpResponse, req: HttpRequest): void => {
    const origin = corsOriginFor(allowed, req.getHeader('origin'));
    const requested = req.getHeader('access-control-request-headers');
    if (origin === '') {
      new Exchange(res).fail('forbidden', 'origin not allowed by --cors-allowed-origins', { vary: 'origin' });
      return;
    }
    res.cork(() => {
      res.writeStatus('204 No Content');
      res.writeHeader('access-control-allow-origin', origin);
      res.writeHeader('access-control-allow-methods', ALLOW_METHODS);
      res.writeHeader('access-control-allow-headers', requested !== '' && requested.length <= 1024 ? requested : DEFAULT_ALLOW_HEADERS);
      res.writeHeader('access-control-max-age', MAX_AGE_SECS);
      res.writeHeader('vary', 'origin');
      res.endWithoutBody();
    });
  };
  for (const p of paths) app.options(p, preflight);
  app.options('/*', preflight);
}
