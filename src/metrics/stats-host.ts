/**
 * The stats actor's host, on the front end: a CompletionSink that packs each finished request into
 * numbers (stats-protocol.ts layout) and sends them in batches: at most one message per event-loop turn,
 * and by default at most one per 50 ms. A crossing has a fixed cost whatever it carries (a postMessage,
 * an answer, a wake-up of a thread whose caches went cold): under a light, steady load most turns finish
 * one request, so per-turn batching alone would pay it per request; at ~13k req/s the stats thread spent
 * 2.0-2.2 us per request with 10 ms batches and 0.7-1.0 us with 50 ms ones (docs/observability.md).
 * Snapshots, Prometheus histogram text and checkpoints flush first and are asked of the actor, so the
 * interval never makes an answer stale; percentiles are never computed on the front end.
 *
 * Supervision: the actor runtime restarts a crashed thread; this host re-initialises it with every worker
 * it has announced, the latest cumulative checkpoint (taken every checkpointIntervalMs with
 * hdr-histogram-js's encodeIntoCompressedBase64) and every sample batch sent since that checkpoint, which
 * the host keeps (the batches are already exact-size copies: keeping them costs no work per request). So a
 * crash loses nothing: Prometheus counters and histogram counts never step back. The kept batches are
 * bounded: past replayCheckpointNumbers a checkpoint is taken early, past replayMaxNumbers the oldest are
 * dropped (counted in replayDropped; only then can a crash lose data).
 */
import { Actor, type ActorTuning } from '../actors/actor.js';
import { SwitchyardError } from '../errors.js';
import type { CompletionRecord, CompletionSink } from '../proxy/completion.js';
import type { Logger } from '../util/log.js';
import { routeLabelIndex } from './route-labels.js';
import { Rec, REC_HEADER, type SampleBatch, type StatsActorInit, type StatsActorMessage, type StatsActorReplies, type StatsCheckpoint, type StatsMember, type StatsSnapshot, type StatsWorkerDef } from './stats-protocol.js';
import { copyFloats, TRANSFER_MIN_BYTES, transferable } from '../util/typed-copy.js';

export interface StatsHostOptions {
  /** Width of one window slice (default 10 000 ms; tests shrink it). */
  readonly sliceMs?: number;
  /** hdr-histogram-js on WebAssembly (default true: bench/scenarios/hdr-record.ts). */
  readonly useWasm?: boolean;
  /** How often the cumulative histograms are checkpointed to the host (default 30 s; 0 = never). */
  readonly checkpointIntervalMs?: number;
  /** Longest wait for a snapshot or a render (default 5 s). */
  readonly askTimeoutMs?: number;
  /** Records are held up to this long to share a crossing (default 50 ms; 0 = one crossing per event-loop turn). */
  readonly flushIntervalMs?: number;
  /** Kept numbers (8 bytes each) since the last checkpoint that trigger an early checkpoint (default 1M: 8 MB). */
  readonly replayCheckpointNumbers?: number;
  /** Most numbers kept for replay (default 8M: 64 MB); beyond it the oldest batches are dropped. */
  readonly replayMaxNumbers?: number;
  readonly actor?: ActorTuning;
  readonly logger?: Logger | undefined;
}

/** Numbers per crossing before a turn's batch is sent early (2 MB of Float64). */
const MAX_BATCH_NUMBERS = 262_144;

export class StatsHost implements CompletionSink {
  readonly actor: Actor<StatsActorMessage, StatsActorReplies, StatsActorInit>;
  private readonly askTimeoutMs: number;
  private buf = new Float64Array(4096);
  private len = 0;
  private flushScheduled = false;
  private readonly flushBound = (): void => this.flush();
  private readonly flushIntervalMs: number;
  private readonly ids = new Map<string, StatsWorkerDef>();
  private readonly defs: StatsWorkerDef[] = [];
  private pendingDefs: StatsWorkerDef[] | null = null;
  private latest: StatsCheckpoint | null = null;
  private readonly checkpointTimer: NodeJS.Timeout | null = null;
  private readonly logger: Logger | undefined;
  private closed = false;
  /** Batches sent since the latest checkpoint, oldest first (replayed into a restarted thread). */
  private replay: SampleBatch[] = [];
  private replayNumbers = 0;
  private replayComplete = true;
  private readonly replayCheckpointNumbers: number;
  private readonly replayMaxNumbers: number;
  private checkpointInFlight = false;
  /** Set while a thread initialised with a replay has not attached yet: if it dies first, the replay may be what kills it. */
  private replayOnTrial = false;
  private inits = 0;
  /** Requests packed and crossings sent (for the debug bundle and tests). */
  recorded = 0;
  batchesSent = 0;
  /** Batches replayed into restarted threads, and batches dropped from the replay (bound, or a thread that died replaying). */
  replayed = 0;
  replayDropped = 0;

  constructor(options: StatsHostOptions = {}) {
    const sliceMs = options.sliceMs ?? 10_000;
    const since = Date.now();
    const useWasm = options.useWasm ?? true;
    this.askTimeoutMs = options.askTimeoutMs ?? 5000;
    this.flushIntervalMs = options.flushIntervalMs ?? 50;
    this.logger = options.logger;
    this.replayCheckpointNumbers = options.replayCheckpointNumbers ?? 1_048_576;
    this.replayMaxNumbers = Math.max(options.replayMaxNumbers ?? 8_388_608, this.replayCheckpointNumbers);
    this.actor = new Actor<StatsActorMessage, StatsActorReplies, StatsActorInit>({
      execArgv: threadExecArgv(process.execArgv),
      ...options.actor,
      name: 'stats',
      filename: new URL('./stats-actor.js', import.meta.url),
      init: () => ({ sliceMs, useWasm, since, workers: this.defs.slice(), checkpoint: this.latest, ...this.replayForInit() }),
      logger: options.logger,
    });
    const every = options.checkpointIntervalMs ?? 30_000;
    if (every > 0) {
      this.checkpointTimer = setInterval(() => {
        if (this.actor.available) this.checkpoint().catch((err: unknown) => this.logger?.warn({ err }, 'stats checkpoint failed'));
      }, every);
      this.checkpointTimer.unref();
    }
  }

  /** CompletionSink: called once per finished request on the front end. */
  record(rec: CompletionRecord): void {
    if (this.closed) return;
    const completed = rec.status === 'completed' && rec.sentAt > 0;
    const gaps = completed && rec.stream ? rec.itl : undefined;
    const n = gaps === undefined ? 0 : gaps.length;
    this.reserve(REC_HEADER + n);
    const b = this.buf;
    const o = this.len;
    b[o + Rec.Worker] = rec.slot >= 0 && rec.workerUrl !== '' ? this.idFor(rec.workerUrl, rec.nodeId) : -1;
    b[o + Rec.Route] = routeLabelIndex(rec.route, rec.path);
    b[o + Rec.Status] = rec.status === 'completed' ? 0 : rec.status === 'failed' ? 1 : 2;
    b[o + Rec.Stream] = rec.stream ? 1 : 0;
    b[o + Rec.DurationUs] = (rec.finishedAt - rec.arrivedAt) * 1000;
    b[o + Rec.E2eUs] = completed ? (rec.finishedAt - rec.sentAt) * 1000 : -1;
    b[o + Rec.TtftUs] = completed && rec.stream && rec.firstTokenAt >= rec.sentAt ? (rec.firstTokenAt - rec.sentAt) * 1000 : -1;
    b[o + Rec.QueueUs] = rec.decidedAt > 0 ? (rec.decidedAt - rec.arrivedAt) * 1000 : -1;
    b[o + Rec.ServerQueueUs] = rec.queueTime !== undefined && rec.queueTime >= 0 ? rec.queueTime * 1e6 : -1;
    b[o + Rec.InputTokens] = rec.inputTokens;
    b[o + Rec.OutputTokens] = rec.outputTokens;
    b[o + Rec.CachedTokens] = rec.cachedTokens;
    b[o + Rec.ItlCount] = n;
    if (gaps !== undefined) for (let i = 0; i < n; i++) b[o + REC_HEADER + i] = gaps[i] as number;
    this.len = o + REC_HEADER + n;
    this.recorded++;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      if (this.flushIntervalMs > 0) setTimeout(this.flushBound, this.flushIntervalMs).unref();
      else setImmediate(this.flushBound);
    }
  }

  /** Percentiles per window, overall and per worker; `members` are the current workers (idle ones appear with zeros). */
  snapshot(members: readonly StatsMember[]): Promise<StatsSnapshot> {
    this.flush();
    return this.ask({ t: 'snapshot', members }, 'snapshot');
  }

  /** The histogram families of the Prometheus exposition, rendered in the actor thread. */
  prometheus(members: readonly StatsMember[]): Promise<string> {
    this.flush();
    return this.ask({ t: 'prometheus', members }, 'prometheus render');
  }

  /** Take a checkpoint now (also kept as the restart state; the batches it covers are no longer kept). */
  async checkpoint(): Promise<StatsCheckpoint> {
    this.flush();
    this.checkpointInFlight = true;
    try {
      const cp = await this.ask({ t: 'checkpoint' }, 'checkpoint');
      if (this.latest === null || cp.seq >= this.latest.seq) {
        this.latest = cp;
        this.dropReplayThrough(cp.seq);
      }
      return cp;
    } finally {
      this.checkpointInFlight = false;
    }
  }

  /** Batches kept for a restart, and the numbers they hold. */
  get replayHeld(): { readonly batches: number; readonly numbers: number; readonly complete: boolean } {
    return { batches: this.replay.length, numbers: this.replayNumbers, complete: this.replayComplete };
  }

  get latestCheckpoint(): StatsCheckpoint | null {
    return this.latest;
  }

  get available(): boolean {
    return this.actor.available;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    if (this.checkpointTimer !== null) clearInterval(this.checkpointTimer);
    await this.actor.close();
  }

  private idFor(url: string, nodeId: number): number {
    const known = this.ids.get(url);
    if (known !== undefined && known.nodeId === nodeId) return known.id;
    const def: StatsWorkerDef = { id: known?.id ?? this.ids.size, url, nodeId };
    this.ids.set(url, def);
    if (known === undefined) this.defs.push(def);
    else this.defs[this.defs.indexOf(known)] = def;
    (this.pendingDefs ??= []).push(def);
    return def.id;
  }

  private reserve(numbers: number): void {
    if (this.len + numbers <= this.buf.length) return;
    if (this.len > 0 && this.len + numbers > MAX_BATCH_NUMBERS) this.flush();
    let size = this.buf.length;
    while (size < this.len + numbers) size *= 2;
    if (size !== this.buf.length) {
      const next = new Float64Array(size);
      next.set(this.buf.subarray(0, this.len));
      this.buf = next;
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.len === 0 && this.pendingDefs === null) return;
    // An exact-size copy is what crosses (a view would take the whole backing buffer along), and is kept for replay.
    const data = copyFloats(this.buf, this.len);
    this.len = 0;
    const workers = this.pendingDefs;
    this.pendingDefs = null;
    const seq = ++this.batchesSent;
    const at = Date.now();
    // A large batch moves to the thread as a copy (memcpy; cloning a typed array costs ~1 us per KB here);
    // `data` stays for replay. A small one is cloned (moving has a fixed cost).
    const sent = data.byteLength >= TRANSFER_MIN_BYTES ? copyFloats(data) : data;
    this.actor.tell({ t: 'samples', seq, at, data: sent, workers }, transferable(sent));
    this.keep({ seq, at, data });
  }

  private keep(batch: SampleBatch): void {
    this.replay.push(batch);
    this.replayNumbers += batch.data.length;
    if (this.replayNumbers > this.replayCheckpointNumbers && !this.checkpointInFlight && this.actor.available && !this.closed) {
      this.checkpoint().catch((err: unknown) => this.logger?.warn({ err }, 'stats checkpoint failed'));
    }
    if (this.replayNumbers <= this.replayMaxNumbers) return;
    let dropped = 0;
    while (this.replayNumbers > this.replayMaxNumbers && this.replay.length > 1) {
      this.replayNumbers -= (this.replay.shift() as SampleBatch).data.length;
      dropped++;
    }
    if (this.replayComplete) this.logger?.warn({ maxNumbers: this.replayMaxNumbers }, 'stats replay buffer full (no checkpoint for too long): a crash now loses the oldest samples');
    this.replayComplete = false;
    this.replayDropped += dropped;
  }

  private dropReplayThrough(seq: number): void {
    let i = 0;
    while (i < this.replay.length && (this.replay[i] as SampleBatch).seq <= seq) {
      this.replayNumbers -= (this.replay[i] as SampleBatch).data.length;
      i++;
    }
    if (i > 0) this.replay.splice(0, i);
    // Complete again when nothing after the checkpoint was dropped (drops take the oldest and never empty the list).
    this.replayComplete = this.replay.length === 0 || (this.replay[0] as SampleBatch).seq === seq + 1;
  }

  /** What a (re)started thread replays: every kept batch, unless the previous thread died while replaying them. */
  private replayForInit(): { replay: SampleBatch[]; replayComplete: boolean } {
    const gen = ++this.inits;
    if (this.replayOnTrial) {
      // The previous thread was given this replay and died before it attached: do not feed it the same again.
      this.logger?.error({ batches: this.replay.length }, 'stats thread died while replaying samples; restarting without them');
      this.replayDropped += this.replay.length;
      this.replay = [];
      this.replayNumbers = 0;
      this.replayComplete = false;
      this.replayOnTrial = false;
    }
    if (this.replay.length === 0) return { replay: [], replayComplete: this.replayComplete };
    this.replayOnTrial = true;
    this.replayed += this.replay.length;
    // Called from inside the Actor's constructor at the first start: this.actor is set once the microtask runs.
    queueMicrotask(() => {
      this.actor.whenAvailable().then(
        () => {
          if (this.inits === gen) this.replayOnTrial = false;
        },
        () => undefined,
      );
    });
    return { replay: this.replay.slice(), replayComplete: this.replayComplete };
  }

  private ask<T extends StatsActorMessage>(msg: T, what: string): Promise<StatsActorReplies[T['t']]> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new SwitchyardError('service_unavailable', `stats actor did not answer the ${what} within ${this.askTimeoutMs} ms`)), this.askTimeoutMs);
      this.actor.ask(msg).then(
        (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        (err: unknown) => {
          clearTimeout(timer);
          reject(err instanceof Error ? err : new Error(String(err)));
        },
      );
    });
  }
}

/**
 * Flags for the actor thread: the process's own minus module loaders (--import, --loader, --require).
 * The stats thread needs none, and a test runner's loaders make each thread start several times slower.
 */
export function threadExecArgv(argv: readonly string[]): string[] {
  const out: string[] = [];
  const withValue = new Set(['--import', '--loader', '--experimental-loader', '--require', '-r']);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (withValue.has(a)) {
      i++;
      continue;
    }
    const eq = a.indexOf('=');
    if (eq > 0 && withValue.has(a.slice(0, eq))) continue;
    out.push(a);
  }
  return out;
}
