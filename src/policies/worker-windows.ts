/**
 * Per-worker sliding windows of finished requests, fed by CompletionFeedback: what marginal_utility's
 * gradients and the plugins' "recent latency / throughput" are computed from. Fixed-size rings of
 * numbers per worker slot; a slot that changes hands (another URL) starts over.
 */
import type { CompletionFeedback, WorkerInfo } from './types.js';

export class SampleRing {
  /** Milliseconds (the front end's clock) at which each request finished. */
  readonly finishedAt: Float64Array;
  /** Seconds from sent to finished. */
  readonly latencyS: Float64Array;
  /** Output tokens per second of the request (output tokens / latency). */
  readonly throughput: Float64Array;
  /** Milliseconds from sent to the first token. */
  readonly ttftMs: Float64Array;
  /** Next write position. */
  private head = 0;
  /** Samples held (<= capacity). */
  count = 0;
  /** Samples ever added (for snapshots). */
  total = 0;

  constructor(
    readonly url: string,
    readonly capacity: number,
  ) {
    this.finishedAt = new Float64Array(capacity);
    this.latencyS = new Float64Array(capacity);
    this.throughput = new Float64Array(capacity);
    this.ttftMs = new Float64Array(capacity);
  }

  push(finishedAt: number, latencyS: number, throughput: number, ttftMs: number): void {
    const h = this.head;
    this.finishedAt[h] = finishedAt;
    this.latencyS[h] = latencyS;
    this.throughput[h] = throughput;
    this.ttftMs[h] = ttftMs;
    this.head = h + 1 === this.capacity ? 0 : h + 1;
    if (this.count < this.capacity) this.count++;
    this.total++;
  }

  /** Array index of the k-th oldest sample held (k in [0, count)). */
  index(k: number): number {
    const i = this.head - this.count + k;
    return i < 0 ? i + this.capacity : i;
  }

  /** Means over the samples held (zeros when empty). */
  means(): { latencyS: number; throughput: number; ttftMs: number } {
    const n = this.count;
    if (n === 0) return { latencyS: 0, throughput: 0, ttftMs: 0 };
    let l = 0;
    let t = 0;
    let f = 0;
    for (let k = 0; k < n; k++) {
      const i = this.index(k);
      l += this.latencyS[i] as number;
      t += this.throughput[i] as number;
      f += this.ttftMs[i] as number;
    }
    return { latencyS: l / n, throughput: t / n, ttftMs: f / n };
  }
}

export class WorkerWindows {
  private readonly rings = new Map<number, SampleRing>();
  private urls = new Map<number, string>();
  /** Feedback that could not be used (failed requests, unknown or reassigned slots, bad timestamps). */
  skipped = 0;

  constructor(readonly capacity: number) {
    if (!(Number.isInteger(capacity) && capacity >= 2)) throw new RangeError(`window size must be an integer >= 2, got ${String(capacity)}`);
  }

  /** Keep the windows of current members; a slot now held by another URL starts empty. */
  setMembers(ws: readonly WorkerInfo[]): void {
    const urls = new Map<number, string>();
    for (const w of ws) urls.set(w.slot, w.url);
    for (const [slot, ring] of this.rings) if (urls.get(slot) !== ring.url) this.rings.delete(slot);
    this.urls = urls;
  }

  /** Record a finished request; false when it is not a usable sample. */
  add(f: CompletionFeedback): boolean {
    const latencyMs = f.finishedAt - f.sentAt;
    if (!f.success || !(latencyMs > 0) || !Number.isFinite(latencyMs) || this.urls.get(f.slot) !== f.url) {
      this.skipped++;
      return false;
    }
    let ring = this.rings.get(f.slot);
    if (ring === undefined) this.rings.set(f.slot, (ring = new SampleRing(f.url, this.capacity)));
    const latencyS = latencyMs / 1000;
    const out = Number.isFinite(f.outputTokens) && f.outputTokens > 0 ? f.outputTokens : 0;
    const ttft = f.firstTokenAt > 0 && f.firstTokenAt >= f.sentAt ? f.firstTokenAt - f.sentAt : latencyMs;
    ring.push(f.finishedAt, latencyS, out / latencyS, ttft);
    return true;
  }

  get(slot: number): SampleRing | undefined {
    return this.rings.get(slot);
  }
}
