/**
 * Active health checks with failure/success thresholds, passive ejection on connection errors, and
 * polling of workers' reported load (/get_load). Control traffic uses its own small connection pool so a
 * saturated data pool never delays a probe (a slow probe marking busy workers unhealthy is a peer's bug).
 */
import { Agent, request } from 'undici';
import type { Logger } from 'pino';
import { Field } from '../actors/worker-table.js';
import type { WorkerEntry, WorkerRegistry } from './registry.js';
import { CLIENT_KEEP_ALIVE_MS } from '../util/keep-alive.js';

export interface MonitorOptions {
  endpoint: string;
  intervalMs: number;
  timeoutMs: number;
  failureThreshold: number;
  successThreshold: number;
  /** 0 disables load polling. */
  loadPollIntervalMs: number;
  /** Unhealthy workers are probed this often (sooner than the regular interval) so recovery is quick. */
  recoveryProbeMs?: number;
}

interface WorkerHealthState {
  successes: number;
  failures: number;
  lastError: string | undefined;
  lastCheckedAt: number;
  checking: boolean;
  /** The worker's Processed counter at the previous check: data traffic completing is health evidence. */
  processedAtLastCheck: number;
  /** KV capacity from /get_server_info (0 = unknown): turns /get_load's num_tokens into a token usage. */
  maxTotalTokens: number;
  serverInfoAttempts: number;
}

export class WorkerMonitor {
  private readonly state = new Map<number, WorkerHealthState>();
  private readonly agent = new Agent({ connections: 4, keepAliveTimeout: CLIENT_KEEP_ALIVE_MS });
  private healthTimer: NodeJS.Timeout | undefined;
  private recoveryTimer: NodeJS.Timeout | undefined;
  private loadTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Called when an unhealthy worker is readmitted (the router turns its open breaker half-open). */
  onRecovered: ((worker: WorkerEntry) => void) | undefined = undefined;
  /**
   * Every health transition this monitor makes (ejection, marked unhealthy, readmitted), never those
   * applied with `applyRemote` (src/cluster/worker-state.ts publishes these to the other replicas).
   */
  onHealthChange: ((worker: WorkerEntry, healthy: boolean, reason: string) => void) | undefined = undefined;

  constructor(
    private readonly registry: WorkerRegistry,
    private readonly options: MonitorOptions,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.healthTimer = setInterval(() => void this.checkAll(), this.options.intervalMs);
    this.healthTimer.unref();
    const recovery = this.options.recoveryProbeMs ?? Math.min(this.options.intervalMs, 2_000);
    this.recoveryTimer = setInterval(() => void this.checkUnhealthy(), recovery);
    this.recoveryTimer.unref();
    if (this.options.loadPollIntervalMs > 0) {
      this.loadTimer = setInterval(() => void this.pollLoads(), this.options.loadPollIntervalMs);
      this.loadTimer.unref();
    }
  }

  /** First round at start-up: a worker that answers once is healthy at once; the rest stay down. */
  async initialCheck(): Promise<void> {
    await Promise.all(this.registry.list().map((w) => this.checkOne(w, true)));
  }

  /** Check a worker now (e.g. just added); a single success admits it. */
  async admit(worker: WorkerEntry): Promise<boolean> {
    await this.checkOne(worker, true);
    return this.registry.table.get(worker.slot, Field.Healthy) === 1;
  }

  async checkAll(): Promise<void> {
    await Promise.all(this.registry.list().map((w) => this.checkOne(w, false)));
  }

  private async checkUnhealthy(): Promise<void> {
    const table = this.registry.table;
    await Promise.all(
      this.registry
        .list()
        .filter((w) => table.get(w.slot, Field.Healthy) === 0)
        .map((w) => this.checkOne(w, false)),
    );
  }

  /**
   * A connection-level failure seen while proxying (refused, reset before any response): the worker is
   * ejected at once, to be readmitted by the recovery probes after `successThreshold` good checks.
   */
  reportConnectionFailure(worker: WorkerEntry, reason: string): void {
    const table = this.registry.table;
    if (!table.isCurrent(worker.ref)) return;
    const st = this.stateOf(worker);
    st.successes = 0;
    st.failures = Math.max(st.failures + 1, this.options.failureThreshold);
    st.lastError = reason;
    if (table.get(worker.slot, Field.Healthy) === 1) {
      table.setHealthy(worker.slot, false);
      this.log.warn({ event: 'worker.ejected', worker: worker.url, reason }, 'worker ejected after a connection failure');
      this.onHealthChange?.(worker, false, `ejected: ${reason}`);
    }
  }

  /**
   * Another replica's health transition for this worker (src/cluster/worker-state.ts): applied as if this
   * monitor had made it, counters included, so this replica's own checks carry on from there (an ejected
   * worker is readmitted by this replica's recovery probes after --health-success-threshold good checks).
   * Not announced through onHealthChange. Returns whether the worker's health changed.
   */
  applyRemote(worker: WorkerEntry, healthy: boolean, reason: string): boolean {
    const table = this.registry.table;
    if (!table.isCurrent(worker.ref)) return false;
    const st = this.stateOf(worker);
    const was = table.get(worker.slot, Field.Healthy) === 1;
    if (healthy) {
      st.failures = 0;
      st.lastError = undefined;
    } else {
      st.successes = 0;
      st.failures = Math.max(st.failures, this.options.failureThreshold);
      st.lastError = reason;
    }
    if (was === healthy) return false;
    table.setHealthy(worker.slot, healthy);
    this.log.warn({ event: healthy ? 'worker.healthy' : 'worker.unhealthy', worker: worker.url, reason, remote: true }, healthy ? 'worker readmitted by another replica' : 'worker ejected by another replica');
    return true;
  }

  healthOf(worker: WorkerEntry): { healthy: boolean; consecutiveFailures: number; consecutiveSuccesses: number; lastError: string | undefined; lastCheckedAt: number } {
    const st = this.stateOf(worker);
    return {
      healthy: this.registry.table.get(worker.slot, Field.Healthy) === 1,
      consecutiveFailures: st.failures,
      consecutiveSuccesses: st.successes,
      lastError: st.lastError,
      lastCheckedAt: st.lastCheckedAt,
    };
  }

  forget(worker: WorkerEntry): void {
    this.state.delete(worker.slot);
  }

  private stateOf(worker: WorkerEntry): WorkerHealthState {
    let st = this.state.get(worker.slot);
    if (st === undefined) {
      st = { successes: 0, failures: 0, lastError: undefined, lastCheckedAt: 0, checking: false, processedAtLastCheck: 0, maxTotalTokens: 0, serverInfoAttempts: 0 };
      this.state.set(worker.slot, st);
    }
    return st;
  }

  private async checkOne(worker: WorkerEntry, admitOnFirstSuccess: boolean): Promise<void> {
    const st = this.stateOf(worker);
    if (st.checking || this.closed) return;
    st.checking = true;
    let ok = false;
    let error: string | undefined;
    try {
      const res = await request(worker.url + this.options.endpoint, {
        method: 'GET',
        dispatcher: this.agent,
        headersTimeout: this.options.timeoutMs,
        bodyTimeout: this.options.timeoutMs,
        signal: AbortSignal.timeout(this.options.timeoutMs),
      });
      await res.body.dump();
      ok = res.statusCode >= 200 && res.statusCode < 300;
      if (!ok) error = `status ${res.statusCode}`;
    } catch (err) {
      error = (err as Error).message || (err as Error).name;
    } finally {
      st.checking = false;
    }
    const table = this.registry.table;
    if (!table.isCurrent(worker.ref)) return; // removed while checking
    st.lastCheckedAt = Date.now();
    const wasHealthy = table.get(worker.slot, Field.Healthy) === 1;
    const processed = table.get(worker.slot, Field.Processed);
    const servedSinceLastCheck = processed !== st.processedAtLastCheck;
    st.processedAtLastCheck = processed;
    if (!ok && wasHealthy && servedSinceLastCheck && error !== undefined && /timeout|aborted/i.test(error)) {
      // A probe that timed out while the worker kept completing our requests says the router (or the worker)
      // is busy, not that the worker is down: ejecting busy workers is a known failure mode of peers.
      st.lastError = `${error} (ignored: requests completed since the last check)`;
      return;
    }
    if (ok) {
      st.failures = 0;
      st.successes++;
      st.lastError = undefined;
      if (!wasHealthy && (admitOnFirstSuccess || st.successes >= this.options.successThreshold)) {
        table.setHealthy(worker.slot, true);
        this.log.info({ event: 'worker.healthy', worker: worker.url }, 'worker is healthy');
        this.onHealthChange?.(worker, true, 'health checks passed');
        this.onRecovered?.(worker);
      }
    } else {
      st.successes = 0;
      st.failures++;
      st.lastError = error;
      if (wasHealthy && st.failures >= this.options.failureThreshold) {
        table.setHealthy(worker.slot, false);
        this.log.warn({ event: 'worker.unhealthy', worker: worker.url, error, failures: st.failures }, 'worker marked unhealthy');
        this.onHealthChange?.(worker, false, `health checks failed: ${error ?? 'unknown'}`);
      } else if (admitOnFirstSuccess && !wasHealthy) {
        this.log.warn({ event: 'worker.down', worker: worker.url, error }, 'worker not reachable; will keep probing');
      }
    }
  }

  /** Poll /get_load of healthy workers into the table's reported queue/running/token fields. */
  async pollLoads(): Promise<void> {
    const table = this.registry.table;
    const nowSec = Math.floor(Date.now() / 1000);
    await Promise.all(
      this.registry.list().map(async (w) => {
        if (table.get(w.slot, Field.Healthy) !== 1 || this.closed) return;
        try {
          const res = await request(w.url + '/get_load', {
            method: 'GET',
            dispatcher: this.agent,
            headersTimeout: this.options.timeoutMs,
            bodyTimeout: this.options.timeoutMs,
          });
          if (res.statusCode !== 200) {
            await res.body.dump();
            return;
          }
          const report = parseLoadReport(await res.body.json());
          if (report === undefined || !table.isCurrent(w.ref)) return;
          const st = this.stateOf(w);
          if (st.maxTotalTokens === 0 && st.serverInfoAttempts < 3) {
            st.serverInfoAttempts++;
            st.maxTotalTokens = await this.fetchMaxTotalTokens(w);
          }
          const tokenUsage = st.maxTotalTokens > 0 ? Math.min(1, report.tokens / st.maxTotalTokens) : undefined;
          table.setReported(w.slot, tokenUsage === undefined ? report : { ...report, tokenUsage }, nowSec);
        } catch {
          // Load polling is advisory; health checks decide reachability.
        }
      }),
    );
  }

  /** SGLang's /get_server_info carries max_total_num_tokens (the KV pool size); 0 when not offered. */
  private async fetchMaxTotalTokens(w: WorkerEntry): Promise<number> {
    try {
      const res = await request(w.url + '/get_server_info', {
        method: 'GET',
        dispatcher: this.agent,
        headersTimeout: this.options.timeoutMs,
        bodyTimeout: this.options.timeoutMs,
      });
      if (res.statusCode !== 200) {
        await res.body.dump();
        return 0;
      }
      const info = (await res.body.json()) as Record<string, unknown>;
      const v = info['max_total_num_tokens'];
      return typeof v === 'number' && v > 0 ? v : 0;
    } catch {
      return 0;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.healthTimer) clearInterval(this.healthTimer);
    if (this.recoveryTimer) clearInterval(this.recoveryTimer);
    if (this.loadTimer) clearInterval(this.loadTimer);
    await this.agent.destroy().catch(() => undefined);
  }
}

/** Accepts every /get_load shape SGLang servers have used (see sglang-api.md). */
export function parseLoadReport(body: unknown): { queue: number; running: number; tokens: number } | undefined {
  if (Array.isArray(body)) {
    let queue = 0;
    let running = 0;
    let tokens = 0;
    let any = false;
    for (const r of body) {
      if (r === null || typeof r !== 'object') continue;
      const o = r as Record<string, unknown>;
      any = true;
      queue += toInt(o['num_waiting_reqs']);
      running += toInt(o['num_reqs']);
      tokens += toInt(o['num_tokens']);
    }
    return any ? { queue, running, tokens } : undefined;
  }
  if (body !== null && typeof body === 'object') {
    const o = body as Record<string, unknown>;
    if (typeof o['load'] === 'number') return { queue: 0, running: toInt(o['load']), tokens: 0 };
    if (o['num_reqs'] !== undefined || o['num_waiting_reqs'] !== undefined) {
      return { queue: toInt(o['num_waiting_reqs']), running: toInt(o['num_reqs']), tokens: toInt(o['num_tokens']) };
    }
  }
  return undefined;
}

function toInt(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) ? Math.max(0, Math.round(v)) : 0;
}
