/**
 * The load generator's HTTP client: an undici Pool (one keep-alive connection per request in flight, so a
 * request handed to it goes on the wire at once and "sent" means sent) driven through `dispatch`, its
 * fastest API, with the response read incrementally: each network chunk is stamped on arrival and kept.
 *
 * Nothing is parsed while the response arrives: the sending thread's time between scheduled sends is
 * what the send lag is made of, so the undici callbacks only copy and stamp chunks. The exchange is
 * handed over when it completes (`done`), and its outcome (SSE events parsed with their chunks' arrival
 * stamps: TTFT at the first content event, ITL between content events; JSON bodies parsed) is computed
 * when the caller asks for it, which the scheduler does in the slack between sends. The figures are the
 * same as parsing on arrival: an event's time is the arrival of the chunk that completed it.
 */
import { performance } from 'node:perf_hooks';
import { Pool, type Dispatcher } from 'undici';
import { StreamReader, emptyCounts, errorMessage, eventText, readCounts, type ReportedCounts } from './protocol.js';
import { CLIENT_KEEP_ALIVE_MS } from '../util/keep-alive.js';

/** What one exchange produced. Times are performance.now() ms. */
export interface ExchangeOutcome {
  /** HTTP status; 0 when no response arrived (connection error, timeout). */
  status: number;
  /** X-SGLang-Worker response header ('' when absent). */
  workerUrl: string;
  /** x-request-id response header ('' when absent). */
  requestId: string;
  streamed: boolean;
  firstContentAt: number;
  completedAt: number;
  gaps: number[];
  counts: ReportedCounts;
  generatedChars: number;
  /** '' on success. */
  error: string;
}

export interface ClientOptions {
  origin: string;
  connections: number;
  timeoutMs: number;
  headers: Record<string, string>;
  /** Idle time before a kept-alive connection is closed (default CLIENT_KEEP_ALIVE_MS: below the router's idle close). */
  keepAliveMs?: number;
  /** When given, the wall time spent in the response callbacks (ours, not undici's) is added here (lag diagnostics). */
  responseClock?: { ms: number };
}

/** Error bodies and non-streaming answers larger than this are cut (a load test never needs more). */
const MAX_BODY_BYTES = 64 * 1024 * 1024;
/** A stream is held unparsed until it completes up to this many bytes (short answers: the load that needs precise sends). */
const DEFER_STREAM_BYTES = 256 * 1024;
const NO_GAPS: number[] = [];

export class LoadClient {
  readonly pool: Pool;
  private readonly baseHeaders: string[];

  constructor(private readonly opts: ClientOptions) {
    this.baseHeaders = ['content-type', 'application/json'];
    for (const [k, v] of Object.entries(opts.headers)) this.baseHeaders.push(k, v);
    this.pool = new Pool(opts.origin, {
      connections: opts.connections,
      pipelining: 1,
      keepAliveTimeout: opts.keepAliveMs ?? CLIENT_KEEP_ALIVE_MS,
      headersTimeout: opts.timeoutMs,
      bodyTimeout: opts.timeoutMs,
      connectTimeout: Math.min(opts.timeoutMs, 30_000),
    });
  }

  /**
   * Send one POST; `done` is called exactly once. `cumulative`: the stream repeats all text so far
   * (SGLang /generate) rather than deltas.
   */
  send<C>(path: string, body: Buffer, requestId: string, cumulative: boolean, done: (ex: Exchange, ctx: C) => void, ctx: C): void {
    // A flat [name, value, ...] list: undici takes it as is (no per-request object spread).
    const headers = this.baseHeaders.slice();
    headers.push('x-request-id', requestId);
    const clock = this.opts.responseClock;
    const handler =
      clock === undefined
        ? new ExchangeHandler(cumulative, done as (ex: Exchange, ctx: unknown) => void, ctx)
        : new TimedExchangeHandler(cumulative, done as (ex: Exchange, ctx: unknown) => void, ctx, clock);
    try {
      this.pool.dispatch(
        { path, method: 'POST', headers, body, headersTimeout: this.opts.timeoutMs, bodyTimeout: this.opts.timeoutMs } as Dispatcher.DispatchOptions,
        handler as unknown as Dispatcher.DispatchHandler,
      );
    } catch (err) {
      handler.onError(err as Error);
    }
  }

  close(): Promise<void> {
    return this.pool.close();
  }

  destroy(): Promise<void> {
    return this.pool.destroy();
  }
}

/** A finished exchange: when it completed, and its outcome computed on demand (once). */
export interface Exchange {
  /** performance.now() ms of completion (or failure). */
  readonly completedAt: number;
  outcome(): ExchangeOutcome;
}

/** Send one request and wait for its outcome (warm-up, tests): parsing right away is fine there. */
export function sendAndParse(client: LoadClient, path: string, body: Buffer, requestId: string, cumulative: boolean): Promise<ExchangeOutcome> {
  return new Promise((resolve) => client.send(path, body, requestId, cumulative, (ex: Exchange) => resolve(ex.outcome()), undefined));
}

class ExchangeHandler implements Exchange {
  private status = 0;
  private workerUrl = '';
  private requestId = '';
  private streamed = false;
  /** Response chunks and their arrival stamps. */
  private readonly parts: Buffer[] = [];
  private readonly stamps: number[] = [];
  private bytes = 0;
  /** Set once a stream outgrew DEFER_STREAM_BYTES: parsed on arrival from then on. */
  private reader: StreamReader | undefined;
  private done = false;
  private error: Error | undefined;
  private result: ExchangeOutcome | undefined;
  completedAt = -1;

  constructor(
    private readonly cumulative: boolean,
    private readonly finish: (ex: Exchange, ctx: unknown) => void,
    private readonly ctx: unknown,
  ) {}

  onConnect(): void {}

  onHeaders(statusCode: number, rawHeaders: Buffer[] | string[], _resume: () => void): boolean {
    if (statusCode < 200) return true;
    this.status = statusCode;
    let contentType = '';
    for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
      const raw = rawHeaders[i]!;
      // Only three headers matter; their lengths (12, 15) skip the others without decoding them.
      const len = raw.length;
      if (len !== 12 && len !== 15) continue;
      const name = raw.toString().toLowerCase();
      if (name === 'content-type') contentType = rawHeaders[i + 1]!.toString();
      else if (name === 'x-sglang-worker') this.workerUrl = rawHeaders[i + 1]!.toString();
      else if (name === 'x-request-id') this.requestId = rawHeaders[i + 1]!.toString();
    }
    this.streamed = statusCode < 400 && contentType.startsWith('text/event-stream');
    return true;
  }

  onData(chunk: Buffer): boolean {
    const now = performance.now();
    const reader = this.reader;
    if (reader !== undefined) {
      reader.push(chunk, now); // a long stream: parsed as it comes (see DEFER_STREAM_BYTES)
      return true;
    }
    if (this.streamed && this.bytes + chunk.length > DEFER_STREAM_BYTES) {
      // Too much to hold until completion (cumulative SSE text grows quadratically): parse from now on.
      const r = new StreamReader(this.cumulative);
      for (let i = 0; i < this.parts.length; i++) r.push(this.parts[i] as Buffer, this.stamps[i] as number);
      this.parts.length = 0;
      this.stamps.length = 0;
      r.push(chunk, now);
      this.reader = r;
      return true;
    }
    if (this.bytes + chunk.length <= MAX_BODY_BYTES) {
      // No copy: undici hands a view into the socket's read (a fresh, exact-size buffer per read in
      // Node, never reused), so holding it until the outcome is parsed is safe and costs no extra memory.
      this.parts.push(chunk);
      this.stamps.push(now);
    }
    this.bytes += chunk.length;
    return true;
  }

  onComplete(): void {
    if (this.done) return;
    this.done = true;
    this.completedAt = performance.now();
    this.finish(this, this.ctx);
  }

  onError(err: Error): void {
    if (this.done) return;
    this.done = true;
    this.completedAt = performance.now();
    this.error = err;
    this.finish(this, this.ctx);
  }

  outcome(): ExchangeOutcome {
    if (this.result === undefined) {
      this.result = this.streamed ? this.streamOutcome() : this.error !== undefined ? this.errorOutcome(undefined) : this.bodyOutcome();
      this.parts.length = 0; // parsed: let the chunks go
    }
    return this.result;
  }

  private streamOutcome(): ExchangeOutcome {
    let r = this.reader;
    if (r === undefined) {
      r = new StreamReader(this.cumulative);
      const { parts, stamps } = this;
      for (let i = 0; i < parts.length; i++) r.push(parts[i] as Buffer, stamps[i] as number);
    }
    if (this.error !== undefined) return this.errorOutcome(r);
    const now = this.completedAt;
    r.end(now);
    let error = r.error ?? '';
    if (error === '' && r.contentEvents === 0 && !r.sawDone) error = 'stream ended without content or [DONE]';
    return {
      status: this.status,
      workerUrl: this.workerUrl,
      requestId: this.requestId,
      streamed: true,
      firstContentAt: r.firstContentAt,
      completedAt: now,
      gaps: r.gaps,
      counts: r.counts,
      generatedChars: r.generatedChars,
      error,
    };
  }

  private bodyOutcome(): ExchangeOutcome {
    const now = this.completedAt;
    const body = this.parts.length === 1 ? (this.parts[0] as Buffer) : Buffer.concat(this.parts);
    const counts = emptyCounts();
    let error = '';
    let generatedChars = 0;
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      parsed = undefined;
    }
    if (this.status >= 400) {
      error = `HTTP ${this.status}: ` + (errorMessage(parsed) ?? body.toString('utf8', 0, Math.min(body.length, 300)));
    } else if (parsed === undefined) {
      error = `HTTP ${this.status}: response is not JSON`;
    } else {
      const objs = Array.isArray(parsed) ? parsed : [parsed];
      for (const o of objs) {
        if (o === null || typeof o !== 'object') continue;
        const rec = o as Record<string, unknown>;
        const em = errorMessage(rec);
        if (em !== undefined) error = em;
        readCounts(rec, counts);
        generatedChars += eventText(rec)?.length ?? 0;
      }
    }
    return {
      status: this.status,
      workerUrl: this.workerUrl,
      requestId: this.requestId,
      streamed: false,
      // The whole answer is the first (and only) content: TTFT = E2E when not streaming.
      firstContentAt: error === '' ? now : -1,
      completedAt: now,
      gaps: NO_GAPS,
      counts,
      generatedChars,
      error,
    };
  }

  private errorOutcome(r: StreamReader | undefined): ExchangeOutcome {
    const err = this.error as Error;
    const code = (err as { code?: string }).code;
    return {
      status: this.status,
      workerUrl: this.workerUrl,
      requestId: this.requestId,
      streamed: r !== undefined,
      firstContentAt: r?.firstContentAt ?? -1,
      completedAt: this.completedAt,
      gaps: r?.gaps ?? NO_GAPS,
      counts: r?.counts ?? emptyCounts(),
      generatedChars: r?.generatedChars ?? 0,
      error: `${code ?? err.name}: ${err.message}`,
    };
  }
}

/** ExchangeHandler that also adds the time of its callbacks to a clock (lag diagnostics only). */
class TimedExchangeHandler extends ExchangeHandler {
  constructor(
    cumulative: boolean,
    finish: (ex: Exchange, ctx: unknown) => void,
    ctx: unknown,
    private readonly clock: { ms: number },
  ) {
    super(cumulative, finish, ctx);
  }

  override onHeaders(statusCode: number, rawHeaders: Buffer[] | string[], resume: () => void): boolean {
    const t = performance.now();
    const r = super.onHeaders(statusCode, rawHeaders, resume);
    this.clock.ms += performance.now() - t;
    return r;
  }

  override onData(chunk: Buffer): boolean {
    const t = performance.now();
    const r = super.onData(chunk);
    this.clock.ms += performance.now() - t;
    return r;
  }

  override onComplete(): void {
    const t = performance.now();
    super.onComplete();
    this.clock.ms += performance.now() - t;
  }

  override onError(err: Error): void {
    const t = performance.now();
    super.onError(err);
    this.clock.ms += performance.now() - t;
  }
}
