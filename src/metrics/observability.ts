/**
 * Observability of a router, wired in one place so src/router.ts needs only a few lines:
 *   - RouterMetrics: hot-path counters (request hooks + a completion sink), always on, plain numbers;
 *   - StatsHost: the stats actor (HDR percentiles, windows), unless --disable-stats;
 *   - the Prometheus exposition on its own port (--prometheus-host/--prometheus-port);
 *   - GET /stats and GET /admin/debug/bundle on the main port;
 *   - OpenTelemetry traces when an OTLP endpoint is configured (SDK imported only then).
 */
import { readFileSync } from 'node:fs';
import type { TemplatedApp } from '../frontend/http.js';
import type { RouterContext } from '../frontend/context.js';
import type { CompletionSink } from '../proxy/completion.js';
import type { Logger } from '../util/log.js';
import { resolveOtlpConfig, type OtlpConfig } from '../otel/config.js';
import type { OtelTracing } from '../otel/tracing.js';
import { RouterMetrics, type AdmissionRecorder } from './counters.js';
import { combineEvents, type RequestEvents } from './events.js';
import { emptyHistogramFamilies, membersOf, renderMetrics, startPrometheusServer, type PrometheusServer } from './prometheus.js';
import { registerStatsRoutes } from './routes.js';
import { StatsHost, type StatsHostOptions } from './stats-host.js';

/** The serve flags observability reads (RouterOptions has them all). */
export interface ObservabilityConfig {
  readonly disableStats: boolean;
  readonly prometheusHost: string;
  readonly prometheusPort: number;
  readonly otlpEndpoint?: string | undefined;
  readonly otlpProtocol?: string | undefined;
}

/** Knobs for tests and benchmarks (not flags). */
export interface ObservabilityTuning {
  readonly stats?: StatsHostOptions;
  /** Batch export interval of OpenTelemetry spans (default: the SDK's, or OTEL_BSP_SCHEDULE_DELAY). */
  readonly otlpFlushMs?: number;
  /** Environment for OTEL_* variables (default process.env). */
  readonly env?: NodeJS.ProcessEnv;
}

export class Observability {
  readonly metrics: RouterMetrics;
  readonly stats: StatsHost | undefined;
  readonly events: RequestEvents;
  /** Completion sinks to append to the router's. */
  readonly sinks: CompletionSink[];
  readonly startedAt = Date.now();
  readonly otlp: OtlpConfig | undefined;
  private readonly otel: OtelTracing | undefined;
  private prom: PrometheusServer | undefined;
  private closed = false;
  private readonly expositions: (() => string)[] = [];

  private constructor(
    private readonly config: ObservabilityConfig,
    private readonly options: Readonly<Record<string, unknown>>,
    private readonly log: Logger,
    metrics: RouterMetrics,
    stats: StatsHost | undefined,
    otlp: OtlpConfig | undefined,
    otel: OtelTracing | undefined,
  ) {
    this.metrics = metrics;
    this.stats = stats;
    this.otlp = otlp;
    this.otel = otel;
    this.events = combineEvents([metrics, otel?.events]) as RequestEvents;
    this.sinks = [metrics, ...(stats === undefined ? [] : [stats]), ...(otel === undefined ? [] : [otel.sink])];
  }

  /**
   * Build the pieces that exist before the router context: counters, the stats actor, OpenTelemetry.
   * `options` are the router's parsed options (shown, redacted, in the debug bundle).
   */
  static async create(config: ObservabilityConfig, options: Readonly<Record<string, unknown>>, tableCapacity: number, log: Logger, tuning: ObservabilityTuning = {}): Promise<Observability> {
    const otlp = resolveOtlpConfig({ otlpEndpoint: config.otlpEndpoint, otlpProtocol: config.otlpProtocol, otlpFlushMs: tuning.otlpFlushMs }, tuning.env ?? process.env);
    let otel: OtelTracing | undefined;
    if (otlp !== undefined) {
      // Loaded only now: without an endpoint no OpenTelemetry module is ever imported.
      const { startOtelTracing } = await import('../otel/tracing.js');
      otel = startOtelTracing(otlp, log, packageVersion());
    }
    const stats = config.disableStats ? undefined : new StatsHost({ logger: log, ...tuning.stats });
    return new Observability(config, options, log, new RouterMetrics(tableCapacity), stats, otlp, otel);
  }

  /** Where size-aware admission reports its actions and triggers. */
  get admission(): AdmissionRecorder {
    return this.metrics.admission;
  }

  /** The Prometheus listener, once started (undefined when its port could not be bound). */
  get prometheus(): PrometheusServer | undefined {
    return this.prom;
  }

  registerRoutes(app: TemplatedApp, ctx: RouterContext): void {
    registerStatsRoutes(app, ctx, {
      metrics: this.metrics,
      stats: this.stats,
      startedAt: this.startedAt,
      config: this.options,
      describe: () => ({
        prometheus: this.prom === undefined ? { listening: false, configured: `${this.config.prometheusHost}:${this.config.prometheusPort}` } : { listening: true, url: this.prom.url },
        opentelemetry: this.otel === undefined ? { enabled: false } : { enabled: true, ...this.otel.describe() },
      }),
    });
  }

  /** The whole exposition text (what GET /metrics answers). */
  async render(ctx: RouterContext): Promise<string> {
    // Front-end threads (--frontend-threads) hand over what they buffered first, as for /stats.
    if (this.beforeRender !== undefined) await this.beforeRender();
    const [histograms] = await Promise.all([this.histograms(ctx), this.refreshTreeSizes(ctx)]);
    let text = renderMetrics(ctx, this.metrics, histograms);
    for (const more of this.expositions) text += more();
    return text;
  }

  /** Awaited before each exposition (the front-end threads' report barrier). */
  beforeRender: (() => Promise<void>) | undefined = undefined;

  /** More metric families appended to /metrics (e.g. the Redis link's, src/cluster). */
  addExposition(render: () => string): void {
    this.expositions.push(render);
  }

  private async histograms(ctx: RouterContext): Promise<string | undefined> {
    if (this.stats === undefined) return undefined; // zeros: there never is data
    try {
      // Waits for a (re)starting actor, up to the ask timeout.
      return await this.stats.prometheus(membersOf(ctx));
    } catch (err) {
      // Families without series: Prometheus marks them stale. Zeros would read as a counter reset.
      this.log.warn({ err }, 'stats actor did not render the histograms; exporting them without series');
      return emptyHistogramFamilies();
    }
  }

  /** sgl_router_tree_size from the policy's snapshot (cache_aware reports `tree_size` per worker URL). */
  private async refreshTreeSizes(ctx: RouterContext): Promise<void> {
    let snap: unknown;
    try {
      snap = await withTimeout(ctx.policy.snapshot(), 2000);
    } catch {
      return; // keep the last known sizes
    }
    const sizes = treeSizesOf(snap);
    if (sizes === undefined) return;
    for (const [url, chars] of Object.entries(sizes)) if (typeof chars === 'number') this.metrics.setTreeSize(url, chars);
  }

  /** Start the Prometheus listener (after the router context exists). */
  async listen(ctx: RouterContext): Promise<void> {
    if (this.closed) return;
    this.otel?.useAdmission(ctx.admission);
    const s = ctx.settings;
    this.metrics.maxRetries = s.retry !== undefined ? s.retry.maxRetries : s.retryConnectFailures ? 1 : 0;
    this.prom = await startPrometheusServer(this.config.prometheusHost, this.config.prometheusPort, () => this.render(ctx), this.log);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.prom?.close();
    await Promise.allSettled([this.stats?.close(), this.otel?.close()]);
  }
}

/** `tree_size` of a policy snapshot: inline and sharded hosts put it in `state`, actor hosts in `actor.state`. */
export function treeSizesOf(snap: unknown): Record<string, unknown> | undefined {
  if (snap === null || typeof snap !== 'object') return undefined;
  const o = snap as { state?: unknown; actor?: { state?: unknown } | null };
  for (const state of [o.state, o.actor?.state]) {
    if (state === null || typeof state !== 'object') continue;
    const sizes = (state as { tree_size?: unknown }).tree_size;
    if (sizes !== null && typeof sizes === 'object') return sizes as Record<string, unknown>;
  }
  return undefined;
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}

let version: string | undefined;

/** Switchyard's version from package.json (dist/src/metrics -> the package root is three levels up). */
export function packageVersion(): string {
  if (version !== undefined) return version;
  try {
    version = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? '0.0.0';
  } catch {
    version = '0.0.0';
  }
  return version;
}
