/**
 * The stats actor's state: HDR histograms (hdr-histogram-js) of TTFT, ITL, TPOT, E2E and queue times per
 * worker, in sliding windows and cumulatively, plus the fixed-bucket histograms the Prometheus exposition
 * needs. Runs in the stats actor thread (stats-actor.ts); kept free of thread concerns so tests can drive
 * it directly.
 *
 * Windows: every value is recorded ONCE, into its worker's slice for the current 10-second epoch (a ring
 * of 6 slices). When a slot of the ring is reused, the old slice is folded into its minute (a ring of 5
 * minute slots) and into the cumulative histogram. A snapshot merges, on demand and in this thread:
 *   1m          the current slice and the 5 before it                 (50-60 s of data)
 *   5m          the current minute and the 4 before it (folded + live) (4-5 min of data)
 *   cumulative  everything folded plus the live slices
 * "Overall" figures merge the workers. Precision: 2 significant digits (values within 1%), which keeps a
 * worker's 6 metrics x 12 histograms near 1 MB; 3 digits would be 7x that and 8x slower to merge.
 *
 * Parts: the per-worker rings and slots (stats-series.ts), the snapshot figures (stats-summary.ts), the
 * Prometheus histogram families (histogram-families.ts).
 */
import { decodeFromCompressedBase64, encodeIntoCompressedBase64, type Histogram } from 'hdr-histogram-js';
import { FixedHistogram } from './buckets.js';
import { DURATION_US, renderHistogramFamilies } from './histogram-families.js';
import { OTHER_ROUTE, ROUTE_LABELS } from './route-labels.js';
import { LATENCY_METRICS, Metric, METRIC_COUNT, Rec, REC_HEADER, type LatencySet, type StatsCheckpoint, type StatsMember, type StatsSnapshot, type StatsWorkerDef, type WindowName, type WindowSnapshot, type WorkerWindow } from './stats-protocol.js';
import { add, C, clampUs, COUNTERS, foldSlice, MINUTES_KEPT, newHistogram, SIGNIFICANT_DIGITS, SLICES_PER_MINUTE, slotsIn, Slot, WorkerSeries } from './stats-series.js';
import { balanceOf, latencySet, requestCounts, round } from './stats-summary.js';

export { HIGHEST_US } from './stats-series.js';
export { balanceOf } from './stats-summary.js';

export interface StatsStoreOptions {
  readonly sliceMs: number;
  readonly useWasm: boolean;
  /** Monotonic milliseconds (performance.now in the actor). */
  readonly now: () => number;
  /** Wall-clock ms the statistics start at (the host's start; default now). Samples can arrive later than they happened. */
  readonly since?: number | undefined;
}

export class StatsStore {
  readonly sliceMs: number;
  readonly useWasm: boolean;
  private readonly now: () => number;
  private readonly byId = new Map<number, WorkerSeries>();
  private readonly byUrl = new Map<string, WorkerSeries>();
  /** Requests that never reached a worker (counted in totals, not in any worker). */
  private readonly unrouted = new WorkerSeries('', -1);
  /** Per route label (route-labels.ts order). */
  private readonly durations = ROUTE_LABELS.map(() => new FixedHistogram(DURATION_US));
  /** Scratch accumulators (64-bit counts), reused by every snapshot. */
  private readonly accWorker: Histogram[];
  private readonly accAll: Histogram[];
  private readonly accCounters = new Float64Array(COUNTERS);
  private readonly accAllCounters = new Float64Array(COUNTERS);
  /** Wall-clock ms the cumulative figures start at (kept across restarts through checkpoints). */
  private since: number;
  /** Wall-clock ms the windows start at (a restarted thread's windows start empty). */
  private windowsSince: number;
  private requests = 0;
  private itlGaps = 0;
  private batches = 0;

  constructor(options: StatsStoreOptions) {
    if (!(options.sliceMs > 0)) throw new Error(`sliceMs must be positive, got ${options.sliceMs}`);
    this.sliceMs = options.sliceMs;
    this.useWasm = options.useWasm;
    this.now = options.now;
    this.since = Math.min(options.since ?? Date.now(), Date.now());
    this.windowsSince = this.since;
    this.accWorker = LATENCY_METRICS.map(() => newHistogram(64, this.useWasm));
    this.accAll = LATENCY_METRICS.map(() => newHistogram(64, this.useWasm));
  }

  /** Workers known to the store (ids as the host assigned them). */
  get workerCount(): number {
    return this.byId.size;
  }

  defineWorkers(defs: readonly StatsWorkerDef[]): void {
    for (const d of defs) {
      let s = this.byUrl.get(d.url);
      if (s === undefined) {
        s = new WorkerSeries(d.url, d.nodeId);
        this.byUrl.set(d.url, s);
      }
      s.nodeId = d.nodeId;
      this.byId.set(d.id, s);
    }
  }

  /**
   * Read one batch of packed records (stats-protocol.ts layout). Throws on a malformed batch, after keeping
   * what came before. `sentAt` (wall-clock ms) places a batch replayed after a restart in the slice it
   * was sent in; live batches land in the current slice.
   */
  ingest(data: Float64Array, sentAt?: number): number {
    const nowMs = this.now();
    const epoch = this.epochOf(sentAt === undefined ? nowMs : nowMs - Math.max(0, Date.now() - sentAt));
    const n = data.length;
    let off = 0;
    let count = 0;
    this.batches++;
    while (off < n) {
      if (off + REC_HEADER > n) throw new Error(`stats batch truncated at ${off} of ${n}`);
      const gaps = data[off + Rec.ItlCount] as number;
      if (!Number.isInteger(gaps) || gaps < 0 || off + REC_HEADER + gaps > n) throw new Error(`stats batch: bad ITL count ${gaps} at ${off}`);
      this.ingestOne(data, off, gaps, epoch);
      off += REC_HEADER + gaps;
      count++;
    }
    this.requests += count;
    return count;
  }

  private ingestOne(d: Float64Array, off: number, gaps: number, epoch: number): void {
    const wid = d[off + Rec.Worker] as number;
    let series: WorkerSeries;
    if (wid < 0) series = this.unrouted;
    else {
      let s = this.byId.get(wid);
      if (s === undefined) {
        // Its definition was lost (e.g. in a batch that died with the previous thread): keep the numbers.
        s = new WorkerSeries(`worker#${wid}`, -1);
        this.byId.set(wid, s);
        this.byUrl.set(s.url, s);
      }
      series = s;
    }
    const route = d[off + Rec.Route] as number;
    const duration = this.durations[route] ?? this.durations[OTHER_ROUTE];
    duration?.record(clampUs(d[off + Rec.DurationUs] as number));

    const slot = this.current(series, epoch);
    const c = slot.counters;
    add(c, C.Total, 1);
    const status = d[off + Rec.Status] as number;
    add(c, status === 0 ? C.Completed : status === 1 ? C.Failed : C.Aborted, 1);
    add(c, C.Input, d[off + Rec.InputTokens] as number);
    add(c, C.Output, d[off + Rec.OutputTokens] as number);
    add(c, C.Cached, d[off + Rec.CachedTokens] as number);

    const e2e = d[off + Rec.E2eUs] as number;
    if (e2e >= 0) this.record(slot, Metric.E2e, e2e);
    const ttft = d[off + Rec.TtftUs] as number;
    if (ttft >= 0) {
      const v = this.record(slot, Metric.Ttft, ttft);
      series.ttft.record(v);
      // TPOT = (E2E - TTFT) / (output_tokens - 1), per request.
      const out = d[off + Rec.OutputTokens] as number;
      if (out > 1 && e2e >= ttft) {
        const tpot = this.record(slot, Metric.Tpot, (e2e - ttft) / (out - 1));
        series.tpot.record(tpot);
      }
    }
    const queue = d[off + Rec.QueueUs] as number;
    if (queue >= 0) this.record(slot, Metric.Queue, queue);
    const serverQueue = d[off + Rec.ServerQueueUs] as number;
    if (serverQueue >= 0) this.record(slot, Metric.ServerQueue, serverQueue);
    if (gaps > 0) {
      const h = this.hist(slot, Metric.Itl);
      const fixed = series.itl;
      const base = off + REC_HEADER;
      for (let i = 0; i < gaps; i++) {
        const v = clampUs((d[base + i] as number) * 1000); // gaps arrive in ms
        h.recordValue(v);
        fixed.record(v);
      }
      this.itlGaps += gaps;
    }
  }

  private record(slot: Slot, metric: Metric, us: number): number {
    const v = clampUs(us);
    this.hist(slot, metric).recordValue(v);
    return v;
  }

  private hist(slot: Slot, metric: Metric): Histogram {
    let h = slot.hists[metric];
    if (h === null || h === undefined) {
      h = newHistogram(32, this.useWasm);
      slot.hists[metric] = h;
    }
    return h;
  }

  epochOf(nowMs: number): number {
    return Math.floor(nowMs / this.sliceMs);
  }

  /** The series' slice for `epoch`, folding whatever older slice occupied its ring slot. */
  private current(s: WorkerSeries, epoch: number): Slot {
    const slot = s.tens[epoch % SLICES_PER_MINUTE] as Slot;
    // A newer slice in the slot (a replayed sample older than the ring): count it there rather than fold the newer one.
    if (slot.index >= epoch) return slot;
    if (slot.index >= 0) foldSlice(s, slot, epoch, this.useWasm);
    slot.reset(epoch);
    return slot;
  }

  // -------------------------------------------------------------------------------------------------
  // snapshots

  snapshot(members: readonly StatsMember[]): StatsSnapshot {
    const now = this.now();
    const epoch = this.epochOf(now);
    const minute = Math.floor(epoch / SLICES_PER_MINUTE);
    this.releaseFormer(members, epoch);
    const wall = Date.now();
    const uptimeMs = wall - this.windowsSince;
    const oneMinuteStart = (epoch - SLICES_PER_MINUTE + 1) * this.sliceMs;
    const fiveMinuteStart = (minute - MINUTES_KEPT + 1) * SLICES_PER_MINUTE * this.sliceMs;
    const seconds = (start: number): number => Math.max(0, Math.min(now - start, uptimeMs)) / 1000;
    return {
      generated_at: new Date().toISOString(),
      slice_seconds: this.sliceMs / 1000,
      hdr: { significant_digits: SIGNIFICANT_DIGITS, wasm: this.useWasm },
      samples: { requests: this.requests, itl_gaps: this.itlGaps, batches: this.batches },
      windows: {
        '1m': this.windowSnapshot('1m', epoch, minute, members, seconds(oneMinuteStart)),
        '5m': this.windowSnapshot('5m', epoch, minute, members, seconds(fiveMinuteStart)),
        cumulative: this.windowSnapshot('cumulative', epoch, minute, members, Math.max(0, wall - this.since) / 1000),
      },
    };
  }

  /**
   * Workers that left the membership and have nothing left in the 5m window keep only their cumulative
   * histograms: their ring slices are folded and freed (a fleet with churn does not grow ~1 MB per URL).
   */
  releaseFormer(members: readonly StatsMember[], epoch: number): number {
    const current = new Set(members.map((m) => m.url));
    const minute = Math.floor(epoch / SLICES_PER_MINUTE);
    let released = 0;
    for (const s of this.byUrl.values()) {
      if (current.has(s.url)) continue;
      let live = false;
      let held = false;
      for (const t of s.tens) {
        if (t.index < 0) continue;
        held = true;
        if (Math.floor(t.index / SLICES_PER_MINUTE) > minute - MINUTES_KEPT) live = true;
      }
      for (const m of s.minutes) {
        if (m.index < 0) continue;
        held = true;
        if (m.index > minute - MINUTES_KEPT) live = true;
      }
      if (live || !held) continue;
      for (const t of s.tens) if (t.index >= 0) foldSlice(s, t, epoch, this.useWasm);
      for (const slot of [...s.tens, ...s.minutes]) {
        slot.index = -1;
        slot.counters.fill(0);
        for (let k = 0; k < METRIC_COUNT; k++) {
          slot.hists[k]?.destroy();
          slot.hists[k] = null;
        }
      }
      released++;
    }
    return released;
  }

  private readonly slotScratch: Slot[] = [];

  private windowSnapshot(w: WindowName, epoch: number, minute: number, members: readonly StatsMember[], seconds: number): WindowSnapshot {
    for (const h of this.accAll) h.reset();
    this.accAllCounters.fill(0);
    const workers: Record<string, WorkerWindow> = {};
    const memberUrls = new Set(members.map((m) => m.url));
    const perWorker: { url: string; nodeId: number; counters: Float64Array; latency: LatencySet }[] = [];
    const series = new Set<WorkerSeries>(this.byUrl.values());
    for (const s of [...series, this.unrouted]) {
      const n = slotsIn(s, w, epoch, minute, this.slotScratch);
      for (const h of this.accWorker) h.reset();
      this.accCounters.fill(0);
      for (let i = 0; i < n; i++) {
        const slot = this.slotScratch[i] as Slot;
        for (let k = 0; k < METRIC_COUNT; k++) {
          const h = slot.hists[k];
          if (h !== null && h !== undefined && h.totalCount > 0) (this.accWorker[k] as Histogram).add(h);
        }
        for (let c = 0; c < COUNTERS; c++) this.accCounters[c] = (this.accCounters[c] as number) + (slot.counters[c] as number);
      }
      for (let k = 0; k < METRIC_COUNT; k++) {
        const acc = this.accWorker[k] as Histogram;
        if (acc.totalCount > 0) (this.accAll[k] as Histogram).add(acc);
      }
      for (let c = 0; c < COUNTERS; c++) this.accAllCounters[c] = (this.accAllCounters[c] as number) + (this.accCounters[c] as number);
      if (s === this.unrouted) continue;
      // Members always appear (idle ones with zeros); former members only when they have data in the window.
      if (!memberUrls.has(s.url) && this.accCounters[C.Total] === 0) continue;
      perWorker.push({ url: s.url, nodeId: s.nodeId, counters: this.accCounters.slice(), latency: latencySet(this.accWorker) });
    }
    for (const m of members) {
      if (this.byUrl.has(m.url)) continue;
      perWorker.push({ url: m.url, nodeId: m.nodeId, counters: new Float64Array(COUNTERS), latency: latencySet(null) });
    }
    let routed = 0;
    for (const p of perWorker) routed += p.counters[C.Total] as number;
    for (const p of perWorker) {
      workers[p.url] = {
        node_id: p.nodeId,
        requests: requestCounts(p.counters),
        share: routed > 0 ? round((p.counters[C.Total] as number) / routed, 4) : 0,
        latency: p.latency,
      };
    }
    const totals = this.accAllCounters;
    const perSecond = (v: number): number => (seconds > 0 ? round(v / seconds, 3) : 0);
    return {
      seconds: round(seconds, 3),
      requests: requestCounts(totals),
      throughput: { requests_per_s: perSecond(totals[C.Total] as number), input_tokens_per_s: perSecond(totals[C.Input] as number), output_tokens_per_s: perSecond(totals[C.Output] as number) },
      tokens: { input: totals[C.Input] as number, output: totals[C.Output] as number, cached: totals[C.Cached] as number },
      latency: latencySet(this.accAll),
      workers,
      balance: balanceOf(members.map((m) => workers[m.url]?.requests.total ?? 0)),
    };
  }

  // -------------------------------------------------------------------------------------------------
  // Prometheus

  /** The histogram families rendered from this store: request duration per route, TTFT / ITL / TPOT per member. */
  renderPrometheus(members: readonly StatsMember[]): string {
    this.releaseFormer(members, this.epochOf(this.now())); // scrapes are regular: a good time to tidy
    return renderHistogramFamilies(
      this.durations,
      members.map((m) => {
        const s = this.byUrl.get(m.url);
        return { url: m.url, nodeId: m.nodeId, ttft: s?.ttft, itl: s?.itl, tpot: s?.tpot };
      }),
    );
  }

  // -------------------------------------------------------------------------------------------------
  // checkpoints (the host keeps the latest; a restarted thread resumes from it)

  /** `seq`: the last sample batch applied (the host replays later ones after a crash). */
  checkpoint(seq = 0): StatsCheckpoint {
    const workers: StatsWorkerDef[] = [];
    const latency: Record<string, string[]> = {};
    const counters: Record<string, number[]> = {};
    const buckets: Record<string, number[]> = {};
    const scratch = this.slotScratch;
    const epoch = this.epochOf(this.now());
    const minute = Math.floor(epoch / SLICES_PER_MINUTE);
    for (const [id, s] of this.byId) {
      workers.push({ id, url: s.url, nodeId: s.nodeId });
      const key = String(id);
      if (latency[key] !== undefined) continue;
      const n = slotsIn(s, 'cumulative', epoch, minute, scratch);
      const encoded: string[] = [];
      const sum = new Float64Array(COUNTERS);
      for (let k = 0; k < METRIC_COUNT; k++) {
        const acc = this.accWorker[k] as Histogram;
        acc.reset();
        for (let i = 0; i < n; i++) {
          const h = (scratch[i] as Slot).hists[k];
          if (h !== null && h !== undefined && h.totalCount > 0) acc.add(h);
        }
        encoded.push(acc.totalCount > 0 ? encodeIntoCompressedBase64(acc) : '');
      }
      for (let i = 0; i < n; i++) for (let c = 0; c < COUNTERS; c++) sum[c] = (sum[c] as number) + ((scratch[i] as Slot).counters[c] as number);
      latency[key] = encoded;
      counters[key] = [...sum];
      buckets[`ttft:${key}`] = s.ttft.toArray();
      buckets[`itl:${key}`] = s.itl.toArray();
      buckets[`tpot:${key}`] = s.tpot.toArray();
    }
    ROUTE_LABELS.forEach((_r, i) => {
      buckets[`duration:${i}`] = (this.durations[i] as FixedHistogram).toArray();
    });
    const un = slotsIn(this.unrouted, 'cumulative', epoch, minute, scratch);
    const unrouted = new Array<number>(COUNTERS).fill(0);
    for (let i = 0; i < un; i++) for (let c = 0; c < COUNTERS; c++) unrouted[c] = (unrouted[c] as number) + ((scratch[i] as Slot).counters[c] as number);
    return { takenAt: Date.now(), since: this.since, workers, latency, counters, buckets, unrouted, seq };
  }

  /**
   * Resume cumulative figures from a checkpoint. The windows start empty, from `windowsFrom` (wall-clock
   * ms; default now): the checkpoint's time when every later batch is replayed into them.
   */
  restore(cp: StatsCheckpoint, windowsFrom = Date.now()): void {
    this.since = cp.since;
    this.windowsSince = windowsFrom;
    this.defineWorkers(cp.workers);
    for (const [key, encoded] of Object.entries(cp.latency)) {
      const s = this.byId.get(Number(key));
      if (s === undefined) continue;
      encoded.forEach((b64, k) => {
        if (b64 === '' || k >= METRIC_COUNT) return;
        const decoded = decodeFromCompressedBase64(b64, 32, this.useWasm);
        let target = s.cumulative.hists[k];
        if (target === null || target === undefined) {
          target = newHistogram(64, this.useWasm);
          s.cumulative.hists[k] = target;
        }
        target.add(decoded);
        decoded.destroy();
      });
      const counters = cp.counters[key];
      if (counters !== undefined) for (let c = 0; c < COUNTERS; c++) s.cumulative.counters[c] = counters[c] ?? 0;
      s.ttft.load(cp.buckets[`ttft:${key}`] ?? []);
      s.itl.load(cp.buckets[`itl:${key}`] ?? []);
      s.tpot.load(cp.buckets[`tpot:${key}`] ?? []);
    }
    ROUTE_LABELS.forEach((_r, i) => (this.durations[i] as FixedHistogram).load(cp.buckets[`duration:${i}`] ?? []));
    for (let c = 0; c < COUNTERS; c++) this.unrouted.cumulative.counters[c] = cp.unrouted[c] ?? 0;
  }

  /** The windows hold data from this wall-clock ms on (a restarted thread that could not replay everything). */
  startWindowsAt(ms: number): void {
    this.windowsSince = ms;
  }

  /** Free the histograms (WebAssembly memory is not garbage collected). */
  destroy(): void {
    const all = [...this.byUrl.values(), this.unrouted];
    for (const s of all) for (const slot of [...s.tens, ...s.minutes, s.cumulative]) for (const h of slot.hists) h?.destroy();
    for (const h of [...this.accWorker, ...this.accAll]) h.destroy();
    this.byUrl.clear();
    this.byId.clear();
  }
}





