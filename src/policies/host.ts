/**
 * Policy hosts: what the front end calls to route a request. Same interface whether the policy decides on
 * the calling thread (InlinePolicyHost: stateless policies, synchronous callback) or in a policy actor
 * thread (ActorPolicyHost: stateful policies; decisions batched through the actor).
 *
 * Stale decisions: a decision names (slot, generation). Between the decision and its use the worker may
 * be removed and its slot reused; the caller must check `table.isCurrent(decision)` (WorkerTable.acquire
 * does it and returns false) and, when stale, ask for a new decision. Hosts never hand out a worker that
 * was unavailable or removed at decision time.
 *
 * Routing never stops: while the policy actor is restarting, or when a decision call fails, the host
 * answers with a stateless least-loaded choice whose reason starts with "fallback:".
 *
 * Hosts keep plain copies of the membership (membership.ts) and, for a request that size-aware admission
 * placed in a worker group, give the policy that group's members only; `shards` > 1 spreads a stateful
 * policy over several actors by a hash of the routing text's first block (sharded-host.ts).
 */
import { Actor, ActorClosedError, ActorCrashedError, ActorOverloadedError, type ActorCallback, type ActorTuning } from '../actors/actor.js';
import type { WorkerTable } from '../actors/worker-table.js';
import type { PolicyActorInit, PolicyActorMessage, PolicyActorReplies, PolicySpec } from '../actors/protocol.js';
import type { Logger } from '../util/log.js';
import { Rng } from '../util/rng.js';
import { leastLoadedDecision, monotonicNow, randomSeed } from './common.js';
import { createPolicy, isBuiltinPolicy, policySpec } from './registry.js';
import { GroupedMembership, plainMembers, withAdmission } from './membership.js';
import { chunkText, TEXT_CHUNK_CHARS } from './radix-tree.js';
import { MAX_SHARDS, ShardedPolicyHost, shardSeedOf } from './sharded-host.js';
import { SwitchyardError } from '../errors.js';
import type { CompletionFeedback, Decision, Policy, PolicyFactoryOptions, RequestFeatures, WorkerInfo } from './types.js';

export type DecideCallback = (err: Error | null, d: Decision | null) => void;

export interface PolicyHost {
  readonly name: string;
  /** Where decisions are made. */
  readonly placement: 'inline' | 'actor';
  /** Choose a worker; cb gets null when no worker is available. Never calls back with an error today (fallbacks). */
  decide(req: RequestFeatures, cb: DecideCallback): void;
  /** A request ended (fed to the policy when it observes). */
  observe(f: CompletionFeedback): void;
  /** Replace the membership (the host keeps a copy; an actor gets it again after a restart). */
  setWorkers(ws: readonly WorkerInfo[]): void;
  snapshot(): Promise<unknown>;
  /** Resolves when decisions come from the policy itself (immediately for inline hosts). */
  ready(): Promise<void>;
  close(): Promise<void>;
}

export const FALLBACK_RESTARTING = 'fallback: policy actor restarting';
/** Texts longer than this cross into a policy actor as TEXT_CHUNK_CHARS pieces (RequestFeatures.textChunks). */
export const CHUNK_TEXT_ABOVE = 2 * TEXT_CHUNK_CHARS;
export const DEFAULT_POLICY_WATCHDOG_MS = 2000;

export interface PolicyHostOptions {
  /** 'auto' (default): stateful policies in an actor, stateless inline. 'actor' forces an actor (tests, measuring the hop). */
  readonly placement?: 'auto' | 'inline' | 'actor';
  /** Period of policy.tick (default 1000 ms; 0 disables). */
  readonly tickIntervalMs?: number;
  /** Tuning of the policy actor (batch sizes, transport). */
  readonly actor?: ActorTuning;
  /**
   * Policy actors sharing the state by a hash of the routing text's first block (default 1). Applies to
   * policies placed in an actor; see ShardedPolicyHost.
   */
  readonly shards?: number;
}

interface HostCommon {
  readonly seed: number;
  readonly logger?: Logger | undefined;
  readonly tickIntervalMs?: number | undefined;
}

/** Runs a policy on the calling thread; decide calls back synchronously. */
export class InlinePolicyHost implements PolicyHost {
  readonly name: string;
  readonly placement = 'inline' as const;
  private readonly policy: Policy;
  private readonly table: WorkerTable;
  private readonly ctx: { table: WorkerTable; workers: readonly WorkerInfo[]; rng: Rng; now(): number };
  private readonly membership = new GroupedMembership();
  private readonly scratch: WorkerInfo[] = [];
  private readonly fallbackRng: Rng;
  private readonly logger: Logger | undefined;
  private readonly tickTimer: NodeJS.Timeout | null = null;
  private errors = 0;
  private decisions = 0;
  private closed = false;

  constructor(policy: Policy, table: WorkerTable, options: HostCommon) {
    this.name = policy.name;
    this.policy = policy;
    this.table = table;
    this.logger = options.logger;
    this.ctx = { table, workers: [], rng: new Rng(options.seed), now: monotonicNow };
    this.fallbackRng = new Rng(options.seed ^ 0x5bd1e995);
    const tickMs = options.tickIntervalMs ?? 1000;
    if (policy.tick !== undefined && tickMs > 0) {
      this.tickTimer = setInterval(() => policy.tick?.(monotonicNow()), tickMs);
      this.tickTimer.unref();
    }
  }

  decide(req: RequestFeatures, cb: DecideCallback): void {
    let d: Decision | null;
    try {
      this.ctx.workers = this.membership.candidatesFor(this.table, req.group);
      d = withAdmission(this.policy.select(req, this.ctx), req);
      this.decisions++;
    } catch (err) {
      d = this.onPolicyError(err, req);
    }
    cb(null, d);
  }

  observe(f: CompletionFeedback): void {
    if (this.policy.observe === undefined) return;
    try {
      this.policy.observe(f);
    } catch (err) {
      this.onPolicyError(err, null);
    }
  }

  setWorkers(ws: readonly WorkerInfo[]): void {
    const copy = plainMembers(ws);
    this.membership.set(copy);
    this.ctx.workers = copy;
    this.policy.onWorkersChanged?.(copy);
  }

  snapshot(): Promise<unknown> {
    return Promise.resolve({
      policy: this.name,
      placement: this.placement,
      workers: this.membership.all.length,
      decisions: this.decisions,
      errors: this.errors,
      state: this.policy.snapshot?.() ?? null,
    });
  }

  ready(): Promise<void> {
    return Promise.resolve();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.tickTimer !== null) clearInterval(this.tickTimer);
    try {
      await this.policy.close?.();
    } catch (err) {
      this.logger?.error({ policy: this.name, err }, 'policy close failed');
    }
  }

  private onPolicyError(err: unknown, req: RequestFeatures | null): Decision | null {
    this.errors++;
    const message = err instanceof Error ? err.message : String(err);
    if (this.errors <= 10 || this.errors % 1000 === 0) this.logger?.error({ policy: this.name, err, errors: this.errors }, 'policy threw');
    if (req === null) return null;
    return groupFallback(this.table, this.membership, req, this.scratch, this.fallbackRng, `fallback: policy error: ${message}`);
  }
}

/** Runs a policy in a policy actor thread (piscina, one thread), with a stateless fallback. */
export class ActorPolicyHost implements PolicyHost {
  readonly name: string;
  readonly placement = 'actor' as const;
  readonly actor: Actor<PolicyActorMessage, PolicyActorReplies, PolicyActorInit>;
  private readonly table: WorkerTable;
  private readonly forwardFeedback: boolean;
  private workers: readonly WorkerInfo[] = Object.freeze([]);
  /** The membership by worker group: a fallback decision respects size-aware admission too. */
  private readonly membership = new GroupedMembership();
  private readonly scratch: WorkerInfo[] = [];
  private readonly fallbackRng: Rng;
  private fallbacks = 0;
  private closed = false;

  /**
   * One callback per host: the caller's cb travels as the call's ctx, so no closure per decision. A
   * request that admission placed in a group travels with its cb (an object only for those), so that a
   * fallback stays in the group.
   */
  private readonly onDecided: ActorCallback<Decision | null, DecideCallback | GroupedCall> = (err, d, ctx) => {
    if (typeof ctx === 'function') {
      if (err === null) ctx(null, d ?? null);
      else ctx(null, this.fallback(err, null));
    } else if (err === null) ctx.cb(null, d ?? null);
    else ctx.cb(null, this.fallback(err, ctx.req));
  };

  constructor(
    spec: PolicySpec,
    table: WorkerTable,
    options: HostCommon & { readonly actor?: ActorTuning | undefined; readonly forwardFeedback?: boolean | undefined },
  ) {
    this.name = spec.name;
    this.table = table;
    this.forwardFeedback = options.forwardFeedback ?? true;
    this.fallbackRng = new Rng(options.seed ^ 0x5bd1e995);
    const tickIntervalMs = options.tickIntervalMs ?? 1000;
    this.actor = new Actor<PolicyActorMessage, PolicyActorReplies, PolicyActorInit>({
      // Policy handlers are synchronous: a decision unanswered for 2 s means a stuck thread.
      watchdogMs: DEFAULT_POLICY_WATCHDOG_MS,
      // Decisions are many small objects: packed, they cost ~4x less CPU than cloned on each side.
      replyCodec: 'msgpack',
      ...options.actor,
      name: `policy:${spec.name}`,
      filename: new URL('./policy-actor.js', import.meta.url),
      // Called at every (re)start: the thread always begins from the current membership.
      init: () => ({ spec, table: table.buffer, workers: this.workers, tickIntervalMs, seed: options.seed }),
      logger: options.logger,
    });
  }

  get available(): boolean {
    return this.actor.available;
  }

  decide(req: RequestFeatures, cb: DecideCallback): void {
    if (!this.actor.available) {
      cb(null, this.fallback(null, req));
      return;
    }
    const ctx = req.group === undefined && req.admission === undefined ? cb : { req, cb };
    // A long text crosses in pieces: one string over V8's large-object size costs a fresh allocation (a
    // page fault per 4 KB) to serialise here and again to deserialise there (docs/radix-tree.md).
    const msg = req.text.length > CHUNK_TEXT_ABOVE ? { ...req, text: '', textChunks: chunkText(req.text) } : req;
    this.actor.call({ t: 'decide', req: msg }, this.onDecided, ctx);
  }

  observe(f: CompletionFeedback): void {
    if (this.forwardFeedback) this.actor.tell({ t: 'observe', feedback: f });
  }

  setWorkers(ws: readonly WorkerInfo[]): void {
    const copy = plainMembers(ws);
    this.workers = copy;
    this.membership.set(copy);
    this.actor.tell({ t: 'workers', workers: copy });
  }

  async snapshot(): Promise<unknown> {
    const base = {
      policy: this.name,
      placement: this.placement,
      available: this.actor.available,
      restarts: this.actor.restarts,
      fallbacks: this.fallbacks,
      workers: this.workers.length,
      runtime: this.actor.stats(),
    };
    if (!this.actor.available) return { ...base, actor: null };
    try {
      return { ...base, actor: await this.actor.ask({ t: 'snapshot' }) };
    } catch (err) {
      return { ...base, actor: null, error: err instanceof Error ? err.message : String(err) };
    }
  }

  ready(): Promise<void> {
    return this.actor.whenAvailable();
  }

  close(): Promise<void> {
    this.closed = true;
    return this.actor.close();
  }

  /** The stateless choice while the policy cannot answer; `req` null: a request outside any group. */
  private fallback(err: Error | null, req: RequestFeatures | null): Decision | null {
    this.fallbacks++;
    let reason: string;
    if (err === null || err instanceof ActorCrashedError) reason = this.closed ? 'fallback: policy host closed' : FALLBACK_RESTARTING;
    else if (err instanceof ActorClosedError) reason = 'fallback: policy host closed';
    else if (err instanceof ActorOverloadedError) reason = 'fallback: policy actor overloaded';
    else reason = `fallback: policy error: ${err.message}`;
    if (req === null) return leastLoadedDecision(this.table, this.workers, this.scratch, this.fallbackRng, reason);
    return groupFallback(this.table, this.membership, req, this.scratch, this.fallbackRng, reason);
  }
}

/** A decision call's ctx for a request admitted to a worker group. */
interface GroupedCall {
  readonly req: RequestFeatures;
  readonly cb: DecideCallback;
}

/**
 * The hosts' stateless fallback for one request: least loaded among the members of the request's
 * admission group (every member when it has none or none of its group is available, as policies are
 * given), the reason prefixed with admission's like a policy's decision.
 */
function groupFallback(table: WorkerTable, membership: GroupedMembership, req: RequestFeatures, scratch: WorkerInfo[], rng: Rng, reason: string): Decision | null {
  return withAdmission(leastLoadedDecision(table, membership.candidatesFor(table, req.group), scratch, rng, reason), req);
}

/**
 * The host for a policy: stateless policies inline, stateful ones (policy.stateful === true) in an actor;
 * `hostOptions.placement` overrides. Unknown names throw a SwitchyardError listing the valid ones.
 */
export function createPolicyHost(
  name: string,
  options: PolicyFactoryOptions,
  table: WorkerTable,
  logger?: Logger,
  hostOptions: PolicyHostOptions = {},
): PolicyHost {
  const seed = options.seed ?? randomSeed();
  const seeded: PolicyFactoryOptions = { ...options, seed };
  const policy = createPolicy(name, seeded); // validates the name and options on this thread, early
  const placement = hostOptions.placement ?? 'auto';
  const inActor = placement === 'actor' || (placement === 'auto' && policy.stateful);
  const common = { seed, logger, tickIntervalMs: hostOptions.tickIntervalMs };
  if (!inActor) return new InlinePolicyHost(policy, table, common);
  const spec = policySpec(name, seeded);
  if (!isBuiltinPolicy(name) && spec.module === undefined) {
    throw new SwitchyardError(
      'invalid_request',
      `policy "${name}" must run in an actor thread but was registered without a module (use registerPolicyModule)`,
    );
  }
  const forwardFeedback = policy.observe !== undefined;
  const shards = hostOptions.shards ?? 1;
  if (!(Number.isInteger(shards) && shards >= 1 && shards <= MAX_SHARDS)) {
    throw new SwitchyardError('invalid_request', `policy shards must be an integer in [1, ${MAX_SHARDS}], got ${String(shards)}`);
  }
  if (shards === 1) return new ActorPolicyHost(spec, table, { ...common, actor: hostOptions.actor, forwardFeedback });
  const hosts: ActorPolicyHost[] = [];
  for (let i = 0; i < shards; i++) {
    const shardSeed = shardSeedOf(seed, i);
    const shardSpec = policySpec(name, { ...seeded, seed: shardSeed, shardIndex: i, shardCount: shards });
    hosts.push(new ActorPolicyHost(shardSpec, table, { ...common, seed: shardSeed, actor: hostOptions.actor, forwardFeedback }));
  }
  return new ShardedPolicyHost(name, hosts);
}
