/**
 * Wires a router together: worker table and registry, health/load monitor, policy host, the uWS front
 * end, and (with no worker URLs) an embedded simulated fleet in its own thread. Used by `switchyard serve`
 * and by tests, which start it on port 0.
 */
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { WorkerTable } from './actors/worker-table.js';
import { WorkerRegistry } from './workers/registry.js';
import { WorkerMonitor } from './workers/monitor.js';
import { createPolicyHost, type PolicyHost } from './policies/host.js';
import { loadPolicyModule } from './policies/registry.js';
import { Admission, resolveWorkerGroups, withGroups } from './policies/admission.js';
import type { WorkerInfo } from './policies/types.js';
import { createRouterApp } from './frontend/router-app.js';
import { listen, closeListenSocket, type ListenSocket, type TemplatedApp } from './frontend/http.js';
import { createLogger } from './util/log.js';
import type { RouterOptions } from './config/router-options.js';
import type { RouterContext } from './frontend/context.js';
import type { CompletionSink } from './proxy/completion.js';
import type { SimFleet } from './sim/fleet.js';
import { SwitchyardError } from './errors.js';
import { createTracker, registerTraceRoutes, resolveWorkerNodeIds } from './tracking/setup.js';
import { Observability, type ObservabilityTuning } from './metrics/observability.js';
import { CircuitBreakers, type BreakerOptions } from './workers/breaker.js';
import { AdmissionLimits, type AdmissionLimitOptions, type AdmissionLimiter } from './frontend/admission.js';
import type { Cluster } from './cluster/setup.js';
import { resolvesWithin } from './util/wait.js';
import type { UpstreamClientKind } from './proxy/upstream/types.js';
import { randomSeed } from './policies/common.js';
import type { PolicyFactoryOptions } from './policies/types.js';
import { startFrontendThreads, type RunningFrontendThreads } from './frontend/threads/start.js';
import { counterTotals, createSharedFrontendBuffers, type SharedFrontendBuffers } from './frontend/threads/shared.js';
import { createSharedLimitsState, SharedAdmissionLimits, type SharedLimitsState } from './frontend/threads/shared-limits.js';
import type { FrontendThreads } from './frontend/threads/hub.js';

export interface StartedRouter {
  readonly port: number;
  readonly url: string;
  readonly ctx: RouterContext;
  /** The embedded simulated fleet, when no worker URLs were given. */
  readonly fleet: SimFleet | undefined;
  /** Metrics, stats actor, Prometheus listener (`.prometheus?.port`), OpenTelemetry. */
  readonly observability: Observability;
  /** Shared state through Redis (--redis-url); undefined in single-process mode. */
  readonly cluster: Cluster | undefined;
  /** The front-end threads (--frontend-threads > 1); undefined with one front end. */
  readonly frontends: FrontendThreads | undefined;
  /** Stop accepting, wait for in-flight requests up to the grace period, release everything. */
  close(graceMs?: number): Promise<void>;
}

export interface StartRouterDeps {
  logger?: Logger;
  sinks?: CompletionSink[];
  /** Register extra routes (tests, later features) before the catch-all. */
  extraRoutes?: (app: TemplatedApp, ctx: RouterContext) => void;
  /** Stats actor / OpenTelemetry knobs (tests, benchmarks). */
  observability?: ObservabilityTuning;
}

const TABLE_CAPACITY = 1024;

export async function startRouter(opts: RouterOptions, deps: StartRouterDeps = {}): Promise<StartedRouter> {
  const log = deps.logger ?? makeLogger(opts);
  let fleet: SimFleet | undefined;
  let workerUrls = opts.workerUrls;
  if (workerUrls.length === 0) {
    // Loaded only when needed: a router in front of real workers never imports the simulator.
    const { startSimFleetInThread } = await import('./sim/fleet.js');
    fleet = await startSimFleetInThread({
      count: opts.simWorkers,
      host: '127.0.0.1',
      port: opts.simBasePort,
      timeScale: opts.simTimeScale,
      modelPath: opts.modelPath,
    });
    workerUrls = fleet.urls;
    log.info({ event: 'sim.embedded', urls: fleet.urls }, `embedded simulated fleet of ${fleet.urls.length} workers`);
  }

  let nodeIds: number[];
  try {
    nodeIds = resolveWorkerNodeIds(opts, workerUrls);
  } catch (err) {
    await fleet?.close();
    throw err;
  }

  const requestTimeoutMs = Math.round(opts.requestTimeoutSecs * 1000);
  const frontendCount = opts.frontendThreads;
  // Resolved here so that front-end threads running their own copy of a stateless policy derive theirs from it.
  const policySeed = opts.seed ?? randomSeed();
  let policyOptions: PolicyFactoryOptions = {};
  const table = WorkerTable.create(TABLE_CAPACITY);
  const registry = new WorkerRegistry(table, { requestTimeoutMs, initiallyHealthy: false, upstreamClient: opts.upstreamClient as UpstreamClientKind });
  let policy: PolicyHost | undefined;
  let monitor: WorkerMonitor | undefined;
  let tracker: Awaited<ReturnType<typeof createTracker>> = undefined;
  let admission: Admission | undefined;
  let obs: Observability | undefined;
  // Loaded only with --redis-url: a single-process router never imports ioredis.
  const cluster = opts.redisUrl === undefined ? undefined : (await import('./cluster/setup.js')).createCluster({ ...opts, redisUrl: opts.redisUrl }, log);
  try {
    tracker = await createTracker(opts, log);
    obs = await Observability.create(opts, opts, TABLE_CAPACITY, log, deps.observability);
    registry.addMany(workerUrls, nodeIds);
    monitor = new WorkerMonitor(
      registry,
      {
        endpoint: opts.healthCheckEndpoint,
        intervalMs: Math.round(opts.healthCheckIntervalSecs * 1000),
        timeoutMs: Math.round(opts.healthCheckTimeoutSecs * 1000),
        failureThreshold: opts.healthFailureThreshold,
        successThreshold: opts.healthSuccessThreshold,
        loadPollIntervalMs: Math.round(opts.loadPollIntervalSecs * 1000),
      },
      log,
    );
    // Finished traces written through to Redis and read through on a local miss (src/cluster/traces-redis.ts).
    if (cluster !== undefined && tracker !== undefined) (await import('./cluster/traces-redis.js')).attachTraces(cluster, tracker, opts, log);
    await monitor.initialCheck();
    monitor.start();

    // A plugin (--policy-module) is the policy; it runs in a policy actor, off the front end's loop.
    let policyName = opts.policy;
    if (opts.policyModule !== undefined) {
      policyName = await loadPolicyModule(resolve(opts.policyModule));
      if (opts.policy !== 'cache_aware' && opts.policy !== policyName) {
        throw new SwitchyardError('invalid_request', `--policy ${opts.policy} conflicts with --policy-module, which provides "${policyName}"`);
      }
    }
    // cache_aware shares its insert decisions with the other replicas (src/cluster/affinity*.ts).
    const affinity =
      cluster !== undefined && opts.affinitySharing && policyName === 'cache_aware'
        ? (await import('./cluster/affinity-redis.js')).attachAffinity(cluster, opts, log)
        : undefined;
    policy = createPolicyHost(
      policyName,
      (policyOptions = {
        ...(affinity === undefined ? {} : { affinity: affinity.policyOption }),
        seed: policySeed,
        cacheThreshold: opts.cacheThreshold,
        balanceAbsThreshold: opts.balanceAbsThreshold,
        balanceRelThreshold: opts.balanceRelThreshold,
        evictionIntervalSecs: opts.evictionIntervalSecs,
        maxTreeSize: opts.maxTreeSize,
        balanceKeepLocality: opts.balanceKeepLocality,
        tieTolerance: opts.cacheTieTolerance,
        hotPrefixFactor: opts.hotPrefixFactor,
        loadReportMaxAgeSecs: opts.loadReportMaxAgeSecs,
        muWindowSize: opts.muWindowSize,
        muMinHistory: opts.muMinHistory,
        muLoadGuard: opts.muLoadGuard,
        decisionsCsv: opts.decisionsCsv,
        // Front-end threads each run round_robin; they advance one shared counter.
        ...(frontendCount > 1 ? { sharedCounter: new SharedArrayBuffer(4) } : {}),
      }),
      table,
      log,
      { shards: opts.policyShards, ...(opts.policyModule !== undefined ? { placement: 'actor' as const } : {}) },
    );
    // Size-aware admission: on when worker groups are configured; members then carry their group.
    const groups = resolveWorkerGroups(opts.workerGroups, opts.config);
    if (groups.size > 0) {
      admission = new Admission(table, {
        largeInputTokens: opts.largeInputTokens,
        largeKvMb: opts.largeKvMb,
        memoryPressureUsage: opts.memoryPressureThreshold,
        pressureInputTokens: opts.pressureInputTokens,
        pressureKvMb: opts.pressureKvMb,
        kvBytesPerToken: opts.kvBytesPerToken,
      });
      admission.addRecorder(obs.admission); // /stats routing section, sgl_router_admission_total
    }
    const host = policy;
    const admit = admission;
    const members = (ws: readonly WorkerInfo[]): readonly WorkerInfo[] => (admit === undefined ? ws : withGroups(ws, groups));
    const onMembers = (ws: readonly WorkerInfo[]): void => {
      const m = members(ws);
      host.setWorkers(m);
      admit?.setWorkers(m);
    };
    onMembers(registry.list());
    registry.onChange(onMembers);
    await awaitPolicyReady(host, log);
  } catch (err) {
    await Promise.allSettled([monitor?.close(), policy?.close(), tracker?.close(), obs?.close(), registry.close(), fleet?.close(), cluster?.close()]);
    throw err;
  }

  const breakerOptions: BreakerOptions | undefined = opts.disableCircuitBreaker
    ? undefined
    : { failureThreshold: opts.cbFailureThreshold, successThreshold: opts.cbSuccessThreshold, openMs: Math.round(opts.cbTimeoutDurationSecs * 1000) };
  const limitOptions: AdmissionLimitOptions = {
    maxConcurrent: opts.maxConcurrentRequests,
    queueSize: opts.queueSize,
    queueTimeoutMs: Math.round(opts.queueTimeoutSecs * 1000),
    ratePerSecond: opts.rateLimitTokensPerSecond,
  };
  // Several front ends: counters per front end in shared memory, limits held across them.
  const shared: SharedFrontendBuffers | undefined = frontendCount > 1 ? createSharedFrontendBuffers(frontendCount, TABLE_CAPACITY) : undefined;
  let limits: AdmissionLimiter = new AdmissionLimits(limitOptions);
  let limitsState: SharedLimitsState | undefined;
  if (shared !== undefined && !limits.unlimited) {
    limitsState = createSharedLimitsState(frontendCount, limitOptions);
    limits = new SharedAdmissionLimits(limitsState, 0, limitOptions);
  }
  // With --redis-url the limits are global: this replica enforces its leased share (src/cluster/admission.ts).
  if (cluster !== undefined && !limits.unlimited) (await import('./cluster/admission.js')).attachGlobalAdmission(cluster, limits, { ...limitOptions, replicasHint: opts.clusterReplicas }, log);
  const ctx: RouterContext = {
    settings: {
      policyName: policy.name,
      maxPayloadSize: opts.maxPayloadSize,
      requestTimeoutMs,
      requestIdHeaders: opts.requestIdHeaders.map((h) => h.toLowerCase()),
      apiKey: opts.apiKey,
      corsAllowedOrigins: opts.corsAllowedOrigins,
      allowedWorkerHosts: opts.allowedWorkerHosts,
      retryConnectFailures: !opts.disableRetries,
      bodyDeadline: {
        baseMs: Math.round(opts.requestBodyTimeoutSecs * 1000),
        minBytesPerSec: opts.requestBodyMinRate,
        // A body of unknown length (chunked) gets the time a 1 MiB body would.
        unknownLengthMs: Math.round(opts.requestBodyTimeoutSecs * 1000 + (1024 * 1024 * 1000) / opts.requestBodyMinRate),
      },
      headerLimits: { count: opts.maxRequestHeaders, bytes: opts.maxRequestHeaderBytes },
      retry: {
        maxRetries: opts.disableRetries ? 0 : opts.retryMaxRetries,
        initialBackoffMs: opts.retryInitialBackoffMs,
        maxBackoffMs: opts.retryMaxBackoffMs,
        multiplier: opts.retryBackoffMultiplier,
        jitter: opts.retryJitterFactor,
      },
    },
    breakers:
      breakerOptions === undefined
        ? undefined
        : new CircuitBreakers(table, breakerOptions, (ref, from, to) => log.warn({ event: 'worker.breaker', worker: registry.bySlot(ref.slot)?.url, from, to }, 'circuit breaker state changed')),
    limits,
    registry,
    table,
    monitor,
    policy,
    admission,
    log,
    sinks: [...(deps.sinks ?? []), ...(tracker === undefined ? [] : [tracker]), ...obs.sinks],
    progress: tracker,
    events: obs.events,
    counters: shared === undefined ? { requests: 0, completed: 0, failed: 0, aborted: 0, retries: 0, active: 0 } : counterTotals(shared),
    shuttingDown: false,
  };
  // A worker readmitted after an ejection gets its open breaker half-open at once (src/workers/breaker.ts).
  monitor.onRecovered = (w) => ctx.breakers?.recovered(w.ref);
  // With --redis-url worker health and breakers are shared with the other replicas (src/cluster/worker-state.ts).
  if (cluster !== undefined) (await import('./cluster/worker-state.js')).attachWorkerState(cluster, { registry, monitor, breakers: ctx.breakers }, log);
  const releaseAll = async (): Promise<void> => {
    await Promise.allSettled([monitor.close(), policy.close(), tracker?.close(), obs.close(), registry.close()]);
    await cluster?.close();
  };
  const closeAll = (): Promise<unknown> => Promise.allSettled([releaseAll(), fleet?.close()]);
  const extraRoutes = (a: TemplatedApp): void => {
    registerTraceRoutes(a, ctx, tracker);
    obs.registerRoutes(a, ctx);
    deps.extraRoutes?.(a, ctx);
  };
  if (shared !== undefined) {
    let threads: RunningFrontendThreads | undefined;
    try {
      if (cluster !== undefined) {
        obs.addExposition(() => cluster.metricsText());
        await cluster.start();
      }
      threads = await startFrontendThreads({
        ctx,
        opts,
        shared,
        limitsState,
        limitOptions,
        breakerOptions,
        policyOptions,
        admissionGroups: admission === undefined ? undefined : resolveWorkerGroups(opts.workerGroups, opts.config),
        tracker,
        observability: obs,
        extraRoutes,
        logFile: opts.logDir === undefined ? undefined : join(opts.logDir, 'switchyard.log'),
      });
      await obs.listen(ctx);
    } catch (err) {
      await threads?.close(0);
      await closeAll();
      throw err;
    }
    const running = threads;
    return finishStart(opts, ctx, log, fleet, obs, cluster, running.port, running.hub, (graceMs) => running.close(graceMs), async () => {
      ctx.breakers?.close();
      await releaseAll();
    });
  }
  const app = createRouterApp(ctx, extraRoutes);
  let socket: ListenSocket | undefined;
  let port: number;
  try {
    if (cluster !== undefined) {
      obs.addExposition(() => cluster.metricsText());
      await cluster.start();
    }
    ({ socket, port } = await listen(app, opts.host, opts.port));
    await obs.listen(ctx);
  } catch (err) {
    if (socket !== undefined) closeListenSocket(socket);
    await closeAll();
    throw err;
  }
  return finishStart(
    opts,
    ctx,
    log,
    fleet,
    obs,
    cluster,
    port,
    undefined,
    async (graceMs) => {
      if (socket !== undefined) closeListenSocket(socket);
      ctx.limits?.drain(new SwitchyardError('shutting_down', 'the router is shutting down'));
      const deadline = Date.now() + graceMs;
      while (ctx.counters.active > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    },
    async () => {
      ctx.breakers?.close();
      await releaseAll();
    },
  );
}

/** How long start-up waits for the policy actor(s) before accepting traffic anyway. */
export const POLICY_READY_TIMEOUT_MS = 10_000;

/**
 * Start accepting traffic once the policy decides for itself: a stateful policy's actor thread takes
 * tens of milliseconds to start (longer on a loaded machine), and until then every request would get the
 * stateless fallback (and cache_aware would learn nothing from it). Bounded like the tracker's wait: a
 * thread that is still not up is logged and routing starts on the fallback, which is correct, only
 * locality-blind.
 */
async function awaitPolicyReady(policy: PolicyHost, log: Logger): Promise<void> {
  if (policy.placement === 'inline') return;
  const started = Date.now();
  if (!(await resolvesWithin(policy.ready(), POLICY_READY_TIMEOUT_MS))) {
    log.warn({ event: 'policy.slow_start', policy: policy.name, waited_ms: POLICY_READY_TIMEOUT_MS }, 'the policy actor is not up yet; starting anyway (decisions fall back to least loaded until it is)');
  } else log.debug({ event: 'policy.ready', policy: policy.name, waited_ms: Date.now() - started }, 'policy actor ready');
}

/**
 * Log readiness and build the StartedRouter. `drain(graceMs)` stops accepting and waits for in-flight
 * requests; `release()` closes everything else; then the embedded fleet stops.
 */
function finishStart(
  opts: RouterOptions,
  ctx: RouterContext,
  log: Logger,
  fleet: SimFleet | undefined,
  obs: Observability,
  cluster: Cluster | undefined,
  port: number,
  frontends: FrontendThreads | undefined,
  drain: (graceMs: number) => Promise<void>,
  release: () => Promise<void>,
): StartedRouter {
  const { registry, policy } = ctx;
  const shownHost = opts.host === '0.0.0.0' || opts.host === '::' ? '127.0.0.1' : opts.host;
  const url = `http://${shownHost.includes(':') ? `[${shownHost}]` : shownHost}:${port}`;
  log.info(
    { event: 'router.ready', url, port, policy: policy.name, placement: policy.placement, frontend_threads: frontends?.frontends ?? 1, workers: registry.list().map((w) => w.url), healthy_workers: registry.healthyCount() },
    `switchyard listening on ${url}`,
  );

  let closing: Promise<void> | undefined;
  const close = (graceMs = Math.round(opts.shutdownGracePeriodSecs * 1000)): Promise<void> => {
    closing ??= (async () => {
      ctx.shuttingDown = true;
      await drain(graceMs);
      const unfinished = ctx.counters.active;
      await release();
      if (fleet !== undefined) await fleet.close();
      log.info({ event: 'router.stopped', unfinished }, 'switchyard stopped');
    })();
    return closing;
  };
  return { port, url, ctx, fleet, observability: obs, cluster, frontends, close };
}

function makeLogger(opts: RouterOptions): Logger {
  if (opts.logDir === undefined) return createLogger({ level: opts.logLevel, name: 'switchyard' });
  mkdirSync(opts.logDir, { recursive: true });
  return createLogger({ level: opts.logLevel, name: 'switchyard', destination: join(opts.logDir, 'switchyard.log') });
}
