/**
 * CORS per --cors-allowed-origins (off when empty; `*` allows any origin): preflight OPTIONS answers and
 * the Access-Control-Allow-Origin header on relayed responses.
 */
import type { HttpRequest, HttpResponse, TemplatedApp } from './http.js';
import { Exchange } from './http.js';

const ALLOW_METHODS = 'GET, POST, PUT, OPTIONS';
const DEFAULT_ALLOW_HEADERS = 'authorization, content-type, x-request-id, traceparent';
const MAX_AGE_SECS = '600';

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
