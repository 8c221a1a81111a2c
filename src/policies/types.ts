/**
 * The Policy interface every routing policy implements, stateless ones deciding in the front end and
 * stateful ones (cache_aware, marginal_utility, plugins) inside a policy actor. The same conformance
 * suite (test/policies/conformance.test.ts) runs against every implementation.
 */
import type { WorkerTable } from '../actors/worker-table.js';
import type { Rng } from '../util/rng.js';

export type RouteKind = 'generate' | 'chat' | 'completions' | 'other';

/** What a policy may know about a request; built once by the front end, cheap to ship to an actor. */
export interface RequestFeatures {
  readonly requestId: string;
  readonly route: RouteKind;
  /** The routing text: /generate text | prompt | input_ids joined; chat: all message contents. */
  readonly text: string;
  /** Input-token estimate (the shared fake-tokenizer rule, or input_ids length). */
  readonly inputTokens: number;
  readonly maxNewTokens: number;
  readonly stream: boolean;
  readonly model?: string | undefined;
  /**
   * Worker group chosen by size-aware admission (src/policies/admission.ts): the policy then decides
   * among that group's members only. Absent: every member is a candidate.
   */
  readonly group?: string | undefined;
  /** Admission's reason (e.g. "large_input: 10000 > 8000 tokens -> multi"), prefixed to the decision's. */
  readonly admission?: string | undefined;
  /**
   * A long text as it crossed into a policy actor: pieces of at most TEXT_CHUNK_CHARS whose concatenation
   * is `text` (radix-tree.ts chunkText). In the actor `text` is then joined on first read; a policy that
   * can work on the pieces (cache_aware) reads these and never touches `text`. Absent for short texts.
   */
  readonly textChunks?: readonly string[] | undefined;
}

/** A member of the fleet as policies see it; counters are read live from the worker table. */
export interface WorkerInfo {
  readonly slot: number;
  readonly generation: number;
  readonly url: string;
  /** GPU / node id (seed 000: by port order unless configured). */
  readonly nodeId: number;
  /** Worker group for size-aware admission ("single" | "multi" | user-defined). */
  readonly group?: string | undefined;
}

export interface Decision {
  readonly slot: number;
  readonly generation: number;
  readonly url: string;
  /** Why this worker, in words a person can read in a trace (e.g. "cache_hit: match 0.82 > 0.30"). */
  readonly reason: string;
  /** The numbers behind the decision (per-policy keys), recorded in traces and logs. */
  readonly scores?: Readonly<Record<string, number>> | undefined;
}

export interface PolicyContext {
  readonly table: WorkerTable;
  /** Current membership (healthy or not); policies filter with `table.isAvailable(slot)`. */
  readonly workers: readonly WorkerInfo[];
  readonly rng: Rng;
  /** Milliseconds, monotonic. */
  now(): number;
}

/** What the front end learns when a request ends: fed back to policies (marginal_utility, plugins). */
export interface CompletionFeedback {
  readonly requestId: string;
  readonly url: string;
  readonly slot: number;
  readonly success: boolean;
  /** ms timestamps (monotonic clock of the front end). */
  readonly sentAt: number;
  readonly firstTokenAt: number;
  readonly finishedAt: number;
  readonly inputTokens: number;
  readonly outputTokens: number;
  readonly cachedTokens: number;
  /** Server-reported queue time in seconds, when known. */
  readonly queueTime?: number | undefined;
}

export interface Policy {
  readonly name: string;
  /** True when the policy owns state that belongs in a policy actor rather than on the front end. */
  readonly stateful: boolean;
  /** Pick a worker among the available ones; null when none is available. */
  select(req: RequestFeatures, ctx: PolicyContext): Decision | null;
  /** Membership changed (a worker added or removed); drop state for removed slots. */
  onWorkersChanged?(workers: readonly WorkerInfo[]): void;
  /** A request ended. */
  observe?(feedback: CompletionFeedback): void;
  /** State for the debug bundle / tests. */
  snapshot?(): unknown;
  /** Periodic housekeeping (eviction); called by the host. */
  tick?(nowMs: number): void;
  /** Release what the policy holds (files, timers), flushing buffered output; called once by the host's close. */
  close?(): void | Promise<void>;
}

export interface PolicyFactoryOptions {
  readonly seed?: number | undefined;
  readonly [key: string]: unknown;
}

export type PolicyFactory = (options: PolicyFactoryOptions) => Policy;
