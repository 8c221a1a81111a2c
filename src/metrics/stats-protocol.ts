/**
 * The stats actor's protocol: what the front end sends (packed samples, one message per event-loop turn)
 * and what it asks for (percentile snapshots, Prometheus histogram text, checkpoints).
 *
 * Samples travel as numbers in one Float64Array per turn, not as record objects: a fixed header per
 * request followed by its inter-token gaps. The layout below is shared by the packer (stats-host.ts) and
 * the reader (stats-store.ts).
 */
import type { ActorMessage } from '../actors/protocol.js';

/** Header fields of one packed request (offsets into the record). */
export const enum Rec {
  /** Worker key (see StatsWorkerDef.id), -1 when the request never reached a worker. */
  Worker = 0,
  /** Route label index (route-labels.ts). */
  Route = 1,
  /** 0 completed, 1 failed, 2 aborted. */
  Status = 2,
  Stream = 3,
  /** Router side, us: arrival -> finish (sgl_router_request_duration_seconds); always set. */
  DurationUs = 4,
  /** us: request sent -> last byte; -1 when not completed. */
  E2eUs = 5,
  /** us: request sent -> first non-empty content chunk; -1 unless a completed stream. */
  TtftUs = 6,
  /** us: arrival -> routing decision (router-side queueing); -1 when no decision. */
  QueueUs = 7,
  /** us: the worker's reported queue_time; -1 when it did not say. */
  ServerQueueUs = 8,
  InputTokens = 9,
  OutputTokens = 10,
  CachedTokens = 11,
  /** How many ITL gaps (ms, as measured) follow the header. */
  ItlCount = 12,
}
export const REC_HEADER = 13;

export const STATUS_CODES = ['completed', 'failed', 'aborted'] as const;

/** Latency metrics kept per worker (index = position). */
export const LATENCY_METRICS = ['ttft', 'itl', 'tpot', 'e2e', 'queue', 'server_queue'] as const;
export type LatencyMetric = (typeof LATENCY_METRICS)[number];
export const enum Metric {
  Ttft = 0,
  Itl = 1,
  Tpot = 2,
  E2e = 3,
  Queue = 4,
  ServerQueue = 5,
}
export const METRIC_COUNT = 6;

/** A worker the front end has sent samples for; announced once, before its first sample. */
export interface StatsWorkerDef {
  readonly id: number;
  readonly url: string;
  readonly nodeId: number;
}

/** A current member, named in snapshot and render requests so idle workers show up (with zeros). */
export interface StatsMember {
  readonly url: string;
  readonly nodeId: number;
}

export interface StatsActorInit {
  /** Width of one window slice (default 10 s). */
  readonly sliceMs: number;
  /** hdr-histogram-js on WebAssembly (measured ~7x faster to record than its JS build; bench/scenarios/hdr-record.ts). */
  readonly useWasm: boolean;
  /** Wall-clock ms the host started (the statistics' origin). */
  readonly since: number;
  /** Every worker the host has announced so far (a restarted thread must know them all). */
  readonly workers: readonly StatsWorkerDef[];
  /** Cumulative state to resume from after a restart (the host's latest checkpoint), or null. */
  readonly checkpoint: StatsCheckpoint | null;
  /**
   * Sample batches sent after that checkpoint, oldest first (the host keeps them until a checkpoint covers
   * them): a restarted thread applies them at init, so no counter steps back. Empty at the first start.
   */
  readonly replay: readonly SampleBatch[];
  /** True when `replay` holds every batch since the checkpoint (none was dropped to bound memory). */
  readonly replayComplete: boolean;
}

/** One crossing's packed records: `seq` counts batches from 1 (per host), `at` is the wall-clock ms it was sent. */
export interface SampleBatch {
  readonly seq: number;
  readonly at: number;
  readonly data: Float64Array;
}

/** Cumulative histograms and counters, HDR-encoded (encodeIntoCompressedBase64), periodically saved by the host. */
export interface StatsCheckpoint {
  /** Wall-clock ms the checkpoint was taken at, and the start of the cumulative figures it carries. */
  readonly takenAt: number;
  readonly since: number;
  readonly workers: readonly StatsWorkerDef[];
  /** Per worker id: one compressed-base64 HDR histogram per LATENCY_METRICS entry ('' = empty). */
  readonly latency: Readonly<Record<string, readonly string[]>>;
  /** Per worker id: the cumulative request counters (COUNTER_FIELDS order). */
  readonly counters: Readonly<Record<string, readonly number[]>>;
  /** Prometheus fixed-bucket histograms: key -> [counts..., sum, count]. */
  readonly buckets: Readonly<Record<string, readonly number[]>>;
  /** Requests without a worker, by status (COUNTER_FIELDS order). */
  readonly unrouted: readonly number[];
  /** The last sample batch (SampleBatch.seq) the checkpoint includes; later batches are replayed after a crash. */
  readonly seq: number;
}

export type StatsActorMessage =
  | { readonly t: 'samples'; readonly seq: number; readonly at: number; readonly data: Float64Array; readonly workers: readonly StatsWorkerDef[] | null }
  | { readonly t: 'snapshot'; readonly members: readonly StatsMember[] }
  | { readonly t: 'prometheus'; readonly members: readonly StatsMember[] }
  | { readonly t: 'checkpoint' };

export interface LatencySummary {
  readonly count: number;
  readonly mean: number | null;
  readonly p50: number | null;
  readonly p90: number | null;
  readonly p99: number | null;
  readonly max: number | null;
}

export type LatencySet = Readonly<Record<`${LatencyMetric}_ms`, LatencySummary>>;

export interface RequestCounts {
  readonly total: number;
  readonly completed: number;
  readonly failed: number;
  readonly aborted: number;
}

export interface WorkerWindow {
  readonly node_id: number;
  readonly requests: RequestCounts;
  /** Share of the window's routed requests (0..1). */
  readonly share: number;
  readonly latency: LatencySet;
}

export interface BalanceFigure {
  /** Coefficient of variation (population std / mean) of the members' request counts; 0 = perfectly even. */
  readonly cv: number | null;
  /** Busiest / least busy member by requests; null when the least busy had none. */
  readonly max_min_ratio: number | null;
  readonly max_requests: number;
  readonly min_requests: number;
  /** max(0, 1 - cv): 1 = perfectly even (seed 002's "balance coefficient", > 0.9 ideal). */
  readonly score: number | null;
  /** cv <= BALANCED_CV. */
  readonly balanced: boolean | null;
  readonly members: number;
}

export interface WindowSnapshot {
  /** Seconds of data the window actually covers (shorter right after start). */
  readonly seconds: number;
  readonly requests: RequestCounts;
  readonly throughput: { readonly requests_per_s: number; readonly input_tokens_per_s: number; readonly output_tokens_per_s: number };
  readonly tokens: { readonly input: number; readonly output: number; readonly cached: number };
  readonly latency: LatencySet;
  readonly workers: Readonly<Record<string, WorkerWindow>>;
  readonly balance: BalanceFigure;
}

export const WINDOW_NAMES = ['1m', '5m', 'cumulative'] as const;
export type WindowName = (typeof WINDOW_NAMES)[number];

export interface StatsSnapshot {
  readonly generated_at: string;
  readonly slice_seconds: number;
  readonly hdr: { readonly significant_digits: number; readonly wasm: boolean };
  readonly samples: { readonly requests: number; readonly itl_gaps: number; readonly batches: number };
  readonly windows: Readonly<Record<WindowName, WindowSnapshot>>;
}

export interface StatsActorReplies {
  readonly samples: null;
  readonly snapshot: StatsSnapshot;
  readonly prometheus: string;
  readonly checkpoint: StatsCheckpoint;
}

/** Compile-time check that the protocol is a valid actor protocol. */
export type _StatsProtocolCheck = StatsActorMessage extends ActorMessage ? true : never;
