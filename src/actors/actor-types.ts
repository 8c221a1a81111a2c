/** The actor runtime's public types (re-exported by actor.ts). */
import type { ResourceLimits } from 'node:worker_threads';
import type { Logger } from '../util/log.js';
import type { ActorCodec } from './protocol.js';

export type ActorCallback<V, C = undefined> = (err: Error | null, value: V | undefined, ctx: C) => void;

export type ActorTransport = 'port' | 'task';

export interface ActorTuning {
  /** `port` (default): batches over a MessagePort handed to the thread. `task`: one piscina task per batch. */
  readonly transport?: ActorTransport;
  /**
   * piscina's atomics mode. Default 'disabled': 'sync' parks the thread's event loop between tasks, so its
   * timers never fire and a port mailbox is never read. Only the task transport accepts 'sync'/'async'.
   */
  readonly atomics?: 'sync' | 'async' | 'disabled';
  /** Task transport only: piscina's concurrentTasksPerWorker (default 1). */
  readonly concurrentTasksPerWorker?: number;
  /** Messages per crossing (default 512). */
  readonly maxBatch?: number;
  /** Crossings awaiting their answers (default 8). */
  readonly maxBatchesInFlight?: number;
  /** Calls waiting on the host for a crossing (default 65536); beyond it calls fail with ActorOverloadedError. */
  readonly maxQueuedCalls?: number;
  /** Host -> thread payload encoding (default 'clone'); 'msgpack' packs each batch with msgpackr records. */
  readonly codec?: ActorCodec;
  /**
   * Thread -> host reply encoding over the port transport (default 'clone'). 'msgpack' packs each answer
   * batch's replies with msgpackr (errors are still cloned): ~4x less CPU on both sides than structured
   * clone for many small objects (policy decisions; docs/actors.md). Replies must then be msgpack values.
   */
  readonly replyCodec?: ActorCodec;
  /** First back-off after repeated deaths (default 50 ms), doubling up to maxRestartDelayMs (default 5 s). */
  readonly restartDelayMs?: number;
  readonly maxRestartDelayMs?: number;
  /**
   * Watchdog: when the oldest batch in flight has waited this long, the thread is presumed hung (an
   * endless loop, a handler that never settles) and is terminated and replaced like a crashed one.
   * 0 (default) disables it; actors whose handlers are synchronous (policies) should set it.
   */
  readonly watchdogMs?: number;
  /** Bound on close(): drain plus the thread's close hook (default 5 s). */
  readonly closeTimeoutMs?: number;
  readonly resourceLimits?: ResourceLimits;
  /**
   * Node flags of the thread (default: inherited from the process, as worker_threads do). Test runners
   * that preload loaders with --import make every thread start several times slower; tests pass [].
   */
  readonly execArgv?: readonly string[];
}

export interface ActorOptions<I> extends ActorTuning {
  readonly name: string;
  /** The worker module (its default export is `defineActor(...)`), as a path or file: URL. */
  readonly filename: string | URL;
  /** State to initialise a thread from; called at the first start and again at every restart. */
  readonly init: () => I;
  readonly logger?: Logger | undefined;
}

export interface ActorStats {
  readonly name: string;
  readonly available: boolean;
  readonly threadId: number;
  readonly restarts: number;
  readonly batchesSent: number;
  readonly callsSent: number;
  readonly inFlightBatches: number;
  readonly queuedCalls: number;
  readonly droppedTells: number;
  readonly callbackErrors: number;
}
