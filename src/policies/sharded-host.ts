/**
 * `--policy-shards N`: N policy actors, each owning the state (cache_aware: the radix trees) for the
 * requests whose routing text's first block hashes to it. Requests that share that block always meet
 * the same actor, so a shared prefix longer than the block keeps its cache affinity; loads are read from
 * the shared worker table, so balancing stays fleet-wide. Decisions for different shards run in
 * parallel threads.
 *
 * Feedback and membership go to every shard (each keeps per-worker state of its own); snapshots are
 * gathered from all of them and merged.
 */
import type { ActorPolicyHost, DecideCallback, PolicyHost } from './host.js';
import { mergeCacheAwareStates } from './cache-aware.js';
import { plainMembers } from './membership.js';
import type { CompletionFeedback, RequestFeatures, WorkerInfo } from './types.js';

/** Characters of the routing text that pick the shard (the whole text when shorter). */
export const SHARD_BLOCK_CHARS = 64;
export const MAX_SHARDS = 64;

/**
 * FNV-1a over the first SHARD_BLOCK_CHARS UTF-16 code units, finalised, as an unsigned 32-bit number: the shard key.
 * Replicas publish it with their prefix chains so that each receiver hands a chain to the shard it runs
 * for that text, whatever its own shard count.
 */
export function shardKeyOf(text: string): number {
  const end = text.length < SHARD_BLOCK_CHARS ? text.length : SHARD_BLOCK_CHARS;
  let h = 0x811c9dc5;
  for (let i = 0; i < end; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  // FNV-1a's low bits depend only on the characters' low bits (the lowest is the parity of the odd
  // characters), and the shard is taken modulo a small n: fold the high bits down first (murmur3 fmix32).
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The shard of a text among n: its shard key modulo n. Same block, same shard. */
export function shardOf(text: string, n: number): number {
  if (n <= 1) return 0;
  return shardKeyOf(text) % n;
}

/** Each shard's seed, derived from the host's: distinct streams, reproducible. */
export function shardSeedOf(seed: number, index: number): number {
  return (seed + Math.imul(index, 0x9e3779b9)) >>> 0;
}

export class ShardedPolicyHost implements PolicyHost {
  readonly name: string;
  readonly placement = 'actor' as const;
  readonly shards: readonly ActorPolicyHost[];

  constructor(name: string, shards: readonly ActorPolicyHost[]) {
    if (shards.length === 0) throw new Error('a sharded policy host needs at least one shard');
    this.name = name;
    this.shards = shards;
  }

  decide(req: RequestFeatures, cb: DecideCallback): void {
    (this.shards[shardOf(req.text, this.shards.length)] as ActorPolicyHost).decide(req, cb);
  }

  observe(f: CompletionFeedback): void {
    for (const s of this.shards) s.observe(f);
  }

  setWorkers(ws: readonly WorkerInfo[]): void {
    const copy = plainMembers(ws);
    for (const s of this.shards) s.setWorkers(copy);
  }

  async snapshot(): Promise<unknown> {
    const snaps = await Promise.all(this.shards.map((s) => s.snapshot()));
    const states = snaps.map((s) => {
      const actor = (s as { actor?: { state?: unknown } | null }).actor;
      return actor === null || actor === undefined ? null : (actor.state ?? null);
    });
    return {
      policy: this.name,
      placement: this.placement,
      shards: this.shards.length,
      block_chars: SHARD_BLOCK_CHARS,
      state: mergeShardStates(this.name, states),
      shard: snaps,
    };
  }

  async ready(): Promise<void> {
    await Promise.all(this.shards.map((s) => s.ready()));
  }

  async close(): Promise<void> {
    await Promise.all(this.shards.map((s) => s.close()));
  }
}

/** One state for the whole policy, as a single actor would report it (null parts: shards restarting). */
export function mergeShardStates(name: string, states: readonly unknown[]): unknown {
  if (name === 'cache_aware') return mergeCacheAwareStates(states);
  return null;
}
