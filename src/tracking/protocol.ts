/**
 * The tracker actor's protocol (host: tracker.ts, thread: tracker-actor.ts). Event batches are fire-and-
 * forget; queries answer with ready-to-send JSON text, so the front end never serialises traces itself.
 */
import type { EventBatch } from './events.js';
import type { FinishedTraces, TraceLogStats, TraceQuery, TraceStats, TrackerConfig } from './types.js';

export interface TrackerInit {
  readonly config: TrackerConfig;
  /** The event dictionary so far (events.ts): a restarted thread must decode codes defined before it. */
  readonly dictionary: readonly string[];
}

export type TrackerMessage =
  | { readonly t: 'events'; readonly e: EventBatch }
  | { readonly t: 'get'; readonly id: string }
  | { readonly t: 'batch'; readonly ids: readonly string[] }
  | { readonly t: 'list'; readonly q: TraceQuery }
  | { readonly t: 'stats' }
  | { readonly t: 'flush' }
  | { readonly t: 'drain' }
  | { readonly t: 'export' };

export interface TrackerReplies {
  readonly events: null;
  /** The trace's JSON, or null when unknown. */
  readonly get: string | null;
  /** A JSON array of the known traces, in request order. */
  readonly batch: string;
  /** A JSON array, most recent first. */
  readonly list: string;
  readonly stats: TraceStats;
  /** The log's counters after the flush (null without a log). */
  readonly flush: TraceLogStats | null;
  /** Finished traces since the last drain (null: none, or sharing off). */
  readonly drain: FinishedTraces | null;
  /** Every finished trace held, oldest first. */
  readonly export: FinishedTraces;
}
