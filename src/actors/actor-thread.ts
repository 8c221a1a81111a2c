/**
 * The actor runtime, thread side. An actor's worker module keeps its state in module scope and
 * default-exports `defineActor({ init, handlers, close })`; piscina calls that export with the runtime's
 * tasks (protocol.ts): attach (once per thread), then batches, then close.
 *
 * Handlers run in message order. A handler may return a promise; the batch is answered when all of its
 * messages have settled. A handler that throws fails only its own message.
 */
import { threadId, type MessagePort } from 'node:worker_threads';
import { Packr, Unpackr } from 'msgpackr';
import type { ActorMessage, AnswerBatch, AttachResult, BatchTask, CloseAck, ReplyMap, RuntimeTask } from './protocol.js';

export type ActorHandlers<M extends ActorMessage, R extends ReplyMap<M>> = {
  readonly [K in M['t']]: (msg: Extract<M, { readonly t: K }>) => R[K] | Promise<R[K]>;
};

export interface ActorDefinition<M extends ActorMessage, R extends ReplyMap<M>, I> {
  /** Build the thread's state from the host's init data (called once per thread, before any message). */
  init(data: I): void | Promise<void>;
  handlers: ActorHandlers<M, R>;
  /** Flush and release before the thread is destroyed by close(). */
  close?(): void | Promise<void>;
}

type AnyHandler = (msg: ActorMessage) => unknown;
type TaskResult = AttachResult | AnswerBatch | null;

export function defineActor<M extends ActorMessage, R extends ReplyMap<M>, I>(
  def: ActorDefinition<M, R, I>,
): (task: RuntimeTask<I>) => TaskResult | Promise<TaskResult> {
  // A Map, not the object: a message tagged "constructor" must not reach Object.prototype.
  const handlers = new Map<string, AnyHandler>(Object.entries(def.handlers as unknown as Record<string, AnyHandler>));
  let attached = false;
  let unpackr: Unpackr | null = null;
  let replyPackr: Packr | null = null;
  let port: MessagePort | null = null;

  function decode(task: BatchTask): readonly ActorMessage[] {
    if (task.p !== undefined) {
      if (unpackr === null) throw new Error('packed batch on an actor attached without the msgpack codec');
      return unpackr.unpack(new Uint8Array(task.p)) as ActorMessage[];
    }
    return task.m ?? [];
  }

  function runBatch(b: number, msgs: readonly ActorMessage[]): AnswerBatch | Promise<AnswerBatch> {
    const n = msgs.length;
    const r = new Array<unknown>(n);
    let e: (Error | null)[] | null = null;
    let pending = false;
    for (let i = 0; i < n; i++) {
      const msg = msgs[i] as ActorMessage;
      try {
        const handler = handlers.get(msg.t);
        if (handler === undefined) throw new Error(`unknown message type "${String(msg.t)}"`);
        const v = handler(msg);
        if (v instanceof Promise) pending = true;
        r[i] = v === undefined ? null : v;
      } catch (err) {
        if (e === null) e = new Array<Error | null>(n).fill(null);
        e[i] = asError(err);
        r[i] = null;
      }
    }
    if (!pending) return { b, tid: threadId, r, e };
    return settleAll(b, r, e);
  }

  async function settleAll(b: number, r: unknown[], e: (Error | null)[] | null): Promise<AnswerBatch> {
    for (let i = 0; i < r.length; i++) {
      const v = r[i];
      if (!(v instanceof Promise)) continue;
      try {
        r[i] = (await v) ?? null;
      } catch (err) {
        if (e === null) e = new Array<Error | null>(r.length).fill(null);
        e[i] = asError(err);
        r[i] = null;
      }
    }
    return { b, tid: threadId, r, e };
  }

  function post(answer: AnswerBatch): void {
    const p = port as MessagePort;
    if (replyPackr !== null && answer.r.length > 0) {
      let bytes: Uint8Array | null = null;
      try {
        const view = replyPackr.pack(answer.r);
        bytes = new Uint8Array(view.length); // msgpackr's arena is reused: copy what we transfer
        bytes.set(view);
      } catch {
        bytes = null; // a reply msgpack cannot encode: clone this batch (and isolate what fails)
      }
      if (bytes !== null) {
        const packed: AnswerBatch = { b: answer.b, tid: answer.tid, r: [], e: answer.e, p: bytes.buffer as ArrayBuffer };
        try {
          p.postMessage(packed, [bytes.buffer as ArrayBuffer]);
          return;
        } catch {
          // an error that cannot be cloned: fall through to the clone path, which isolates it
        }
      }
    }
    try {
      p.postMessage(answer);
    } catch {
      p.postMessage(isolateUncloneable(answer));
    }
  }

  function onPortMessage(task: BatchTask | { readonly k: 'close' }): void {
    if (task.k === 'batch') {
      let answer: AnswerBatch | Promise<AnswerBatch>;
      try {
        answer = runBatch(task.b, decode(task));
      } catch (err) {
        const error = asError(err);
        post({ b: task.b, tid: threadId, r: [], e: [error] });
        return;
      }
      if (answer instanceof Promise) answer.then(post);
      else post(answer);
      return;
    }
    const ack: CloseAck = { c: 'closed', tid: threadId };
    const p = port as MessagePort;
    Promise.resolve()
      .then(() => def.close?.())
      .then(
        () => p.postMessage(ack),
        () => p.postMessage(ack),
      );
  }

  return function actorTask(task: RuntimeTask<I>): TaskResult | Promise<TaskResult> {
    switch (task.k) {
      case 'attach':
        return attach(task.init, task.port, task.codec === 'msgpack', task.replyCodec === 'msgpack');
      case 'batch':
        if (!attached) throw new Error('actor thread received a batch before attach');
        return runBatch(task.b, decode(task));
      case 'close':
        return Promise.resolve(def.close?.()).then(() => null);
    }
  };

  async function attach(init: I, mailbox: MessagePort | null, msgpack: boolean, packReplies: boolean): Promise<AttachResult> {
    if (attached) throw new Error('actor thread attached twice');
    await def.init(init);
    attached = true;
    if (msgpack) unpackr = new Unpackr();
    if (packReplies) replyPackr = new Packr();
    if (mailbox !== null) {
      port = mailbox;
      port.on('message', onPortMessage);
    }
    return { tid: threadId };
  }
}

/**
 * A reply that cannot be cloned (a function, a socket...) made the whole answer fail to post. Rare, so
 * find the culprits one by one and fail only those messages; the rest of the batch is answered normally.
 * (A DOMException does not survive structured clone as an Error: the replacement is a plain Error.)
 */
function isolateUncloneable(answer: AnswerBatch): AnswerBatch {
  const r = answer.r.slice();
  const e = answer.e === null ? new Array<Error | null>(r.length).fill(null) : answer.e.slice();
  for (let i = 0; i < r.length; i++) {
    try {
      structuredClone(r[i]);
    } catch (err) {
      r[i] = null;
      e[i] = new Error(`reply could not be sent: ${asError(err).message}`);
    }
    if (e[i] !== null) {
      try {
        structuredClone(e[i]);
      } catch {
        e[i] = new Error(String((e[i] as Error).message));
      }
    }
  }
  return { b: answer.b, tid: answer.tid, r, e };
}

/** Errors cross back by structured clone: keep name and message, drop whatever might not clone. */
function asError(err: unknown): Error {
  if (!(err instanceof Error)) return new Error(String(err));
  if (Object.getPrototypeOf(err) === Error.prototype && err.cause === undefined) return err;
  const plain = new Error(err.message);
  if (err.stack !== undefined) plain.stack = err.stack;
  return plain;
}
