/**
 * Message protocols of the actor runtime.
 *
 * Two layers:
 * 1. The runtime's own wire format (attach / batch / close tasks and answer batches), shared by
 *    src/actors/actor.ts with actor-mailbox.ts (host side) and src/actors/actor-thread.ts (thread side).
 *    User code never builds these by hand.
 * 2. Typed actor protocols: every actor declares a discriminated union of messages (tag `t`) and a map from
 *    tag to reply type. `Actor<M, R>` then types `ask({ t: 'decide', ... })` as `Promise<R['decide']>`.
 *    The policy actor's protocol lives here; other actors declare theirs the same way.
 */
import type { MessagePort } from 'node:worker_threads';
import type { CompletionFeedback, Decision, PolicyFactoryOptions, RequestFeatures, WorkerInfo } from '../policies/types.js';

// ---------------------------------------------------------------------------------------------------
// Typed actor protocols

/** Every actor message is tagged by `t`; the tag selects the handler and the reply type. */
export interface ActorMessage {
  readonly t: string;
}

/** Reply type per message tag. */
export type ReplyMap<M extends ActorMessage> = { readonly [K in M['t']]: unknown };

/** The reply type of one message. */
export type ReplyOf<M extends ActorMessage, R extends ReplyMap<M>, T extends M> = R[T['t']];

// ---------------------------------------------------------------------------------------------------
// Runtime wire format (host <-> actor thread)

/** How batch payloads travel host -> thread: structured clone, or msgpackr-packed into a transferred buffer. */
export type ActorCodec = 'clone' | 'msgpack';

/**
 * First task of every incarnation (thread). Carries the state to (re)initialise from and, for the port
 * transport, the MessagePort that becomes the actor's mailbox.
 */
export interface AttachTask<I> {
  readonly k: 'attach';
  readonly name: string;
  readonly init: I;
  readonly port: MessagePort | null;
  readonly codec: ActorCodec;
  /** How the thread sends replies back over the port: cloned, or msgpackr-packed (AnswerBatch.p). */
  readonly replyCodec: ActorCodec;
}

/** One crossing: many messages. Either `m` (cloned) or `p` (msgpackr-packed array of messages). */
export interface BatchTask {
  readonly k: 'batch';
  /** Batch id, echoed in the answer. */
  readonly b: number;
  readonly m?: readonly ActorMessage[] | undefined;
  readonly p?: ArrayBuffer | undefined;
}

/** Drain request sent by close(): the thread runs its close hook and acknowledges. */
export interface CloseTask {
  readonly k: 'close';
}

export type RuntimeTask<I> = AttachTask<I> | BatchTask | CloseTask;

export interface AttachResult {
  /** worker_threads threadId of the incarnation; every answer batch carries it too. */
  readonly tid: number;
}

/** Answers to one batch, position i answering message i. `e` is null when no message failed. */
export interface AnswerBatch {
  readonly b: number;
  readonly tid: number;
  /** The replies; empty when they travel packed in `p` (replyCodec 'msgpack'). */
  readonly r: unknown[];
  /** msgpackr-packed array of the replies (transferred). */
  readonly p?: ArrayBuffer | undefined;
  readonly e: (Error | null)[] | null;
}

export interface CloseAck {
  readonly c: 'closed';
  readonly tid: number;
}

// ---------------------------------------------------------------------------------------------------
// The policy actor's protocol (src/policies/policy-actor.ts)

/** How an actor thread finds a policy: a built-in name, or a plugin module that default-exports a factory. */
export interface PolicySpec {
  readonly name: string;
  readonly options: PolicyFactoryOptions;
  /** Absolute file path or file: URL of a plugin module (default export or `createPolicy`: a PolicyFactory). */
  readonly module?: string | undefined;
}

export interface PolicyActorInit {
  readonly spec: PolicySpec;
  /** The shared worker table (WorkerTable.buffer); the actor attaches to it and reads live counters. */
  readonly table: SharedArrayBuffer;
  /** Membership to start from; replayed after every restart. */
  readonly workers: readonly WorkerInfo[];
  /** Period of policy.tick (eviction and the like); 0 disables. */
  readonly tickIntervalMs: number;
  /** Seed of the actor's Rng (re-seeded from it after a restart). */
  readonly seed: number;
}

export type PolicyActorMessage =
  | { readonly t: 'decide'; readonly req: RequestFeatures }
  | { readonly t: 'observe'; readonly feedback: CompletionFeedback }
  | { readonly t: 'workers'; readonly workers: readonly WorkerInfo[] }
  | { readonly t: 'snapshot' };

export interface PolicyActorSnapshot {
  readonly policy: string;
  readonly threadId: number;
  readonly workers: number;
  readonly decisions: number;
  readonly observed: number;
  readonly state: unknown;
}

export interface PolicyActorReplies {
  readonly decide: Decision | null;
  readonly observe: null;
  readonly workers: null;
  readonly snapshot: PolicyActorSnapshot;
}
