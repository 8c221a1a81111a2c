/**
 * The main thread's side of --frontend-threads N: starts the N-1 front-end threads, keeps their registry
 * mirrors current, answers their policy questions and barriers, feeds their reports to the hub objects,
 * restarts a thread that crashed (after taking back, from its ledgers, the in-flight counts and admission
 * slots its lost requests held), and shuts them down gracefully.
 */
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { MirroredWorker } from '../../workers/registry.js';
import type { WorkerTable } from '../../actors/worker-table.js';
import type { PolicyHost } from '../../policies/host.js';
import { abandonActive, reconcileLedger, SharedCounters, type SharedFrontendBuffers } from './shared.js';
import { reconcileLimits } from './shared-limits.js';
import { ReportApplier, type ReportTargets } from './report.js';
import { DecideServer } from './adapters.js';
import type { ThreadInit, ToMain, ToThread } from './protocol.js';

/** ThreadInit without what the hub fills per thread and per start. */
export type ThreadTemplate = Omit<ThreadInit, 'index' | 'members'>;

export interface FrontendThreadsOptions {
  /** Extra threads (the main thread is front end 0). */
  readonly threads: number;
  readonly template: ThreadTemplate;
  readonly table: WorkerTable;
  readonly buffers: SharedFrontendBuffers;
  readonly members: () => MirroredWorker[];
  readonly policy: PolicyHost;
  readonly targets: ReportTargets;
  readonly log: Logger;
  /** A barrier waits at most this long for a thread (a stuck thread must not hang control routes). */
  readonly barrierTimeoutMs?: number;
}

interface ThreadSlot {
  readonly index: number;
  worker: Worker | undefined;
  decide: DecideServer | undefined;
  /** Crashes in a row (reset once a thread stayed up a while): restart backoff. */
  crashes: number;
  startedAt: number;
  exited: Promise<void> | undefined;
  restartTimer: NodeJS.Timeout | undefined;
}

interface Barrier {
  readonly waiting: Set<number>;
  readonly resolve: () => void;
  readonly timer: NodeJS.Timeout;
}

const STABLE_MS = 30_000;
/** How long past the grace period shutdown waits for the threads to exit. */
const SHUTDOWN_SLACK_MS = 10_000;

export class FrontendThreads {
  private readonly slots: ThreadSlot[] = [];
  private readonly barriers = new Map<number, Barrier>();
  private nextBarrier = 1;
  private closing = false;
  /** Restarts after crashes, over the router's life. */
  restarts = 0;

  constructor(private readonly options: FrontendThreadsOptions) {
    for (let i = 1; i <= options.threads; i++) this.slots.push({ index: i, worker: undefined, decide: undefined, crashes: 0, startedAt: 0, exited: undefined, restartTimer: undefined });
  }

  /** Start every thread; resolves when all listen (rejects if one cannot). */
  async start(): Promise<void> {
    await Promise.all(this.slots.map((s) => this.spawn(s)));
  }

  /** Per front end (0 = the main thread) counters, for tests and the debug view. */
  counters(index: number): SharedCounters {
    return new SharedCounters(this.options.buffers, index);
  }

  get frontends(): number {
    return this.options.threads + 1;
  }

  /** The port every front end listens on. */
  get port(): number {
    return this.options.template.port;
  }

  /** The registry changed: every mirror gets the new membership. */
  membersChanged(): void {
    const members = this.options.members();
    this.broadcast({ t: 'workers', members });
  }

  /** Resolves once every live thread has handed over what it had buffered before this call. */
  barrier(): Promise<void> {
    const live = this.slots.filter((s) => s.worker !== undefined);
    if (live.length === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const id = this.nextBarrier++;
      const timer = setTimeout(() => this.endBarrier(id), this.options.barrierTimeoutMs ?? 2000);
      timer.unref();
      this.barriers.set(id, { waiting: new Set(live.map((s) => s.index)), resolve, timer });
      for (const s of live) s.worker!.postMessage({ t: 'barrier', id } satisfies ToThread);
    });
  }

  /** Tests: make thread `index` (1..N-1) throw from its event loop. */
  injectCrash(index: number): void {
    this.slots[index - 1]?.worker?.postMessage({ t: 'crash' } satisfies ToThread);
  }

  /** Resolves when thread `index` is up again (after a crash). */
  async whenRunning(index: number, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const s = this.slots[index - 1];
    while (s !== undefined && (s.worker === undefined || s.startedAt === 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    if (s === undefined || s.worker === undefined || s.startedAt === 0) throw new Error(`front-end thread ${index} is not running`);
  }

  /** Every thread stops accepting, drains in flight up to graceMs, closes its connections and exits. */
  async shutdown(graceMs: number): Promise<void> {
    this.closing = true;
    const waits: Promise<void>[] = [];
    for (const s of this.slots) {
      if (s.restartTimer !== undefined) clearTimeout(s.restartTimer);
      if (s.worker === undefined || s.exited === undefined) continue;
      s.worker.postMessage({ t: 'shutdown', graceMs } satisfies ToThread);
      waits.push(s.exited);
    }
    // A thread that does not exit (stuck in a loop) must not hang the router's shutdown.
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), graceMs + SHUTDOWN_SLACK_MS);
    });
    const stuck = await Promise.race([Promise.all(waits).then(() => false), late]);
    clearTimeout(timer);
    if (stuck) this.options.log.error({ event: 'frontend.stuck', waited_ms: graceMs + SHUTDOWN_SLACK_MS }, 'a front-end thread did not exit; giving up on it');
    for (const id of [...this.barriers.keys()]) this.endBarrier(id);
  }

  private spawn(s: ThreadSlot): Promise<void> {
    const o = this.options;
    const init: ThreadInit = { ...o.template, index: s.index, members: o.members() };
    const worker = new Worker(new URL('./thread-main.js', import.meta.url), { workerData: init });
    s.worker = worker;
    s.startedAt = 0;
    s.decide = new DecideServer(o.policy, (m) => worker.postMessage(m));
    // A new thread starts a new report dictionary.
    const reports = new ReportApplier(o.targets);
    let onReady: (() => void) | undefined;
    let onFailed: ((err: Error) => void) | undefined;
    const ready = new Promise<void>((resolve, reject) => {
      onReady = resolve;
      onFailed = reject;
    });
    worker.on('message', (m: ToMain) => {
      switch (m.t) {
        case 'report':
          try {
            reports.apply(m);
          } catch (err) {
            // A report that cannot be read is lost, not the router.
            o.log.error({ event: 'frontend.bad_report', frontend: s.index, err }, 'front-end thread report could not be applied');
          }
          break;
        case 'decide':
          s.decide?.decide(m);
          break;
        case 'barrier-ack':
          this.ack(m.id, s.index);
          break;
        case 'barrier-request':
          void this.barrier().then(() => worker.postMessage({ t: 'barrier-done', id: m.id } satisfies ToThread));
          break;
        case 'ready':
          s.startedAt = Date.now();
          onReady?.();
          break;
        case 'listen-failed':
          onFailed?.(new Error(`front-end thread ${s.index} cannot listen on ${o.template.host}:${o.template.port}: ${m.error}`));
          break;
        case 'closed':
          if (m.unfinished > 0) o.log.warn({ event: 'frontend.unfinished', frontend: s.index, unfinished: m.unfinished }, 'front-end thread stopped with requests unfinished');
          break;
      }
    });
    worker.on('error', (err) => o.log.error({ event: 'frontend.error', frontend: s.index, err }, 'front-end thread error'));
    s.exited = new Promise<void>((resolve) => {
      worker.once('exit', (code) => {
        this.onExit(s, worker, code);
        onFailed?.(new Error(`front-end thread ${s.index} exited with code ${code} before listening`));
        resolve();
      });
    });
    return ready;
  }

  private onExit(s: ThreadSlot, worker: Worker, code: number): void {
    if (s.worker !== worker) return;
    s.worker = undefined;
    s.decide = undefined;
    for (const [id, b] of this.barriers) {
      b.waiting.delete(s.index);
      if (b.waiting.size === 0) this.endBarrier(id);
    }
    const o = this.options;
    // Whatever its requests held is given back: they are gone with the thread.
    const returned = reconcileLedger(o.table, o.buffers, s.index);
    const limits = o.template.limits;
    const slots = limits === undefined ? 0 : reconcileLimits(limits.state, s.index);
    const lost = abandonActive(o.buffers, s.index);
    if (this.closing) return;
    if (s.startedAt === 0) {
      // Never listened: start() reports it; no restart loop.
      o.log.warn({ event: 'frontend.start_failed', frontend: s.index, code }, `front-end thread ${s.index} exited before listening`);
      return;
    }
    s.crashes = Date.now() - s.startedAt > STABLE_MS ? 1 : s.crashes + 1;
    const delay = Math.min(5_000, 100 * 2 ** (s.crashes - 1));
    o.log.error(
      { event: 'frontend.exited', frontend: s.index, code, lost_requests: lost, returned_in_flight: returned, returned_admission_slots: slots, restart_in_ms: delay },
      `front-end thread ${s.index} exited (code ${code}); restarting`,
    );
    s.restartTimer = setTimeout(() => {
      s.restartTimer = undefined;
      if (this.closing) return;
      this.restarts++;
      this.spawn(s).then(
        () => o.log.info({ event: 'frontend.restarted', frontend: s.index }, `front-end thread ${s.index} restarted`),
        (err: unknown) => o.log.error({ event: 'frontend.restart_failed', frontend: s.index, err }, 'front-end thread failed to restart'),
      );
    }, delay);
  }

  private ack(id: number, index: number): void {
    const b = this.barriers.get(id);
    if (b === undefined) return;
    b.waiting.delete(index);
    if (b.waiting.size === 0) this.endBarrier(id);
  }

  private endBarrier(id: number): void {
    const b = this.barriers.get(id);
    if (b === undefined) return;
    this.barriers.delete(id);
    clearTimeout(b.timer);
    b.resolve();
  }

  private broadcast(m: ToThread): void {
    for (const s of this.slots) s.worker?.postMessage(m);
  }
}
