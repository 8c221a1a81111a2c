/**
 * The main thread's wiring for --frontend-threads N > 1 (called by startRouter):
 *
 *   control app   the full single-threaded route set (createRouterApp: data, control, traces, stats, extra
 *                 routes) on 127.0.0.1:<ephemeral>; it answers every non-data request, forwarded to it by
 *                 the front ends, so each route has one implementation and one answer;
 *   public app    the main thread's front end on host:port: data routes on a context whose counters are
 *                 this thread's block, every other route forwarded;
 *   N-1 threads   the same public app each (thread-main.ts), on the same host:port (SO_REUSEPORT).
 */
import { performance } from 'node:perf_hooks';
import { SwitchyardError } from '../../errors.js';
import { closeApp, closeListenSocket, listen, type ListenSocket, type TemplatedApp } from '../http.js';
import { createDataPlaneApp, createRouterApp } from '../router-app.js';
import type { DataPlaneContext, RouterContext } from '../context.js';
import type { RouterOptions } from '../../config/router-options.js';
import type { AdmissionLimitOptions } from '../admission.js';
import type { BreakerOptions } from '../../workers/breaker.js';
import type { PolicyFactoryOptions } from '../../policies/types.js';
import type { RequestTracker } from '../../tracking/tracker.js';
import type { Observability } from '../../metrics/observability.js';
import { SharedCounters, type SharedFrontendBuffers } from './shared.js';
import type { SharedLimitsState } from './shared-limits.js';
import { CONTROL_BODY_LIMIT, createForwarder } from './forward.js';
import { FrontendThreads } from './hub.js';
import { isBuiltinPolicy } from '../../policies/registry.js';
import type { UpstreamClientKind } from '../../proxy/upstream/types.js';

/** Hand-over period of a thread's report (ms): the tracker's own period, so a trace is not delayed more than twice. */
export const REPORT_MS = 5;
const SHARED_PORT_ATTEMPTS = 5;

export interface FrontendThreadsSetup {
  readonly ctx: RouterContext;
  readonly opts: RouterOptions;
  readonly shared: SharedFrontendBuffers;
  readonly limitsState: SharedLimitsState | undefined;
  readonly limitOptions: AdmissionLimitOptions;
  readonly breakerOptions: BreakerOptions | undefined;
  readonly policyOptions: PolicyFactoryOptions;
  /** Size-aware admission's worker groups (undefined: admission off). */
  readonly admissionGroups: ReadonlyMap<string, string> | undefined;
  readonly tracker: RequestTracker | undefined;
  readonly observability: Observability;
  /** Routes registered on the control app before its catch-all (traces, stats, tests'). */
  readonly extraRoutes: (app: TemplatedApp) => void;
  readonly logFile: string | undefined;
}

export interface RunningFrontendThreads {
  readonly port: number;
  readonly hub: FrontendThreads;
  /** Stop accepting everywhere, drain every front end up to graceMs, close the apps and threads. */
  close(graceMs: number): Promise<void>;
}

export async function startFrontendThreads(s: FrontendThreadsSetup): Promise<RunningFrontendThreads> {
  const { ctx, opts, shared } = s;
  const log = ctx.log;
  const controlApp = createRouterApp(ctx, s.extraRoutes);
  const control = await listen(controlApp, '127.0.0.1', 0);
  const controlUrl = `http://127.0.0.1:${control.port}`;

  const mainCounters = new SharedCounters(shared, 0);
  // The main thread's data path: the hub's own objects, its counters block (ctx.counters is the sum).
  const dataCtx: DataPlaneContext = {
    settings: ctx.settings,
    registry: ctx.registry,
    table: ctx.table,
    monitor: ctx.monitor,
    policy: ctx.policy,
    admission: ctx.admission,
    log,
    sinks: ctx.sinks,
    counters: mainCounters,
    progress: ctx.progress,
    events: ctx.events,
    breakers: ctx.breakers,
    limits: ctx.limits,
    get shuttingDown() {
      return ctx.shuttingDown;
    },
  };

  let hub: FrontendThreads | undefined;
  const forwarder = createForwarder({
    controlUrl,
    maxBodyBytes: CONTROL_BODY_LIMIT,
    timeoutMs: Math.min(ctx.settings.requestTimeoutMs, 60_000),
    barrier: () => hub?.barrier() ?? Promise.resolve(),
    shuttingDown: () => ctx.shuttingDown,
    onForward: () => mainCounters.forwarded++,
  });
  const publicApp = createDataPlaneApp(dataCtx, forwarder.handle);
  const groups = s.admissionGroups;
  const makeHub = (port: number): FrontendThreads =>
    new FrontendThreads({
      threads: opts.frontendThreads - 1,
      table: ctx.table,
      buffers: shared,
      members: () => ctx.registry.snapshot(groups === undefined ? undefined : (url) => groups.get(url) ?? 'single'),
      policy: ctx.policy,
      log,
      targets: {
        registry: ctx.registry,
        monitor: ctx.monitor,
        policy: ctx.policy,
        sinks: ctx.sinks,
        progress: ctx.progress,
        events: ctx.events,
        breakers: ctx.breakers,
        admission:
          ctx.admission === undefined
            ? undefined
            : (action, trigger) => {
                // Admission's own recorders on the main thread: its tally and the metrics' counters.
                ctx.admission?.tally.record(action, trigger);
                s.observability.admission.record(action, trigger);
              },
        onSinkError: (err) => log.error({ err }, 'completion sink failed'),
      },
      template: {
        host: opts.host,
        port,
        controlUrl,
        settings: ctx.settings,
        upstreamClient: opts.upstreamClient as UpstreamClientKind,
        table: ctx.table.buffer,
        buffers: shared,
        // A policy registered in this process only (tests) cannot be built in a thread: it decides here.
        policy: { name: ctx.policy.name, inline: ctx.policy.placement === 'inline' && isBuiltinPolicy(ctx.policy.name), options: s.policyOptions },
        admission: ctx.admission?.options,
        breakers: s.breakerOptions,
        limits: s.limitsState === undefined ? undefined : { state: s.limitsState, options: s.limitOptions },
        logLevel: log.level,
        logFile: s.logFile,
        mainTimeOrigin: performance.timeOrigin,
        reportMs: REPORT_MS,
        hasProgress: ctx.progress !== undefined,
      },
    });
  ctx.registry.onChange(() => hub?.membersChanged());

  // The threads listen first, the main thread last: a client connecting during start-up must not pin its
  // keep-alive connection to the main thread before the others accept. Port 0: a free port is found first
  // (uSockets sets SO_REUSEPORT only for a non-zero port); if it is taken meanwhile, try another.
  let socket: ListenSocket | undefined;
  let last: unknown;
  for (let attempt = 0; attempt < SHARED_PORT_ATTEMPTS && socket === undefined; attempt++) {
    try {
      // The threads share the port (SO_REUSEPORT): first make sure no other process holds it, which would
      // otherwise join in and take a share of the connections (http.ts, PortSharing).
      const port = await freePort(publicApp, opts.host, opts.port);
      hub = makeHub(port);
      await hub.start();
      socket = (await listen(publicApp, opts.host, port, 'shared')).socket;
    } catch (err) {
      last = err;
      await hub?.shutdown(0);
      hub = undefined;
      if (opts.port !== 0) break;
    }
  }
  if (socket === undefined || hub === undefined) {
    await forwarder.close().catch(() => undefined);
    closeListenSocket(control.socket);
    closeApp(controlApp);
    throw last instanceof Error ? last : new Error(String(last));
  }
  const threads = hub;
  const port = threads.port;
  s.observability.beforeRender = () => threads.barrier();
  let publicSocket: ListenSocket | undefined = socket;
  return {
    port,
    hub: threads,
    close: async (graceMs) => {
      if (publicSocket !== undefined) closeListenSocket(publicSocket);
      publicSocket = undefined;
      const threadsDone = threads.shutdown(graceMs);
      ctx.limits?.drain(new SwitchyardError('shutting_down', 'the router is shutting down'));
      const deadline = Date.now() + graceMs;
      while (mainCounters.active > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      await threadsDone;
      await forwarder.close().catch(() => undefined);
      closeApp(controlApp);
    },
  };
}

/** `port` (0: any port) if nothing listens on it on `host` right now: bound exclusively and closed at once. */
async function freePort(app: TemplatedApp, host: string, port: number): Promise<number> {
  const probe = await listen(app, host, port, 'exclusive');
  closeListenSocket(probe.socket);
  return probe.port;
}
