/**
 * Cache-aware affinity across router replicas: the wire format between the policy shards, the relay on
 * the main thread (src/cluster/affinity.ts) and the other replicas, the options, the BroadcastChannel
 * port, and the snapshot's counters. The policy side is affinity.ts (which re-exports all of this).
 */
import { BroadcastChannel } from 'node:worker_threads';
import { DEFAULT_AFFINITY_BLOCK_CHARS, isValidBlockChars } from './prefix-chain.js';
import type { RemotePrefixIndexStats } from './remote-prefix-index.js';

/** Wire form of a batch of insert decisions (between the shards, the relay and the other replicas). */
export interface AffinityBatch {
  /** Format version. */
  readonly v: 1;
  /** Block size of the chains: a receiver with another block size ignores the batch. */
  readonly b: number;
  /** Worker URLs the records index. */
  readonly u: readonly string[];
  /**
   * Records, back to back: [urlIndex, shardKey, count, hi_0, lo_0, ..., hi_{count-1}, lo_{count-1}].
   * The hashes are chain entries (not necessarily from block 0: blocks already published are skipped).
   */
  readonly r: Int32Array;
  /** Origin replica (set by the relay when publishing). */
  readonly o?: string | undefined;
}

/**
 * Shard -> relay: a batch, or `hello` when the shard starts listening (a fresh or restarted policy actor
 * has an empty remote index: the relay asks the other replicas for summaries).
 */
export type AffinityOutMessage =
  | {
      readonly t: 'batch';
      readonly batch: AffinityBatch;
      /** True for a resynchronisation summary (counted apart). */
      readonly summary?: boolean;
    }
  | { readonly t: 'hello' };

/** Relay -> shard. */
export type AffinityInMessage = { readonly t: 'remote'; readonly batch: AffinityBatch } | { readonly t: 'resync' };

/** How a shard talks to its relay (BroadcastChannels in a router; anything in tests). */
export interface AffinityPort {
  post(msg: AffinityOutMessage): void;
  onMessage(cb: (msg: AffinityInMessage) => void): void;
  close(): void;
}

export const RECORD_HEADER_WORDS = 3;

export interface AffinityOptions {
  /** Name the relay listens on (see the header); '' = no transport (a port is given in code). */
  readonly channel: string;
  readonly blockChars: number;
  /** Bound of the remote prefix index, in entries (blocks). */
  readonly maxEntries: number;
  /** Remote entries unused this long are dropped. */
  readonly ttlSecs: number;
  /** Outbox flush period. */
  readonly flushMs: number;
  /** Bound of what a resynchronisation summary can hold (entries of the `published` index). */
  readonly summaryMaxEntries: number;
}

export const AFFINITY_DEFAULTS: Omit<AffinityOptions, 'channel'> = Object.freeze({
  blockChars: DEFAULT_AFFINITY_BLOCK_CHARS,
  maxEntries: 1 << 20,
  ttlSecs: 600,
  flushMs: 5,
  summaryMaxEntries: 1 << 16,
});

/** Summaries are sent at most this often per shard (requests in between are coalesced). */
export const SUMMARY_MIN_INTERVAL_MS = 1000;

/** Validates the `affinity` policy option (null/undefined: off). Throws a plain Error naming the field. */
export function affinityOptions(raw: unknown): AffinityOptions | null {
  if (raw === undefined || raw === null || raw === false) return null;
  if (typeof raw !== 'object') throw new Error(`affinity must be an object, got ${String(raw)}`);
  const o = raw as Record<string, unknown>;
  const channel = o['channel'] ?? '';
  if (typeof channel !== 'string') throw new Error('affinity.channel must be a string');
  const num = (key: keyof typeof AFFINITY_DEFAULTS, ok: (v: number) => boolean, what: string): number => {
    const v = o[key] ?? AFFINITY_DEFAULTS[key];
    if (typeof v !== 'number' || !ok(v)) throw new Error(`affinity.${key} must be ${what}, got ${String(v)}`);
    return v;
  };
  return {
    channel,
    blockChars: num('blockChars', isValidBlockChars, 'a multiple of 8 in [16, 65536]'),
    maxEntries: num('maxEntries', (v) => Number.isInteger(v) && v >= 1 && v <= 1 << 28, 'an integer in [1, 2^28]'),
    ttlSecs: num('ttlSecs', (v) => Number.isFinite(v) && v > 0, 'a positive number'),
    flushMs: num('flushMs', (v) => Number.isFinite(v) && v >= 0, 'a non-negative number'),
    summaryMaxEntries: num('summaryMaxEntries', (v) => Number.isInteger(v) && v >= 1 && v <= 1 << 24, 'an integer in [1, 2^24]'),
  };
}

/** Channel names of one shard (the relay opens the other ends). */
export function affinityChannelNames(channel: string, shard: number): { readonly out: string; readonly in: string } {
  return { out: `${channel}:out:${shard}`, in: `${channel}:in:${shard}` };
}

/** A shard's end of the BroadcastChannels. */
export function broadcastAffinityPort(channel: string, shard: number): AffinityPort {
  const names = affinityChannelNames(channel, shard);
  const out = new BroadcastChannel(names.out);
  const inbox = new BroadcastChannel(names.in);
  out.unref();
  inbox.unref();
  return {
    post: (msg) => out.postMessage(msg),
    onMessage: (cb) => {
      inbox.onmessage = (ev) => cb((ev as MessageEvent).data as AffinityInMessage);
    },
    close: () => {
      out.close();
      inbox.close();
    },
  };
}

/** Counters and sizes for the policy snapshot (summed over shards by mergeAffinityStates). */
export interface AffinityState {
  readonly block_chars: number;
  /** Decisions whose text had at least one full block (hashed). */
  readonly hashed: number;
  /** Characters hashed (the chain's cost is linear in them). */
  readonly hashed_chars: number;
  /** Decisions where the remote index raised some worker's match above the local tree's. */
  readonly remote_raised: number;
  /** Decisions that went to a worker because of a remote match (cache hit the local tree alone would have missed or placed elsewhere). */
  readonly remote_hits: number;
  readonly published_records: number;
  readonly published_blocks: number;
  readonly received_records: number;
  readonly received_blocks: number;
  /** Records dropped on receipt: unknown worker URL, another block size, malformed. */
  readonly dropped_records: number;
  readonly summaries: number;
  readonly remote: RemotePrefixIndexStats;
  readonly published: RemotePrefixIndexStats;
}
