/**
 * Everything a route handler needs, built once by startRouter and shared by the routes.
 */
import type { Logger } from 'pino';
import type { WorkerRegistry } from '../workers/registry.js';
import type { WorkerMonitor } from '../workers/monitor.js';
import type { PolicyHost } from '../policies/host.js';
import type { CompletionSink } from '../proxy/completion.js';
import type { WorkerTable } from '../actors/worker-table.js';

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

export interface RouterContext {
  readonly settings: RouterSettings;
  readonly registry: WorkerRegistry;
  readonly table: WorkerTable;
  readonly monitor: WorkerMonitor;
  readonly policy: PolicyHost;
  readonly log: Logger;
  readonly sinks: CompletionSink[];
  readonly counters: RouterCounters;
  shuttingDown: boolean;
}
