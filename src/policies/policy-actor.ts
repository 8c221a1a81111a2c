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
import type { Policy, PolicyContext, WorkerInfo } from './types.js';

let policy: Policy | null = null;
let ctx: { table: WorkerTable; workers: readonly WorkerInfo[]; rng: Rng; now(): number } | null = null;
let tickTimer: NodeJS.Timeout | null = null;
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
      return s.policy.select(msg.req, s.ctx);
    },
    observe(msg) {
      observed++;
      state().policy.observe?.(msg.feedback);
      return null;
    },
    workers(msg) {
      const s = state();
      (ctx as { workers: readonly WorkerInfo[] }).workers = msg.workers;
      s.policy.onWorkersChanged?.(msg.workers);
      return null;
    },
    snapshot() {
      const s = state();
      return {
        policy: s.policy.name,
        threadId,
        workers: s.ctx.workers.length,
        decisions,
        observed,
        state: s.policy.snapshot?.() ?? null,
      };
    },
  },
  close() {
    if (tickTimer !== null) clearInterval(tickTimer);
    tickTimer = null;
  },
});
