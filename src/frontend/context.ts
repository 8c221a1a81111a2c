/**
 * Everything a route handler needs, built once by startRouter and shared by the routes.
 */
import type { Logger } from 'pino';
import type { WorkerRegistry } from '../workers/registry.js';
import type { WorkerMonitor } from '../workers/monitor.js';
import type { PolicyHost } from '../policies/host.js';
import type { Admission } from '../policies/admission.js';
import type { CompletionSink } from '../proxy/completion.js';
import type { WorkerTable } from '../actors/worker-table.js';
import type { WorkerEntry } from '../workers/registry.js';
import type { Decision, RequestFeatures, RouteKind } from '../policies/types.js';
import type { RequestEvents } from '../metrics/events.js';
import type { CircuitBreakers } from '../workers/breaker.js';
import type { RetryPolicy } from './retry.js';
import type { AdmissionLimiter } from './admission.js';
import type { SlotRef } from '../actors/worker-table.js';
import type { Permit } from '../workers/breaker.js';

export interface RouterSettings {
  readonly policyName: string;
  readonly maxPayloadSize: number;
  readonly requestTimeoutMs: number;
  readonly requestIdHeaders: readonly string[];
  readonly apiKey: string | undefined;
  readonly corsAllowedOrigins: readonly string[];
  readonly allowedWorkerHosts: readonly string[];
  /** Retry a connection failure once on another worker (the full retry policy is the hardening issue's). */
  readonly retryConnectFailures: boolean;
  /** Retries with backoff (--retry-*); absent: the single connection-failure retry above. */
  readonly retry?: RetryPolicy | undefined;
  /** Slow-body guard: the body must arrive within base + length / minRate (absent: no guard). */
  readonly bodyDeadline?: { readonly baseMs: number; readonly minBytesPerSec: number; readonly unknownLengthMs: number } | undefined;
  /** Header limits on data routes (431 beyond; absent: only uWS's own). */
  readonly headerLimits?: { readonly count: number; readonly bytes: number } | undefined;
}

export interface RouterCounters {
  requests: number;
  completed: number;
  failed: number;
  aborted: number;
  retries: number;
  /** Requests accepted by the front end and not yet finished. */
  active: number;
}

/** What the data path needs of the worker table (a front-end thread adds a crash ledger around these). */
export type DataPlaneTable = Pick<WorkerTable, 'acquire' | 'releaseLoad' | 'isAvailable' | 'load'>;

/** What the data path reports to health checking: a connection failure while proxying (passive ejection). */
export interface ConnectionFailureReporter {
  reportConnectionFailure(worker: WorkerEntry, reason: string): void;
}

/** The circuit-breaker calls of the data path (CircuitBreakers on the main thread; a forwarding gate in a front-end thread). */
export interface BreakerGate {
  tryAcquire(ref: SlotRef): Permit;
  record(ref: SlotRef, permit: Permit, success: boolean | undefined): void;
}

/**
 * Everything the data path (data-route.ts) uses. The main thread's RouterContext is one; a front-end thread
 * (src/frontend/threads/) builds another from thread-side adapters: a registry mirror, the attached worker
 * table, forwarding sinks and hooks.
 */
export interface DataPlaneContext {
  readonly settings: RouterSettings;
  readonly registry: WorkerRegistry;
  readonly table: DataPlaneTable;
  readonly monitor: ConnectionFailureReporter;
  readonly policy: PolicyHost;
  /** Size-aware admission (--worker-groups); absent: every request may go to any worker. */
  readonly admission?: Pick<Admission, 'admit'> | undefined;
  readonly log: Logger;
  readonly sinks: readonly CompletionSink[];
  readonly counters: RouterCounters;
  /** Observer of requests before their completion record (the request tracker); absent: nothing is paid. */
  readonly progress?: RequestProgressHook | undefined;
  /** Request counters for metrics and OpenTelemetry (src/metrics/events.ts): accepted / rejected / decided. */
  readonly events?: RequestEvents | undefined;
  /** Per-worker circuit breakers (--cb-*); absent: --disable-circuit-breaker. */
  readonly breakers?: BreakerGate | undefined;
  /** Concurrency limit with a wait queue and rate limit (--max-concurrent-requests, --rate-limit-*). */
  readonly limits?: AdmissionLimiter | undefined;
  readonly shuttingDown: boolean;
}

export interface RouterContext extends DataPlaneContext {
  readonly table: WorkerTable;
  readonly monitor: WorkerMonitor;
  readonly admission?: Admission | undefined;
  readonly sinks: CompletionSink[];
  /**
   * Request counters. With front-end threads (--frontend-threads > 1) this is the read-only sum over every
   * thread's counters (src/frontend/threads/counters.ts); each thread's data path counts into its own.
   */
  readonly counters: RouterCounters;
  readonly breakers?: CircuitBreakers | undefined;
  shuttingDown: boolean;
}

/** What a progress hook may read of an in-flight request (data-route.ts's request state satisfies it). */
export interface RequestProgressView {
  readonly requestId: string;
  readonly route: RouteKind;
  readonly features: RequestFeatures;
  /** Wall-clock ms of arrival. */
  readonly timestamp: number;
  /** Monotonic ms (performance.now) stamps. */
  readonly arrivedAt: number;
  readonly decidedAt: number;
  readonly attempts: number;
  readonly decision: Decision | undefined;
  readonly worker: WorkerEntry | undefined;
  /**
   * Present on the request's own state object (data-route.ts), whose completion record copies it: there
   * the tracker may mark a decision it holds back until its hand-over (tracking/tracker.ts). Views made
   * per event (front-end threads) have none, and their decisions are written at once.
   */
  traceHold?: number;
}

/** Called synchronously on the hot path: must only record (e.g. append to a per-turn batch), never block. */
export interface RequestProgressHook {
  /** A worker was chosen (again, after a retry); the request is about to be sent. */
  decided(req: RequestProgressView): void;
  /** The first response byte of a streaming request arrived (`at`: performance.now ms). */
  firstByte(req: RequestProgressView, at: number): void;
}
