/**
 * The policy actor thread: one policy instance in module scope, built by name from the init data, reading
 * live counters from the shared worker table and membership from 'workers' messages. Loaded by piscina
 * through ActorPolicyHost (host.ts); after a restart the host replays the current membership via init.
 */
import { threadId } from 'node:worker_threads';
import { defineActor } from '../actors/actor-thread.js';
import { WorkerTable } from '../actors/worker-table.js';
import type { PolicyActorInit, PolicyActorMessage, PolicyActorReplies } from '../actors/protocol.js';
import { Rng } from '../util/rng.js';
import { monotonicNow } from './common.js';
import { createPolicyFromSpec } from './registry.js';
import { GroupedMembership, withAdmission } from './membership.js';
import type { Policy, PolicyContext, RequestFeatures, WorkerInfo } from './types.js';

/**
 * A request whose text crossed in pieces (RequestFeatures.textChunks): `text` is joined on first read,
 * so a policy that works on the pieces never builds the whole string.
 */
class ChunkedRequest implements RequestFeatures {
  readonly requestId: string;
  readonly route: RequestFeatures['route'];
  readonly inputTokens: number;
  readonly maxNewTokens: number;
  readonly stream: boolean;
  readonly model: string | undefined;
  readonly group: string | undefined;
  readonly admission: string | undefined;
  readonly textChunks: readonly string[];
  private joined: string | null = null;
  constructor(req: RequestFeatures) {
    this.requestId = req.requestId;
    this.route = req.route;
    this.inputTokens = req.inputTokens;
    this.maxNewTokens = req.maxNewTokens;
    this.stream = req.stream;
    this.model = req.model;
    this.group = req.group;
    this.admission = req.admission;
    this.textChunks = req.textChunks ?? [req.text];
  }
  get text(): string {
    this.joined ??= this.textChunks.join('');
    return this.joined;
  }
}

let policy: Policy | null = null;
let ctx: { table: WorkerTable; workers: readonly WorkerInfo[]; rng: Rng; now(): number } | null = null;
let tickTimer: NodeJS.Timeout | null = null;
const membership = new GroupedMembership();
let decisions = 0;
let observed = 0;

function state(): { policy: Policy; ctx: PolicyContext & { workers: readonly WorkerInfo[] } } {
  if (policy === null || ctx === null) throw new Error('policy actor is not initialised');
  return { policy, ctx };
}

export default defineActor<PolicyActorMessage, PolicyActorReplies, PolicyActorInit>({
  async init(data) {
    const p = await createPolicyFromSpec(data.spec);
    const c = { table: WorkerTable.attach(data.table), workers: data.workers, rng: new Rng(data.seed), now: monotonicNow };
    membership.set(data.workers);
    p.onWorkersChanged?.(data.workers);
    policy = p;
    ctx = c;
    if (p.tick !== undefined && data.tickIntervalMs > 0) {
      // The pool runs with atomics 'disabled', so this thread's event loop (and this timer) keeps running.
      tickTimer = setInterval(() => p.tick?.(monotonicNow()), data.tickIntervalMs);
    }
  },
  handlers: {
    decide(msg) {
      const s = state();
      decisions++;
      const req = msg.req.textChunks === undefined ? msg.req : new ChunkedRequest(msg.req);
      (s.ctx as { workers: readonly WorkerInfo[] }).workers = membership.candidatesFor(s.ctx.table, req.group);
      return withAdmission(s.policy.select(req, s.ctx), req);
    },
    observe(msg) {
      observed++;
      state().policy.observe?.(msg.feedback);
      return null;
    },
    workers(msg) {
      const s = state();
      membership.set(msg.workers);
      (ctx as { workers: readonly WorkerInfo[] }).workers = msg.workers;
      s.policy.onWorkersChanged?.(msg.workers);
      return null;
    },
    snapshot() {
      const s = state();
      return {
        policy: s.policy.name,
        threadId,
        workers: membership.all.length,
        decisions,
        observed,
        state: s.policy.snapshot?.() ?? null,
      };
    },
  },
  async close() {
    if (tickTimer !== null) clearInterval(tickTimer);
    tickTimer = null;
    // Flush what the policy buffers (marginal_utility's decisions CSV) before the thread is destroyed.
    await policy?.close?.();
  },
});
