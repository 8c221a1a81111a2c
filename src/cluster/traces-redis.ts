/**
 * Shared traces (issue 9; docs/deployment.md, "Traces"): every finished trace is written through to Redis,
 * so `/v1/traces/*` on any replica answers for a request any replica served.
 *
 * - **Write-through, batched.** The tracker actor encodes each trace as it finishes (trace-codec.ts) and
 *   keeps it in a bounded queue; every FLUSH_MS this part drains that queue (one actor round trip, and
 *   none while no request finished) into its ring and writes the ring in pipelines of at most BATCH_MAX
 *   traces: `SET <prefix>trace:<id> <msgpack> PX <ttl left>` per trace, one ZADD of the ids to the index
 *   `<prefix>traces:index` scored by end time, and trims of the index (older than the TTL; beyond
 *   --max-trace-entries members). A trace's TTL in Redis runs from its end, as in the local store.
 * - **Read-through.** The traces API asks the local store first; what is not held here is read from
 *   Redis (GET / MGET / the index). A miss, an undecodable value or Redis down answer what the local store
 *   answers (the 404 trace_not_found of a single id); the link fails fast, so nothing hangs.
 * - **Redis down.** Finished traces go on into the ring (BUFFER_MAX, oldest dropped and counted) and are
 *   written when the link is back (its resync hook, then every tick); traces whose TTL ran out meanwhile are
 *   dropped and counted. The link logs the transitions, once each.
 * - **Redis back empty** (restarted: it runs without persistence). Every write batch also refreshes this
 *   replica's marker key `<prefix>traces:replica:<id>` (TTL: the trace TTL). When the link comes up and the
 *   marker is missing, the replica re-writes every finished trace its store still holds (in the background,
 *   in the same pipelines), so the traces of before the outage answer everywhere again. A replica started
 *   with a trace log re-shares what it reloaded the same way.
 */
import type { ChainableCommander } from 'ioredis';
import type { Logger } from '../util/log.js';
import type { RequestTracker, SharedTraceSource } from '../tracking/tracker.js';
import { decodeTrace } from '../tracking/trace-codec.js';
import { traceJson, type FinishedTraces, type Trace, type TraceQuery, type TraceStats } from '../tracking/types.js';
import { PromWriter, labels } from '../metrics/prom-text.js';
import type { Cluster, ClusterPart } from './setup.js';
import type { RedisLink } from './redis-link.js';

/** How often finished traces are drained from the tracker and written (the 1 s target has ~10x margin). */
export const FLUSH_MS = 50;
/** Traces per pipeline. */
export const BATCH_MAX = 512;
/** Traces held while Redis is down (or slower than the traffic), the oldest dropped beyond. */
export const BUFFER_MAX = 20_000;
/** Index members a filtered list reads at most (newest first) looking for its matches. */
export const LIST_SCAN_MAX = 5000;
const LIST_PAGE = 500;
/** How long a closing tracker waits for its last traces to be written. */
const CLOSE_WAIT_MS = 2000;

export const TRACE_KEY = 'trace:';
export const INDEX_KEY = 'traces:index';
export const MARKER_KEY = 'traces:replica:';

export interface TraceSharingOptions {
  /** The local store's TTL (--trace-ttl-seconds), in ms: the same for the shared copies. */
  readonly ttlMs: number;
  /** Index members kept at most (--max-trace-entries). */
  readonly indexMax: number;
  readonly flushMs?: number;
  readonly batchMax?: number;
  readonly bufferMax?: number;
}

interface Pending {
  readonly id: string;
  /** Wall-clock ms the trace finished (its TTL runs from there). */
  readonly end: number;
  readonly value: Buffer;
}

/** A bounded FIFO ring: push drops (and returns) the oldest when full. */
export class TraceRing<T> {
  private readonly items: (T | undefined)[];
  private head = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new Error(`ring capacity must be a positive integer, got ${capacity}`);
    this.items = new Array<T | undefined>(capacity);
  }

  get length(): number {
    return this.count;
  }

  /** Append; when full, the oldest item is dropped and returned. */
  push(x: T): T | undefined {
    let dropped: T | undefined;
    if (this.count === this.capacity) dropped = this.shift();
    this.items[(this.head + this.count) % this.capacity] = x;
    this.count++;
    return dropped;
  }

  shift(): T | undefined {
    if (this.count === 0) return undefined;
    const x = this.items[this.head];
    this.items[this.head] = undefined;
    this.head = (this.head + 1) % this.capacity;
    this.count--;
    return x;
  }

  /** Put back in front (a batch that failed); false when full (the item is then not kept). */
  unshift(x: T): boolean {
    if (this.count === this.capacity) return false;
    this.head = (this.head - 1 + this.capacity) % this.capacity;
    this.items[this.head] = x;
    this.count++;
    return true;
  }
}

export interface TraceSharingStats {
  written: number;
  republished: number;
  write_batches: number;
  buffered: number;
  dropped_overflow: number;
  dropped_expired: number;
  dropped_queue: number;
  remote_hits: number;
  remote_misses: number;
  malformed: number;
}

export class TraceSharing implements SharedTraceSource, ClusterPart {
  readonly name = 'traces';
  readonly counters = { written: 0, republished: 0, republishRuns: 0, writeBatches: 0, droppedOverflow: 0, droppedExpired: 0, droppedQueue: 0, remoteHits: 0, remoteMisses: 0, malformed: 0 };
  private readonly link: RedisLink;
  private readonly tracker: RequestTracker;
  private readonly log: Logger;
  private readonly ttlMs: number;
  private readonly indexMax: number;
  private readonly flushMs: number;
  private readonly batchMax: number;
  private readonly ring: TraceRing<Pending>;
  private readonly indexKey: string;
  private readonly markerKey: string;
  private republishing: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastSeen = -1;
  private ticking: Promise<void> | undefined;
  private writing: Promise<void> | undefined;
  private closed = false;

  constructor(link: RedisLink, tracker: RequestTracker, opts: TraceSharingOptions, log: Logger) {
    this.link = link;
    this.tracker = tracker;
    this.log = log;
    this.ttlMs = Math.max(1, Math.round(opts.ttlMs));
    this.indexMax = opts.indexMax;
    this.flushMs = opts.flushMs ?? FLUSH_MS;
    this.batchMax = opts.batchMax ?? BATCH_MAX;
    this.ring = new TraceRing(opts.bufferMax ?? BUFFER_MAX);
    this.indexKey = link.key(INDEX_KEY);
    this.markerKey = link.key(MARKER_KEY + link.replicaId);
  }

  /** Start draining and writing; writes what was held while Redis was away whenever the link comes back. */
  start(): void {
    this.link.onResync('traces', () => this.resync());
    this.timer = setInterval(() => void this.tick(), this.flushMs);
    this.timer.unref();
  }

  get buffered(): number {
    return this.ring.length;
  }

  /** Drain the tracker's finished traces into the ring, then write the ring if Redis is up. */
  tick(): Promise<void> {
    this.ticking ??= this.doTick().finally(() => (this.ticking = undefined));
    return this.ticking;
  }

  private async doTick(): Promise<void> {
    const seen = this.tracker.finishedSeen;
    if (seen !== this.lastSeen) {
      this.lastSeen = seen;
      let batch: FinishedTraces | null = null;
      try {
        batch = await this.tracker.drainFinished();
      } catch (err) {
        // The tracker thread restarting or closing: its next incarnation keeps collecting.
        this.log.debug({ event: 'cluster.traces.drain_failed', err: (err as Error).message }, 'could not drain finished traces');
        this.lastSeen = -1;
      }
      if (batch !== null) this.absorb(batch);
    }
    if (this.link.up && this.ring.length > 0) await this.writeAll();
  }

  private absorb(b: FinishedTraces): void {
    this.counters.droppedQueue += b.dropped;
    const base = Buffer.from(b.bytes.buffer, b.bytes.byteOffset, b.bytes.byteLength);
    for (let i = 0; i < b.ids.length; i++) {
      const value = base.subarray(b.offsets[i] as number, b.offsets[i + 1] as number);
      if (this.ring.push({ id: b.ids[i] as string, end: b.ends[i] as number, value }) !== undefined) this.counters.droppedOverflow++;
    }
  }

  /**
   * The link is (back) up: write what the ring holds; if Redis lost this replica's traces (its marker is
   * gone), re-write every finished trace the store holds, in the background (the other parts' hooks do not
   * wait for it).
   */
  async resync(): Promise<void> {
    // Asked first: the ring's writes set the marker again.
    const marker = await this.link.run('traces:resync', (r) => r.exists(this.markerKey));
    await this.writeAll();
    if (marker === 0) this.republishing ??= this.republish().finally(() => (this.republishing = undefined));
  }

  private async republish(): Promise<void> {
    let all: FinishedTraces;
    try {
      all = await this.tracker.exportFinished();
    } catch (err) {
      this.log.debug({ event: 'cluster.traces.export_failed', err: (err as Error).message }, 'could not read the held traces');
      return;
    }
    this.counters.republishRuns++;
    const base = Buffer.from(all.bytes.buffer, all.bytes.byteOffset, all.bytes.byteLength);
    const n = all.ids.length;
    for (let i = 0; i < n && this.link.up && !this.closed; ) {
      const now = Date.now();
      const batch: Pending[] = [];
      for (; i < n && batch.length < this.batchMax; i++) {
        const end = all.ends[i] as number;
        if (end + this.ttlMs <= now + 1) continue;
        batch.push({ id: all.ids[i] as string, end, value: base.subarray(all.offsets[i] as number, all.offsets[i + 1] as number) });
      }
      if (batch.length === 0) continue;
      if (!(await this.link.batch('traces', (pipe) => this.build(pipe, batch, now)))) return;
      this.counters.republished += batch.length;
    }
    if (n > 0) this.log.info({ event: 'cluster.traces.republished', traces: this.counters.republished, replica: this.link.replicaId }, 're-shared the finished traces this replica holds (Redis did not have them: restarted empty, or this replica just started)');
  }

  /** Write the whole ring, a pipeline at a time; stops (keeping the rest) at the first failed batch. */
  writeAll(): Promise<void> {
    this.writing ??= this.doWriteAll().finally(() => (this.writing = undefined));
    return this.writing;
  }

  private async doWriteAll(): Promise<void> {
    while (this.ring.length > 0 && this.link.up) {
      const now = Date.now();
      const batch: Pending[] = [];
      while (batch.length < this.batchMax) {
        const p = this.ring.shift();
        if (p === undefined) break;
        if (p.end + this.ttlMs <= now + 1) this.counters.droppedExpired++;
        else batch.push(p);
      }
      if (batch.length === 0) continue;
      const ok = await this.link.batch('traces', (pipe) => this.build(pipe, batch, now));
      if (ok) {
        this.counters.written += batch.length;
        this.counters.writeBatches++;
        continue;
      }
      // Back in front, oldest first kept; what no longer fits (new traces came meanwhile) is dropped.
      for (let i = batch.length - 1; i >= 0; i--) if (!this.ring.unshift(batch[i] as Pending)) this.counters.droppedOverflow++;
      return;
    }
  }

  private build(p: ChainableCommander, batch: readonly Pending[], now: number): void {
    const zargs: (string | number)[] = [];
    for (const t of batch) {
      p.set(this.link.key(TRACE_KEY + t.id), t.value, 'PX', Math.ceil(t.end + this.ttlMs - now));
      zargs.push(t.end, t.id);
    }
    p.zadd(this.indexKey, ...zargs);
    p.zremrangebyscore(this.indexKey, '-inf', `(${now - this.ttlMs}`);
    p.zremrangebyrank(this.indexKey, 0, -(this.indexMax + 1));
    // The index goes too once nothing has been written for a TTL.
    p.pexpire(this.indexKey, this.ttlMs);
    // "Redis still holds what this replica wrote" (resync).
    p.set(this.markerKey, '1', 'PX', this.ttlMs);
  }

  // ---------------------------------------------------------------------------------------------
  // read-through (SharedTraceSource)

  async get(requestId: string): Promise<string | null> {
    const v = await this.link.get(this.link.key(TRACE_KEY + requestId));
    if (v === undefined) return null; // down or failed: counted by the link
    const t = v === null ? null : this.decode(v);
    if (t === null || t.request_id !== requestId) {
      this.counters.remoteMisses++;
      return null;
    }
    this.counters.remoteHits++;
    return traceJson(t);
  }

  async batch(requestIds: readonly string[], localJson: string): Promise<string> {
    if (!this.link.up) return localJson;
    const local = JSON.parse(localJson) as { request_id: string }[];
    if (local.length === requestIds.length) return localJson;
    const found = new Map<string, string>();
    for (const t of local) found.set(t.request_id, JSON.stringify(t));
    const missing = requestIds.filter((id) => !found.has(id));
    const values = await this.link.mget(missing.map((id) => this.link.key(TRACE_KEY + id)));
    if (values === undefined) return localJson;
    for (let i = 0; i < missing.length; i++) {
      const v = values[i];
      const t = v === null || v === undefined ? null : this.decode(v);
      if (t === null || t.request_id !== missing[i]) {
        this.counters.remoteMisses++;
        continue;
      }
      this.counters.remoteHits++;
      found.set(t.request_id, traceJson(t));
    }
    let out = '[';
    let first = true;
    for (const id of requestIds) {
      const j = found.get(id);
      if (j === undefined) continue;
      out += first ? j : ',' + j;
      first = false;
    }
    return out + ']';
  }

  /**
   * The local list merged with the shared traces (finished ones only: in-flight traces are not shared),
   * newest arrival first. The shared side is read newest end first: the first `limit` members without a
   * filter, up to LIST_SCAN_MAX members with one.
   */
  async list(q: TraceQuery, localJson: string): Promise<string> {
    if (q.status === 'pending' || q.status === 'streaming' || !this.link.up) return localJson;
    const filtered = q.status !== undefined || q.nodeId !== undefined;
    const remote: Trace[] = [];
    const scanMax = filtered ? LIST_SCAN_MAX : q.limit;
    const page = filtered ? LIST_PAGE : q.limit;
    for (let start = 0; start < scanMax && remote.length < q.limit; start += page) {
      const stop = Math.min(start + page, scanMax) - 1;
      const ids = await this.link.run('traces:list', (r) => r.zrevrange(this.indexKey, start, stop));
      if (ids === undefined) return localJson;
      if (ids.length === 0) break;
      const values = await this.link.mget(ids.map((id) => this.link.key(TRACE_KEY + id)));
      if (values === undefined) return localJson;
      for (const v of values) {
        const t = v === null || v === undefined ? null : this.decode(v);
        if (t === null) continue;
        if (q.status !== undefined && t.status !== q.status) continue;
        if (q.nodeId !== undefined && t.node_id !== q.nodeId) continue;
        remote.push(t);
      }
      if (ids.length < stop - start + 1) break;
    }
    const local = JSON.parse(localJson) as Trace[];
    const rows: { t: Trace; json: string }[] = local.map((t) => ({ t, json: JSON.stringify(t) }));
    const seen = new Set(local.map((t) => t.request_id));
    for (const t of remote) {
      if (seen.has(t.request_id)) continue;
      seen.add(t.request_id);
      rows.push({ t, json: traceJson(t) });
    }
    // The store's order: arrival, newest first; ties by id.
    rows.sort((a, b) => b.t.timestamp_ms - a.t.timestamp_ms || (a.t.request_id < b.t.request_id ? 1 : a.t.request_id > b.t.request_id ? -1 : 0));
    return '[' + rows.slice(0, q.limit).map((r) => r.json).join(',') + ']';
  }

  async stats(local: TraceStats): Promise<TraceStats> {
    const shared = await this.link.run('traces:stats', (r) => r.zcount(this.indexKey, `(${Date.now() - this.ttlMs}`, '+inf'));
    return {
      ...local,
      cluster: {
        replica_id: this.link.replicaId,
        redis_up: this.link.up,
        // finished traces of every replica in the shared index now (null: Redis unreachable)
        shared_traces: shared ?? null,
        ...this.sharingStats(),
      },
    };
  }

  private decode(v: Buffer): Trace | null {
    const t = decodeTrace(v);
    if (t === null) this.counters.malformed++;
    return t;
  }

  // ---------------------------------------------------------------------------------------------

  sharingStats(): TraceSharingStats {
    const c = this.counters;
    return {
      written: c.written,
      republished: c.republished,
      write_batches: c.writeBatches,
      buffered: this.ring.length,
      dropped_overflow: c.droppedOverflow,
      dropped_expired: c.droppedExpired,
      dropped_queue: c.droppedQueue,
      remote_hits: c.remoteHits,
      remote_misses: c.remoteMisses,
      malformed: c.malformed,
    };
  }

  metricsText(): string {
    const c = this.counters;
    const w = new PromWriter();
    const one = (name: string, type: 'counter' | 'gauge', help: string, v: number): void => {
      w.family(name, type, help);
      w.sample(name, '', v);
    };
    one('switchyard_cluster_traces_written_total', 'counter', 'Finished traces written to Redis by this replica', c.written);
    one('switchyard_cluster_traces_republished_total', 'counter', 'Held traces written again after Redis came back without them (restarted empty)', c.republished);
    one('switchyard_cluster_traces_write_batches_total', 'counter', 'Pipelines of finished traces written to Redis', c.writeBatches);
    one('switchyard_cluster_traces_buffered', 'gauge', 'Finished traces waiting to be written (Redis down or behind)', this.ring.length);
    w.family('switchyard_cluster_traces_dropped_total', 'counter', 'Finished traces never written: buffer full (overflow), TTL over before Redis returned (expired), tracker queue full (queue)');
    w.sample('switchyard_cluster_traces_dropped_total', labels(['reason', 'overflow']), c.droppedOverflow);
    w.sample('switchyard_cluster_traces_dropped_total', labels(['reason', 'expired']), c.droppedExpired);
    w.sample('switchyard_cluster_traces_dropped_total', labels(['reason', 'queue']), c.droppedQueue);
    one('switchyard_cluster_traces_remote_hits_total', 'counter', 'Traces not held here answered from Redis', c.remoteHits);
    one('switchyard_cluster_traces_remote_misses_total', 'counter', 'Traces looked up in Redis and not found there either', c.remoteMisses);
    return w.text();
  }

  /**
   * The tracker is closing (the router shuts down): drain the last finished traces and write them, so a
   * replica that stops does not take its last ~50 ms of traces with it. At most CLOSE_WAIT_MS.
   */
  async beforeClose(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const last = (async (): Promise<void> => {
      await this.ticking?.catch(() => undefined);
      this.lastSeen = -1;
      await this.tick();
    })();
    await Promise.race([last, new Promise<void>((r) => (timer = setTimeout(r, CLOSE_WAIT_MS)))]);
    clearTimeout(timer);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    // Best effort: what is already drained goes out if Redis is there (the tracker may be closed by now).
    await this.ticking?.catch(() => undefined);
    await this.republishing;
    if (this.link.up) await this.writeAll();
  }
}

/** Share this replica's traces through the cluster's Redis; the part closes with the cluster. */
export function attachTraces(cluster: Cluster, tracker: RequestTracker, opts: { traceTtlSeconds: number; maxTraceEntries: number }, log: Logger): TraceSharing {
  const part = new TraceSharing(cluster.link, tracker, { ttlMs: opts.traceTtlSeconds * 1000, indexMax: opts.maxTraceEntries }, log);
  tracker.setShared(part);
  cluster.attach(part);
  part.start();
  return part;
}
