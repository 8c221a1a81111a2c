/**
 * GET /stats and GET /admin/debug/bundle on the router's main port.
 *
 * /stats (seed 002's shape, adapted): request counters, a `routing` section (admission actions and
 * triggers, decisions, cache hits, balance), and percentile windows (1m, 5m, cumulative; overall and per
 * worker) computed in the stats actor. /admin/debug/bundle: everything an operator attaches to a bug
 * report (config with secrets redacted, workers and health, counters, stats, the policy's snapshot,
 * versions, uptime, the raw cumulative HDR histograms). Both require the API key when one is set.
 */
import { readFileSync } from 'node:fs';
import { Exchange, type HttpRequest, type TemplatedApp } from '../frontend/http.js';
import { checkBearer } from '../frontend/auth.js';
import { describeWorker } from '../frontend/control-routes.js';
import { Field } from '../actors/worker-table.js';
import type { RouterContext } from '../frontend/context.js';
import { toSwitchyardError } from '../errors.js';
import { membersOf } from './prometheus.js';
import { ROUTE_LABELS } from './route-labels.js';
import type { RouterMetrics } from './counters.js';
import type { StatsHost } from './stats-host.js';
import type { StatsSnapshot, WindowSnapshot } from './stats-protocol.js';

/** What the routes need from the observability wiring. */
export interface StatsRouteDeps {
  readonly metrics: RouterMetrics;
  readonly stats: StatsHost | undefined;
  /** Wall-clock ms the router started. */
  readonly startedAt: number;
  /** The router's options as parsed (redacted before they are shown). */
  readonly config: Readonly<Record<string, unknown>>;
  /** Extra sections for the bundle (Prometheus URL, OpenTelemetry exporter state). */
  readonly describe: () => Record<string, unknown>;
}

export function registerStatsRoutes(app: TemplatedApp, ctx: RouterContext, deps: StatsRouteDeps): void {
  app.get('/stats', (res, req) => {
    const ex = new Exchange(res);
    if (!authorized(ctx, ex, req)) return;
    buildStats(ctx, deps).then(
      (body) => ex.json(200, body),
      (err: unknown) => ex.error(toSwitchyardError(err)),
    );
  });
  app.get('/admin/debug/bundle', (res, req) => {
    const ex = new Exchange(res);
    if (!authorized(ctx, ex, req)) return;
    buildDebugBundle(ctx, deps).then(
      (body) => ex.json(200, body),
      (err: unknown) => ex.error(toSwitchyardError(err)),
    );
  });
  for (const path of ['/stats', '/admin/debug/bundle']) {
    app.any(path, (res, r) => new Exchange(res).fail('method_not_allowed', `${r.getCaseSensitiveMethod()} is not allowed on ${path}; use GET`, { allow: 'GET' }));
  }
}

function authorized(ctx: RouterContext, ex: Exchange, req: HttpRequest): boolean {
  const key = ctx.settings.apiKey;
  if (key !== undefined && !checkBearer(req.getHeader('authorization'), key)) {
    ex.fail('unauthorized', 'missing or invalid API key (Authorization: Bearer <key>)', { 'www-authenticate': 'Bearer' });
    return false;
  }
  return true;
}

export interface StatsBody {
  readonly generated_at: string;
  readonly uptime_s: number;
  readonly policy: string;
  readonly requests: Record<string, unknown>;
  readonly routing: Record<string, unknown>;
  readonly windows: StatsSnapshot['windows'] | null;
  readonly stats: Record<string, unknown>;
}

export async function buildStats(ctx: RouterContext, deps: StatsRouteDeps): Promise<StatsBody> {
  const m = deps.metrics;
  let snapshot: StatsSnapshot | null = null;
  let error: string | undefined;
  if (deps.stats !== undefined) {
    try {
      snapshot = await deps.stats.snapshot(membersOf(ctx));
    } catch (err) {
      error = err instanceof Error ? err.message : String(err);
    }
  }
  const c = ctx.counters;
  const byRoute: Record<string, number> = {};
  ROUTE_LABELS.forEach((r, i) => (byRoute[r] = m.requests[i] as number));
  const admission = m.admission.snapshot();
  const percentages: Record<string, number> = {};
  for (const [a, n] of Object.entries(admission.actions)) percentages[a] = admission.total > 0 ? Math.round((n / admission.total) * 10000) / 100 : 0;
  let decisions = 0;
  for (const w of ctx.registry.list()) decisions += m.decisionsFor(w);
  const oneMinute: WindowSnapshot | undefined = snapshot?.windows['1m'];
  return {
    generated_at: new Date().toISOString(),
    uptime_s: Math.round((Date.now() - deps.startedAt) / 10) / 100,
    policy: ctx.policy.name,
    requests: { total: c.requests, completed: c.completed, failed: c.failed, aborted: c.aborted, active: c.active, retries: c.retries, by_route: byRoute },
    routing: {
      policy: ctx.policy.name,
      // Admission (size-aware classing): zeros until admission reports through metrics.admission.
      total_requests: admission.total,
      actions: admission.actions,
      action_percentages: percentages,
      triggers: admission.triggers,
      by_action: admission.by_action,
      decisions: { total: decisions, cache_hits: m.cacheHits, cache_misses: m.cacheMisses, load_balancing_events: m.loadBalancingEvents },
      balance: oneMinute === undefined ? null : { window: '1m', ...oneMinute.balance },
    },
    windows: snapshot === null ? null : snapshot.windows,
    stats: {
      enabled: deps.stats !== undefined,
      available: deps.stats?.available ?? false,
      ...(snapshot === null ? {} : { slice_seconds: snapshot.slice_seconds, hdr: snapshot.hdr, samples: snapshot.samples }),
      ...(error === undefined ? {} : { error }),
    },
  };
}

export async function buildDebugBundle(ctx: RouterContext, deps: StatsRouteDeps): Promise<Record<string, unknown>> {
  const [stats, policy, checkpoint] = await Promise.all([
    buildStats(ctx, deps),
    ctx.policy.snapshot().catch((err: unknown) => ({ error: err instanceof Error ? err.message : String(err) })),
    deps.stats === undefined ? Promise.resolve(null) : deps.stats.checkpoint().catch(() => deps.stats?.latestCheckpoint ?? null),
  ]);
  const m = deps.metrics;
  return {
    generated_at: new Date().toISOString(),
    uptime_s: Math.round((Date.now() - deps.startedAt) / 10) / 100,
    pid: process.pid,
    versions: versions(),
    config: redactConfig(deps.config),
    workers: ctx.registry.list().map((w) => ({ ...describeWorker(ctx, w), breaker_state: ctx.table.get(w.slot, Field.Breaker), load: ctx.table.load(w.slot), decisions: m.decisionsFor(w) })),
    counters: {
      ...ctx.counters,
      errors: m.errorEntries().map(([route, type, n]) => ({ route: ROUTE_LABELS[route], error_type: type, count: n })),
      retries_exhausted: m.retriesExhausted,
      cache_hits: m.cacheHits,
      cache_misses: m.cacheMisses,
      load_balancing_events: m.loadBalancingEvents,
    },
    stats,
    policy,
    actors: { stats: deps.stats?.actor.stats() ?? null },
    // Raw cumulative HDR histograms (encodeIntoCompressedBase64, microseconds) for offline analysis.
    hdr_checkpoint: checkpoint,
    process: { memory: process.memoryUsage(), resource: process.resourceUsage(), uptime_s: process.uptime() },
    ...deps.describe(),
  };
}

/** Keys (separators removed) whose values are secrets: api keys, passwords, auth/access tokens; not e.g. kvBytesPerToken. */
const SECRET_KEY = /(apikey|secret|passw(?:or)?d|credential|authorization|bearer|privatekey|accesskey|(?:auth|access|api|session|refresh|bearer|id)token)/i;

/** Options with secrets replaced and credentials stripped from URLs. */
export function redactConfig(config: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(config)) {
    const flat = k.replace(/[-_]/g, '');
    if (SECRET_KEY.test(flat)) out[k] = v === undefined || v === null || v === '' ? v : '[redacted]';
    else out[k] = redactValue(v);
  }
  return out;
}

function redactValue(v: unknown): unknown {
  if (typeof v === 'string') return stripCredentials(v);
  if (Array.isArray(v)) return v.map(redactValue);
  if (v !== null && typeof v === 'object') return redactConfig(v as Record<string, unknown>);
  return v;
}

function stripCredentials(s: string): string {
  if (!s.includes('@') || !s.includes('://')) return s;
  return s.replace(/(\w+:\/\/)[^/@\s]*@/g, '$1[redacted]@');
}

let cachedVersions: Record<string, unknown> | undefined;

function versions(): Record<string, unknown> {
  if (cachedVersions !== undefined) return cachedVersions;
  const readVersion = (rel: string): string | null => {
    try {
      return (JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { version?: string }).version ?? null;
    } catch {
      return null;
    }
  };
  // dist/src/metrics/routes.js -> the package root is three levels up.
  const deps: Record<string, string | null> = {};
  for (const name of ['uWebSockets.js', 'undici', 'piscina', 'hdr-histogram-js', 'msgpackr', 'pino']) {
    deps[name] = readVersion(`../../../node_modules/${name}/package.json`);
  }
  cachedVersions = {
    switchyard: readVersion('../../../package.json'),
    node: process.version,
    v8: process.versions.v8,
    uv: process.versions.uv,
    platform: `${process.platform}-${process.arch}`,
    dependencies: deps,
  };
  return cachedVersions;
}
