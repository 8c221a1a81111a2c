/**
 * The router's uWS application: data routes, control routes, and JSON errors for wrong methods and
 * unknown routes.
 */
import { createApp, Exchange, responseHeadersOf, writeResponseHeaders, type HttpRequest, type HttpResponse, type TemplatedApp } from './http.js';
import { handleDataRequest } from './data-route.js';
import { registerControlRoutes } from './control-routes.js';
import type { DataPlaneContext, RouterContext } from './context.js';
import { registerCorsPreflight, withCorsHeaders } from './cors.js';
import type { RouteKind } from '../policies/types.js';

/** POST routes forwarded to one worker; text for routing is taken per route kind. */
export const DATA_ROUTES: readonly [string, RouteKind][] = [
  ['/generate', 'generate'],
  ['/v1/chat/completions', 'chat'],
  ['/v1/completions', 'completions'],
  // pass-through data routes of SGLang's server
  ['/v1/embeddings', 'other'],
  ['/v1/rerank', 'other'],
  ['/rerank', 'other'],
  ['/v1/score', 'other'],
  ['/encode', 'other'],
  ['/classify', 'other'],
  ['/v1/classify', 'other'],
  ['/v1/responses', 'other'],
  ['/v1/tokenize', 'other'],
  ['/v1/detokenize', 'other'],
];

const GET_ROUTES = ['/liveness', '/health', '/readiness', '/health_generate', '/v1/models', '/get_model_info', '/get_server_info', '/list_workers', '/get_loads'];
const POST_ROUTES = ['/add_worker', '/remove_worker', '/flush_cache'];

/** The data routes (POST, and PUT for /generate) of one front end, on its data-path context. */
export function registerDataRoutes(app: TemplatedApp, ctx: DataPlaneContext): void {
  for (const [path, kind] of DATA_ROUTES) {
    app.post(path, (res, req) => handleDataRequest(ctx, res, req, kind, path));
    if (path === '/generate') app.put(path, (res, req) => handleDataRequest(ctx, res, req, kind, path));
  }
}

/**
 * The app of a front end with --frontend-threads > 1: its data routes (through the CORS facade, as in
 * createRouterApp), and every other request forwarded to the main thread's control app
 * (src/frontend/threads/forward.ts), whose answers already carry their CORS headers.
 */
export function createDataPlaneApp(ctx: DataPlaneContext, forward: (res: HttpResponse, req: HttpRequest) => void): TemplatedApp {
  const native = createApp();
  registerDataRoutes(withCorsHeaders(native, ctx.settings.corsAllowedOrigins), ctx);
  native.any('/*', forward);
  return native;
}

export function createRouterApp(ctx: RouterContext, extra?: (app: TemplatedApp) => void): TemplatedApp {
  const native = createApp();
  // Every route is registered through the CORS facade, so every answer (errors included) carries the
  // CORS headers of an allowed origin; with CORS off the facade is the app itself.
  const app = withCorsHeaders(native, ctx.settings.corsAllowedOrigins);
  registerDataRoutes(app, ctx);
  registerControlRoutes(app, ctx);
  extra?.(app);
  registerCorsPreflight(app, ctx.settings.corsAllowedOrigins, [...DATA_ROUTES.map(([p]) => p), ...GET_ROUTES, ...POST_ROUTES]);
  // Wrong methods on known routes: 405 with Allow (method-specific handlers take precedence over any()).
  for (const [path] of DATA_ROUTES) methodNotAllowed(app, path, path === '/generate' ? 'POST, PUT' : 'POST');
  for (const path of GET_ROUTES) methodNotAllowed(app, path, 'GET');
  for (const path of POST_ROUTES) methodNotAllowed(app, path, 'POST');
  app.any('/*', (res, req) => {
    if (req.getMethod() === 'head') return headAnswer(res, '404 Not Found', undefined);
    const ex = new Exchange(res);
    ex.fail('not_found', `no route for ${req.getCaseSensitiveMethod()} ${req.getUrl()}`);
  });
  return native;
}

function methodNotAllowed(app: TemplatedApp, path: string, allow: string): void {
  app.any(path, (res, req) => {
    if (req.getMethod() === 'head') return headAnswer(res, '405 Method Not Allowed', allow);
    const ex = new Exchange(res);
    ex.fail('method_not_allowed', `${req.getCaseSensitiveMethod()} is not allowed on ${path}; use ${allow}`, { allow });
  });
}

/** HEAD must be answered without a body (a body would corrupt the client's next response on the connection). */
function headAnswer(res: HttpResponse, status: string, allow: string | undefined): void {
  res.cork(() => {
    res.writeStatus(status);
    res.writeHeader('content-type', 'application/json');
    writeResponseHeaders(res, responseHeadersOf(res));
    if (allow !== undefined) res.writeHeader('allow', allow);
    res.endWithoutBody();
  });
}
