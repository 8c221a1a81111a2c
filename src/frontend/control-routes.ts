/**
 * Public, health and admin routes (SGLang router's set): /health, /liveness, /readiness, /health_generate,
 * /v1/models, /get_model_info, /get_server_info (forwarded to a healthy worker), /add_worker,
 * /remove_worker, /list_workers, /flush_cache (fan-out), /get_loads.
 */
import { request } from 'undici';
import { SwitchyardError } from '../errors.js';
import { Exchange, type HttpRequest, type HttpResponse, type TemplatedApp } from './http.js';
import { checkBearer } from './auth.js';
import { normalizeWorkerUrl, type WorkerEntry } from '../workers/registry.js';
import { Field } from '../actors/worker-table.js';
import type { RouterContext } from './context.js';

export function registerControlRoutes(app: TemplatedApp, ctx: RouterContext): void {
  app.get('/liveness', (res) => new Exchange(res).json(200, { status: 'alive' }));
  app.get('/health', (res) => new Exchange(res).json(200, { status: 'ok' }));
  app.get('/readiness', (res) => {
    const ex = new Exchange(res);
    // Ready = at least one worker that can take traffic now: healthy AND its breaker not open.
    let healthy = 0;
    for (const w of ctx.registry.list()) if (ctx.table.isAvailable(w.slot)) healthy++;
    const total = ctx.registry.size;
    if (healthy > 0 && !ctx.shuttingDown) ex.json(200, { status: 'ready', healthy_workers: healthy, total_workers: total });
    else ex.json(503, { status: ctx.shuttingDown ? 'shutting_down' : 'not_ready', healthy_workers: healthy, total_workers: total, error: { code: ctx.shuttingDown ? 'shutting_down' : 'no_healthy_workers', message: ctx.shuttingDown ? 'the router is shutting down' : 'no healthy worker is available' } });
  });

  for (const path of ['/health_generate', '/v1/models', '/get_model_info', '/get_server_info']) {
    app.get(path, (res, req) => forwardGet(ctx, new Exchange(res), path, req.getQuery() ?? ''));
  }

  app.post('/add_worker', (res, req) => {
    const ex = new Exchange(res);
    if (!admin(ctx, ex, req)) return;
    const raw = req.getQuery('url') ?? '';
    const nodeIdRaw = req.getQuery('node_id') ?? '';
    void addWorker(ctx, ex, raw, nodeIdRaw);
  });
  app.post('/remove_worker', (res, req) => {
    const ex = new Exchange(res);
    if (!admin(ctx, ex, req)) return;
    const raw = req.getQuery('url') ?? '';
    if (raw === '') return ex.fail('invalid_worker_url', 'missing ?url= parameter');
    try {
      const entry = ctx.registry.remove(raw);
      ctx.monitor.forget(entry);
      ctx.log.info({ event: 'worker.removed', worker: entry.url }, 'worker removed');
      ex.json(200, { status: 'removed', url: entry.url });
    } catch (err) {
      ex.error(err as SwitchyardError);
    }
  });
  app.get('/list_workers', (res, req) => {
    const ex = new Exchange(res);
    if (!admin(ctx, ex, req)) return;
    ex.json(200, {
      urls: ctx.registry.list().map((w) => w.url),
      workers: ctx.registry.list().map((w) => describeWorker(ctx, w)),
    });
  });
  app.get('/get_loads', (res, req) => {
    const ex = new Exchange(res);
    if (!admin(ctx, ex, req)) return;
    ex.json(200, {
      workers: ctx.registry.list().map((w) => ({ worker: w.url, load: ctx.table.inFlight(w.slot), ...describeWorker(ctx, w) })),
    });
  });
  app.post('/flush_cache', (res, req) => {
    const ex = new Exchange(res);
    if (!admin(ctx, ex, req)) return;
    void flushAll(ctx, ex);
  });
}

function admin(ctx: RouterContext, ex: Exchange, req: HttpRequest): boolean {
  const key = ctx.settings.apiKey;
  if (key !== undefined && !checkBearer(req.getHeader('authorization'), key)) {
    ex.fail('unauthorized', 'missing or invalid API key (Authorization: Bearer <key>)', { 'www-authenticate': 'Bearer' });
    return false;
  }
  return true;
}

export function describeWorker(ctx: RouterContext, w: WorkerEntry): Record<string, unknown> {
  const t = ctx.table;
  const h = ctx.monitor.healthOf(w);
  return {
    url: w.url,
    node_id: w.nodeId,
    healthy: h.healthy,
    in_flight_requests: t.inFlight(w.slot),
    in_flight_tokens: t.inFlightTokens(w.slot),
    reported_queue: t.get(w.slot, Field.ReportedQueue),
    reported_running: t.get(w.slot, Field.ReportedRunning),
    processed: t.get(w.slot, Field.Processed),
    consecutive_failures: h.consecutiveFailures,
    last_error: h.lastError ?? null,
  };
}

async function addWorker(ctx: RouterContext, ex: Exchange, raw: string, nodeIdRaw: string): Promise<void> {
  if (raw === '') return ex.fail('invalid_worker_url', 'missing ?url= parameter');
  let host: string;
  try {
    host = normalizeWorkerUrl(raw).host;
  } catch (err) {
    return ex.error(err as SwitchyardError);
  }
  const allowed = ctx.settings.allowedWorkerHosts;
  if (!allowed.includes('*') && !allowed.includes(host)) {
    return ex.fail('forbidden', `host ${host} is not in --allowed-worker-hosts`);
  }
  let nodeId: number | undefined;
  if (nodeIdRaw !== '') {
    nodeId = Number(nodeIdRaw);
    if (!Number.isInteger(nodeId) || nodeId < 0) return ex.fail('invalid_request', 'node_id must be a non-negative integer');
  }
  let entry: WorkerEntry;
  try {
    entry = ctx.registry.add(raw, nodeId);
  } catch (err) {
    return ex.error(err as SwitchyardError);
  }
  const healthy = await ctx.monitor.admit(entry);
  ctx.log.info({ event: 'worker.added', worker: entry.url, node_id: entry.nodeId, healthy }, 'worker added');
  ex.json(200, { status: 'added', url: entry.url, node_id: entry.nodeId, healthy });
}

/** GET forwarded to one healthy worker (the least loaded), answered with its status and body. */
async function forwardGet(ctx: RouterContext, ex: Exchange, path: string, query: string): Promise<void> {
  let target: WorkerEntry | undefined;
  let best = Infinity;
  for (const w of ctx.registry.list()) {
    if (!ctx.table.isAvailable(w.slot)) continue;
    const load = ctx.table.load(w.slot);
    if (load < best) {
      best = load;
      target = w;
    }
  }
  if (target === undefined) return ex.fail('no_healthy_workers', 'no healthy worker is available');
  try {
    const res = await request(target.url + path + (query !== '' ? `?${query}` : ''), {
      method: 'GET',
      dispatcher: target.pool,
      headersTimeout: Math.min(ctx.settings.requestTimeoutMs, 30_000),
      bodyTimeout: Math.min(ctx.settings.requestTimeoutMs, 30_000),
    });
    const body = await res.body.text();
    const ct = res.headers['content-type'];
    ex.text(res.statusCode, body, typeof ct === 'string' ? ct : 'application/json', { 'X-SGLang-Worker': target.url });
  } catch (err) {
    ex.error(new SwitchyardError('upstream_error', `forwarding ${path} to ${target.url} failed: ${(err as Error).message}`));
  }
}

async function flushAll(ctx: RouterContext, ex: Exchange): Promise<void> {
  const results = await Promise.all(
    ctx.registry.list().map(async (w) => {
      try {
        const res = await request(w.url + '/flush_cache', { method: 'POST', dispatcher: w.pool, headersTimeout: 30_000, bodyTimeout: 30_000 });
        await res.body.dump();
        return { url: w.url, status: res.statusCode, ok: res.statusCode < 400 };
      } catch (err) {
        return { url: w.url, status: 0, ok: false, error: (err as Error).message };
      }
    }),
  );
  const failed = results.filter((r) => !r.ok);
  ex.json(failed.length === 0 ? 200 : 502, { status: failed.length === 0 ? 'flushed' : 'partial', workers: results });
}
