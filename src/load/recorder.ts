/**
 * Records every finished request with bounded memory: one CSV row streamed to requests.csv as the request
 * finishes, and only what the summary needs kept in preallocated typed arrays indexed by request (about
 * 70 bytes per request: 1M requests ~ 70 MB), plus pooled ITL gaps in a Float32 reservoir (exact up to
 * ITL_EXACT_CAP gaps, then a uniform sample of that size; count, mean, std and max stay exact).
 *
 * Every millisecond figure is rounded to the microsecond once, here; the CSV prints that value and the
 * summary uses the same value, so percentiles recomputed from the CSV agree with summary.json.
 */
import { createReadStream, createWriteStream, renameSync, type WriteStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { CHARS_PER_TOKEN } from '../util/tokenizer.js';
import { Rng } from '../util/rng.js';
import type { ExchangeOutcome } from './client.js';
import { GPU_SOURCES, SRC_NONE, SRC_SINGLE, SRC_HEADER, type GpuMapper } from './gpu-map.js';
import { RunningStats, percentileSorted, roundMs } from './stats.js';

export const CSV_COLUMNS = [
  'index',
  'request_id',
  'status',
  'ok',
  'error',
  'scheduled_ms',
  'sent_ms',
  'first_token_ms',
  'completed_ms',
  'queue_ms',
  'send_lag_ms',
  'ttft_ms',
  'tpot_ms',
  'itl_count',
  'itl_mean_ms',
  'itl_p50_ms',
  'itl_p99_ms',
  'itl_max_ms',
  'e2e_ms',
  'server_latency_ms',
  'total_latency_ms',
  'input_tokens',
  'output_tokens',
  'cached_tokens',
  'finish_reason',
  'group',
  'worker_url',
  'gpu_id',
  'gpu_id_source',
] as const;

/** Bytes of CSV rows written to requests.csv together (~300 rows). */
const CSV_CHUNK_BYTES = 65_536;

/** Pooled ITL gaps kept exactly up to this many (32 MiB as Float32), then a uniform reservoir sample. */
export const ITL_EXACT_CAP = 8 * 1024 * 1024;

/** One finished request as the scheduler hands it over; times in ms from the run's start. */
export interface FinishedRequest {
  index: number;
  requestId: string;
  scheduledMs: number;
  /** When the generator could send it: max(scheduled, the moment a concurrency slot freed). */
  readyMs: number;
  sentMs: number;
  /** The outcome's performance.now() times minus this give run-relative ms. */
  clockOffset: number;
  outcome: ExchangeOutcome;
  /** The dataset's estimate of the prompt tokens (used when the server reports none). */
  specPromptTokens: number;
  group: number;
}

export const OK_PENDING = 0;
export const OK_SUCCESS = 1;
export const OK_FAILED = 2;

export class ItlReservoir {
  private buf: Float32Array;
  private filled = 0;
  readonly stats = new RunningStats();
  private readonly rng: Rng;

  constructor(
    private readonly cap = ITL_EXACT_CAP,
    seed = 12345,
  ) {
    this.buf = new Float32Array(Math.min(cap, 4096));
    this.rng = new Rng(seed);
  }

  add(ms: number): void {
    this.stats.add(ms);
    if (this.filled < this.cap) {
      if (this.filled === this.buf.length) {
        const next = new Float32Array(Math.min(this.cap, this.buf.length * 2));
        next.set(this.buf);
        this.buf = next;
      }
      this.buf[this.filled++] = ms;
      return;
    }
    // Algorithm R: keep each of the n gaps seen with probability cap / n.
    const j = Math.floor(this.rng.next() * this.stats.count);
    if (j < this.cap) this.buf[j] = ms;
  }

  /** True when every gap is kept (percentiles exact), false once sampling started. */
  get exact(): boolean {
    return this.stats.count <= this.cap;
  }

  sorted(): Float64Array {
    const out = Float64Array.from(this.buf.subarray(0, this.filled));
    out.sort();
    return out;
  }

  get bytes(): number {
    return this.buf.byteLength;
  }
}

/** One CSV field; line breaks become spaces so that one row is always one line (grep, wc -l, the GPU rewrite). */
function csvField(s: string): string {
  if (s === '') return '';
  if (/[\r\n]/.test(s)) s = s.replace(/[\r\n]+/g, ' ');
  if (/[",]/.test(s)) return '"' + s.replace(/"/g, '""') + '"';
  return s;
}

function fmt(ms: number): string {
  return Number.isNaN(ms) ? '' : ms.toFixed(3);
}

export class Recorder {
  readonly n: number;
  readonly ok: Uint8Array;
  readonly status: Int16Array;
  readonly ttft: Float64Array;
  readonly tpot: Float64Array;
  readonly e2e: Float64Array;
  readonly total: Float64Array;
  readonly queue: Float64Array;
  readonly lag: Float64Array;
  readonly inputTokens: Int32Array;
  readonly outputTokens: Int32Array;
  readonly cachedTokens: Int32Array;
  readonly worker: Int16Array;
  readonly gpu: Int16Array;
  readonly gpuSource: Uint8Array;
  readonly itl = new ItlReservoir();
  /** Latest completion (ms from the run's start). */
  lastCompletedMs = 0;
  finished = 0;
  failed = 0;
  /** Error counts by short reason (status or error code). */
  readonly errors = new Map<string, number>();
  /** Rows written with an empty GPU id, to be settled after the run. */
  deferred = 0;

  private readonly out: WriteStream;
  /**
   * Rows encoded as they are made, into a buffer outside the JS heap. Joining them into one string
   * instead kept ~300 rows (a tree of ~20k small strings) alive across young-generation collections
   * until each 64 KB write: copying them made those collections, the generator's largest cause of
   * late sends, ~2x longer (--trace-gc-nvp: new_space_survived 0.15 -> 0.9 MB as the string grew).
   */
  private pending = Buffer.allocUnsafe(CSV_CHUNK_BYTES);
  private pendingBytes = 0;
  private readonly csvPath: string;

  constructor(
    csvPath: string,
    n: number,
    private readonly mapper: GpuMapper,
  ) {
    this.n = n;
    this.csvPath = csvPath;
    this.ok = new Uint8Array(n);
    this.status = new Int16Array(n);
    this.ttft = new Float64Array(n).fill(Number.NaN);
    this.tpot = new Float64Array(n).fill(Number.NaN);
    this.e2e = new Float64Array(n).fill(Number.NaN);
    this.total = new Float64Array(n).fill(Number.NaN);
    this.queue = new Float64Array(n).fill(Number.NaN);
    this.lag = new Float64Array(n).fill(Number.NaN);
    this.inputTokens = new Int32Array(n);
    this.outputTokens = new Int32Array(n);
    this.cachedTokens = new Int32Array(n).fill(-1);
    this.worker = new Int16Array(n).fill(-1);
    this.gpu = new Int16Array(n).fill(-1);
    this.gpuSource = new Uint8Array(n);
    this.out = createWriteStream(csvPath);
    this.append(CSV_COLUMNS.join(',') + '\n');
  }

  /** Bytes held by the per-request arrays (for the memory figure). */
  get bytes(): number {
    return this.n * (1 + 2 + 6 * 8 + 3 * 4 + 2 + 2 + 1) + this.itl.bytes;
  }

  add(r: FinishedRequest): void {
    const o = r.outcome;
    const i = r.index;
    const success = o.error === '' && o.status >= 200 && o.status < 400;
    const completed = roundMs(o.completedAt - r.clockOffset);
    const sent = roundMs(r.sentMs);
    const scheduled = roundMs(r.scheduledMs);
    const firstToken = o.firstContentAt >= 0 ? roundMs(o.firstContentAt - r.clockOffset) : Number.NaN;
    const queue = roundMs(r.sentMs - r.scheduledMs);
    const lag = roundMs(r.sentMs - r.readyMs);
    const e2e = roundMs(o.completedAt - r.clockOffset - r.sentMs);
    const total = roundMs(o.completedAt - r.clockOffset - r.scheduledMs);
    const ttft = o.firstContentAt >= 0 ? roundMs(o.firstContentAt - r.clockOffset - r.sentMs) : Number.NaN;
    const input = o.counts.promptTokens >= 0 ? o.counts.promptTokens : r.specPromptTokens;
    const output = o.counts.completionTokens >= 0 ? o.counts.completionTokens : Math.ceil(o.generatedChars / CHARS_PER_TOKEN);
    const cached = o.counts.cachedTokens;
    // TPOT = (E2E - TTFT) / (output_tokens - 1), defined for streamed answers of at least 2 tokens.
    const tpot = success && o.streamed && output > 1 && !Number.isNaN(ttft) ? roundMs((e2e - ttft) / (output - 1)) : Number.NaN;

    // ITL of this request (its own gaps) and the pooled reservoir.
    const gaps = o.gaps;
    let itlMean = Number.NaN;
    let itlP50 = Number.NaN;
    let itlP99 = Number.NaN;
    let itlMax = Number.NaN;
    if (success && gaps.length > 0) {
      const g = new Float64Array(gaps.length);
      let sum = 0;
      for (let k = 0; k < gaps.length; k++) {
        const v = roundMs(gaps[k] as number);
        g[k] = v;
        sum += v;
        this.itl.add(v);
      }
      g.sort();
      itlMean = roundMs(sum / g.length);
      itlP50 = roundMs(percentileSorted(g, 50));
      itlP99 = roundMs(percentileSorted(g, 99));
      itlMax = g[g.length - 1] as number;
    }

    this.ok[i] = success ? 1 : 2;
    this.status[i] = o.status;
    this.lag[i] = lag;
    this.queue[i] = queue;
    this.inputTokens[i] = input;
    this.outputTokens[i] = output;
    this.cachedTokens[i] = cached;
    if (success) {
      this.ttft[i] = ttft;
      this.tpot[i] = tpot;
      this.e2e[i] = e2e;
      this.total[i] = total;
    } else {
      this.failed++;
      const key = o.status > 0 ? `HTTP ${o.status}` : o.error.split(':')[0] || 'error';
      this.errors.set(key, (this.errors.get(key) ?? 0) + 1);
    }
    if (completed > this.lastCompletedMs) this.lastCompletedMs = completed;
    this.finished++;

    // GPU: settled now when possible, else after the run.
    let gpu = -1;
    let src = SRC_NONE;
    if (o.workerUrl !== '') {
      const w = this.mapper.workerIndex(o.workerUrl);
      this.worker[i] = w;
      const g = this.mapper.immediateGpu(w);
      if (g >= 0) {
        gpu = g;
        src = SRC_HEADER;
      }
    }
    if (src === SRC_NONE && this.mapper.isSingleServer && o.workerUrl === '') {
      gpu = 0;
      src = SRC_SINGLE;
    }
    this.gpu[i] = gpu;
    this.gpuSource[i] = src;
    if (src === SRC_NONE) this.deferred++;

    const row =
      i +
      ',' +
      csvField(r.requestId) +
      ',' +
      o.status +
      ',' +
      (success ? '1' : '0') +
      ',' +
      csvField(o.error.length > 300 ? o.error.slice(0, 300) : o.error) +
      ',' +
      fmt(scheduled) +
      ',' +
      fmt(sent) +
      ',' +
      fmt(firstToken) +
      ',' +
      fmt(completed) +
      ',' +
      fmt(queue) +
      ',' +
      fmt(lag) +
      ',' +
      (success ? fmt(ttft) : '') +
      ',' +
      fmt(tpot) +
      ',' +
      (success ? gaps.length : 0) +
      ',' +
      fmt(itlMean) +
      ',' +
      fmt(itlP50) +
      ',' +
      fmt(itlP99) +
      ',' +
      fmt(itlMax) +
      ',' +
      (success ? fmt(e2e) : '') +
      ',' +
      (success ? fmt(e2e) : '') +
      ',' +
      (success ? fmt(total) : '') +
      ',' +
      input +
      ',' +
      output +
      ',' +
      (cached >= 0 ? String(cached) : '') +
      ',' +
      csvField(o.counts.finishReason) +
      ',' +
      (r.group >= 0 ? String(r.group) : '') +
      ',' +
      csvField(o.workerUrl) +
      ',' +
      (gpu >= 0 ? String(gpu) : '') +
      ',' +
      GPU_SOURCES[src] +
      '\n';
    this.append(row);
  }

  /** Encodes one row into the pending chunk; a full chunk goes to the file stream. */
  private append(row: string): void {
    // UTF-8 takes at most 3 bytes per UTF-16 unit.
    if (this.pendingBytes + row.length * 3 > this.pending.length) {
      this.flush();
      if (row.length * 3 > this.pending.length) {
        this.out.write(row);
        return;
      }
    }
    this.pendingBytes += this.pending.write(row, this.pendingBytes);
  }

  private flush(): void {
    if (this.pendingBytes === 0) return;
    // The stream keeps the chunk until it is written: the next rows go to a fresh one.
    this.out.write(this.pending.subarray(0, this.pendingBytes));
    this.pending = Buffer.allocUnsafe(CSV_CHUNK_BYTES);
    this.pendingBytes = 0;
  }

  /** Ends the streamed CSV (before settling deferred GPU ids). */
  async close(): Promise<void> {
    this.flush();
    await new Promise<void>((resolve, reject) => {
      this.out.once('error', reject);
      this.out.end(() => resolve());
    });
  }

  /** Indexes whose GPU is not settled yet. */
  unsettled(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.n; i++) if (this.ok[i] !== OK_PENDING && this.gpuSource[i] === SRC_NONE) out.push(i);
    return out;
  }

  setGpu(i: number, gpu: number, source: number): void {
    this.gpu[i] = gpu;
    this.gpuSource[i] = source;
  }

  /** Rewrites requests.csv once, filling the GPU columns of rows written before their GPU was known. */
  async rewriteDeferred(): Promise<void> {
    if (this.deferred === 0) return;
    const tmp = this.csvPath + '.tmp';
    const out = createWriteStream(tmp);
    const rl = createInterface({ input: createReadStream(this.csvPath), crlfDelay: Infinity });
    let first = true;
    let buf = '';
    for await (const line of rl) {
      if (first) {
        first = false;
        buf += line + '\n';
        continue;
      }
      const comma = line.indexOf(',');
      const idx = Number(line.slice(0, comma));
      if (line.endsWith(',,') && Number.isInteger(idx) && idx >= 0 && idx < this.n && this.gpuSource[idx] !== SRC_NONE) {
        const g = this.gpu[idx] as number;
        buf += line.slice(0, -2) + ',' + (g >= 0 ? String(g) : '') + ',' + GPU_SOURCES[this.gpuSource[idx] as number] + '\n';
      } else buf += line + '\n';
      if (buf.length >= 65536) {
        if (!out.write(buf)) await new Promise<void>((r) => out.once('drain', () => r()));
        buf = '';
      }
    }
    await new Promise<void>((resolve, reject) => {
      out.once('error', reject);
      out.end(buf, () => resolve());
    });
    renameSync(tmp, this.csvPath);
    this.deferred = 0;
  }
}
