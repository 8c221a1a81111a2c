/**
 * The actor runtime's host-side parts (actor.ts is the Actor, actor-mailbox.ts its mailbox): a crossing's
 * batch of calls, one thread incarnation with the batches it owes, how an incarnation is spawned, and
 * small helpers.
 */
import { MessageChannel, type MessagePort, type Worker } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { Packr, Unpackr } from 'msgpackr';
import type { ActorCallback, ActorTransport, ActorTuning } from './actor-types.js';
import type { ActorCodec, ActorMessage, BatchTask } from './protocol.js';
import { copyBytes } from '../util/typed-copy.js';

/** One crossing's worth of calls; recycled after its answers are dispatched. */
export class Batch {
  id = 0;
  sentAt = 0;
  msgs: ActorMessage[] = [];
  readonly cbs: (ActorCallback<unknown, unknown> | null)[] = [];
  readonly ctxs: unknown[] = [];
  /** Buffers the messages hand over (moved, not copied, when the batch crosses by structured clone). */
  readonly transfer: ArrayBuffer[] = [];
}

/** One thread (one pool) and the batches it owes answers for. */
export class Incarnation {
  threadId = -1;
  worker: Worker | null = null;
  attached = false;
  dead = false;
  lastError: Error | null = null;
  watchdog: NodeJS.Timeout | null = null;
  /** In send order: the first entry is the oldest batch in flight. */
  readonly inflight = new Map<number, Batch>();
  closeAck: (() => void) | null = null;
  constructor(
    readonly pool: Piscina,
    readonly port: MessagePort | null,
    readonly packr: Packr | null,
    /** Reads packed replies (replyCodec 'msgpack'). */
    readonly unpackr: Unpackr | null,
  ) {}
}

export const noop = (): void => {};

/**
 * A new incarnation: a piscina pool of exactly one thread and, for the port transport, the channel whose
 * `threadPort` end goes to the thread with its attach task (the other end is `inc.port`).
 */
export function spawnIncarnation(
  filename: string,
  transport: ActorTransport,
  atomics: 'sync' | 'async' | 'disabled',
  codec: ActorCodec,
  replyCodec: ActorCodec,
  tuning: ActorTuning,
): { inc: Incarnation; threadPort: MessagePort | null } {
  const pool = new Piscina({
    filename,
    minThreads: 1,
    maxThreads: 1,
    idleTimeout: Infinity,
    atomics,
    concurrentTasksPerWorker: transport === 'task' ? (tuning.concurrentTasksPerWorker ?? 1) : 1,
    ...(tuning.resourceLimits === undefined ? {} : { resourceLimits: tuning.resourceLimits }),
    ...(tuning.execArgv === undefined ? {} : { execArgv: [...tuning.execArgv] }),
  });
  let port1: MessagePort | null = null;
  let port2: MessagePort | null = null;
  if (transport === 'port') {
    const channel = new MessageChannel();
    port1 = channel.port1;
    port2 = channel.port2;
  }
  const inc = new Incarnation(pool, port1, codec === 'msgpack' ? new Packr() : null, replyCodec === 'msgpack' ? new Unpackr() : null);
  return { inc, threadPort: port2 };
}

export function settle(err: Error | null, value: unknown, ctx: { resolve: (v: unknown) => void; reject: (e: Error) => void }): void {
  if (err !== null) ctx.reject(err);
  else ctx.resolve(value);
}

export function packedTask(packr: Packr, id: number, msgs: readonly ActorMessage[]): BatchTask {
  // msgpackr returns a view into its shared arena: copy into an exactly-sized buffer we can transfer.
  const packed = copyBytes(packr.pack(msgs));
  return { k: 'batch', b: id, p: packed.buffer as ArrayBuffer };
}

export function asError(err: unknown): Error {
  if (err instanceof Error) return err;
  // e.g. a DOMException thrown in the thread arrives as a plain object
  const message = typeof err === 'object' && err !== null && typeof (err as { message?: unknown }).message === 'string' ? (err as { message: string }).message : String(err);
  return new Error(message);
}

export function positiveInt(value: number, what: string): number {
  if (!Number.isInteger(value) || value < 1) throw new Error(`${what} must be a positive integer, got ${value}`);
  return value;
}

/** Resolves with the promise or after ms, whichever first (close must not hang on a stuck thread). */
export function withTimeout(promise: Promise<void>, ms: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    promise.then(
      () => {
        clearTimeout(timer);
        resolve();
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(asError(err));
      },
    );
  });
}
