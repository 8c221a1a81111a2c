/**
 * The Prometheus exposition (text format 0.0.4) on its own port (--prometheus-host/--prometheus-port,
 * a separate uWS app, GET /metrics), with sgl-router's metric names and labels.
 *
 * Counters and gauges come from the front end's own numbers (RouterMetrics, RouterCounters, the shared
 * worker table), read at scrape time; the histograms (request duration, TTFT, ITL, TPOT) are rendered by
 * the stats actor from its fixed buckets, so a scrape costs the front end one message and a string join.
 * A metric the router cannot know yet (cache hits before cache_aware, admission before size-aware
 * admission) is still exported, at 0, with its HELP text.
 */
import { Field } from '../actors/worker-table.js';
import { BREAKER_STATE_NAMES, BREAKER_TRANSITIONS } from '../workers/breaker.js';
import { createApp, Exchange, listen, closeListenSocket, type ListenSocket } from '../frontend/http.js';
import type { RouterContext } from '../frontend/context.js';
import type { Logger } from '../util/log.js';
import type { RouterMetrics } from './counters.js';
import { labels, PROM_CONTENT_TYPE, PromWriter } from './prom-text.js';
import { HISTOGRAM_HELP, renderHistogramFamilies } from './histogram-families.js';
import { ROUTE_LABELS } from './route-labels.js';
import type { StatsMember } from './stats-protocol.js';

/** The parts of the router the exposition reads. */
export type MetricsSource = Pick<RouterContext, 'registry' | 'table' | 'counters' | 'policy' | 'breakers'>;

export function membersOf(src: Pick<RouterContext, 'registry'>): StatsMember[] {
  return src.registry.list().map((w) => ({ url: w.url, nodeId: w.nodeId }));
}

/**
 * The whole exposition. `histograms` is the stats actor's text (renderHistogramFamilies); when the actor
 * is off or did not answer, pass undefined and the histogram families are written with zero counts.
 */
export function renderMetrics(src: MetricsSource, m: RouterMetrics, histograms: string | undefined): string {
  const w = new PromWriter();
  const workers = src.registry.list();
  const t = src.table;

  w.family('sgl_router_requests_total', 'counter', 'Total number of requests by route');
  ROUTE_LABELS.forEach((route, i) => w.sample('sgl_router_requests_total', labels(['route', route]), m.requests[i] as number));

  w.family('sgl_router_request_errors_total', 'counter', 'Total number of request errors by route and error type');
  for (const [i, type, n] of m.errorEntries()) {
    w.sample('sgl_router_request_errors_total', labels(['route', ROUTE_LABELS[i] as string], ['error_type', type]), n);
  }

  w.family('sgl_router_retries_total', 'counter', 'Total number of request retries');
  w.sample('sgl_router_retries_total', '', src.counters.retries);
  w.family('sgl_router_retries_exhausted_total', 'counter', 'Total number of requests that failed on their last allowed attempt (every retry used)');
  w.sample('sgl_router_retries_exhausted_total', '', m.retriesExhausted);

  w.family('sgl_router_cb_state', 'gauge', 'Circuit breaker state per worker (0=closed, 1=open, 2=half_open)');
  for (const e of workers) w.sample('sgl_router_cb_state', labels(['worker', e.url]), t.get(e.slot, Field.Breaker));

  // sgl-router's breaker counters: every possible transition per worker (0 until it happens, and with
  // --disable-circuit-breaker), and the outcomes the breaker counted.
  w.family('sgl_router_cb_state_transitions_total', 'counter', 'Total number of circuit breaker state transitions by worker');
  for (const e of workers) {
    const counts = src.breakers?.counts(e.ref);
    for (const [from, to] of BREAKER_TRANSITIONS) {
      w.sample('sgl_router_cb_state_transitions_total', labels(['worker', e.url], ['from', BREAKER_STATE_NAMES[from]], ['to', BREAKER_STATE_NAMES[to]]), counts?.transitions(from, to) ?? 0);
    }
  }
  w.family('sgl_router_cb_outcomes_total', 'counter', 'Total number of circuit breaker outcomes by worker and outcome type (success/failure)');
  for (const e of workers) {
    const counts = src.breakers?.counts(e.ref);
    w.sample('sgl_router_cb_outcomes_total', labels(['worker', e.url], ['outcome', 'success']), counts?.successes ?? 0);
    w.sample('sgl_router_cb_outcomes_total', labels(['worker', e.url], ['outcome', 'failure']), counts?.failures ?? 0);
  }

  let available = 0;
  let maxLoad = 0;
  let minLoad = Infinity;
  for (const e of workers) {
    if (!t.isAvailable(e.slot)) continue;
    available++;
    const load = t.load(e.slot);
    if (load > maxLoad) maxLoad = load;
    if (load < minLoad) minLoad = load;
  }
  if (available === 0) minLoad = 0;

  w.family('sgl_router_active_workers', 'gauge', 'Number of workers currently available for routing (healthy, breaker not open)');
  w.sample('sgl_router_active_workers', '', available);

  w.family('sgl_router_worker_health', 'gauge', 'Worker health status (1=healthy, 0=unhealthy)');
  for (const e of workers) w.sample('sgl_router_worker_health', labels(['worker', e.url]), t.get(e.slot, Field.Healthy));

  w.family('sgl_router_worker_load', 'gauge', "Current load on each worker: the router's in-flight requests or the worker's reported queue + running, whichever is larger");
  for (const e of workers) w.sample('sgl_router_worker_load', labels(['worker', e.url]), t.load(e.slot));

  w.family('sgl_router_running_requests', 'gauge', 'Number of running requests per worker (in flight through this router)');
  for (const e of workers) w.sample('sgl_router_running_requests', labels(['worker', e.url]), t.inFlight(e.slot));

  w.family('sgl_router_processed_requests_total', 'counter', 'Total requests completed successfully by each worker');
  for (const e of workers) w.sample('sgl_router_processed_requests_total', labels(['worker', e.url]), t.get(e.slot, Field.Processed));

  w.family('sgl_router_policy_decisions_total', 'counter', 'Total routing policy decisions by policy and worker');
  const policy = src.policy.name;
  for (const e of workers) w.sample('sgl_router_policy_decisions_total', labels(['policy', policy], ['worker', e.url]), m.decisionsFor(e));

  w.family('sgl_router_cache_hits_total', 'counter', 'Total cache hits (cache-aware decisions that followed a prefix match)');
  w.sample('sgl_router_cache_hits_total', '', m.cacheHits);
  w.family('sgl_router_cache_misses_total', 'counter', 'Total cache misses (cache-aware decisions without a good enough prefix match)');
  w.sample('sgl_router_cache_misses_total', '', m.cacheMisses);

  w.family('sgl_router_tree_size', 'gauge', 'Current tree size (characters) for cache-aware routing per worker');
  for (const e of workers) w.sample('sgl_router_tree_size', labels(['worker', e.url]), m.treeSize(e.url));

  w.family('sgl_router_load_balancing_events_total', 'counter', 'Total load balancing trigger events (cache-aware imbalance branch)');
  w.sample('sgl_router_load_balancing_events_total', '', m.loadBalancingEvents);

  w.family('sgl_router_max_load', 'gauge', 'Maximum worker load among available workers');
  w.sample('sgl_router_max_load', '', maxLoad);
  w.family('sgl_router_min_load', 'gauge', 'Minimum worker load among available workers');
  w.sample('sgl_router_min_load', '', minLoad);

  w.family('sgl_router_admission_total', 'counter', 'Size-aware admission decisions by action (single / multi GPU pool) and trigger');
  for (const [action, trigger, n] of m.admission.entries()) w.sample('sgl_router_admission_total', labels(['action', action], ['trigger', trigger]), n);

  w.raw(histograms ?? renderHistogramFamilies([], membersOf(src).map((x) => ({ ...x, ttft: undefined, itl: undefined, tpot: undefined }))));
  return w.text();
}

/** The histogram families with HELP and TYPE but no series (the stats actor could not answer). */
export function emptyHistogramFamilies(): string {
  const w = new PromWriter();
  w.family('sgl_router_request_duration_seconds', 'histogram', HISTOGRAM_HELP.duration);
  w.family('sgl_router_ttft_seconds', 'histogram', HISTOGRAM_HELP.ttft);
  w.family('sgl_router_inter_token_latency_seconds', 'histogram', HISTOGRAM_HELP.itl);
  w.family('sgl_router_tpot_seconds', 'histogram', HISTOGRAM_HELP.tpot);
  return w.text();
}

export interface PrometheusServer {
  readonly host: string;
  readonly port: number;
  readonly url: string;
  close(): void;
}

/**
 * Serve `render()` at GET /metrics on its own uWS app. A port that cannot be bound is logged and the
 * router runs on without metrics (returns undefined): the data plane never depends on the scrape port.
 */
export async function startPrometheusServer(host: string, port: number, render: () => Promise<string>, log: Logger): Promise<PrometheusServer | undefined> {
  const app = createApp();
  app.get('/metrics', (res) => {
    const ex = new Exchange(res);
    render().then(
      (text) => ex.text(200, text, PROM_CONTENT_TYPE),
      (err: unknown) => {
        log.error({ err }, 'metrics render failed');
        ex.fail('internal_error', `metrics render failed: ${err instanceof Error ? err.message : String(err)}`);
      },
    );
  });
  app.any('/metrics', (res, req) => new Exchange(res).fail('method_not_allowed', `${req.getCaseSensitiveMethod()} is not allowed on /metrics; use GET`, { allow: 'GET' }));
  app.any('/*', (res, req) => new Exchange(res).fail('not_found', `no route for ${req.getCaseSensitiveMethod()} ${req.getUrl()} (metrics are at GET /metrics)`));
  let socket: ListenSocket;
  let bound: number;
  try {
    ({ socket, port: bound } = await listen(app, host, port));
  } catch (err) {
    log.warn({ event: 'metrics.listen_failed', host, port, err: (err as Error).message }, `Prometheus metrics disabled: cannot listen on ${host}:${port}`);
    return undefined;
  }
  const shown = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  const url = `http://${shown.includes(':') ? `[${shown}]` : shown}:${bound}/metrics`;
  log.info({ event: 'metrics.ready', url }, `Prometheus metrics at ${url}`);
  let closed = false;
  return {
    host,
    port: bound,
    url,
    close() {
      if (closed) return;
      closed = true;
      closeListenSocket(socket);
    },
  };
}
