/**
 * The load generator's HTTP client: an undici Pool (one keep-alive connection per request in flight, so a
 * request handed to it goes on the wire at once and "sent" means sent) driven through `dispatch`, its
 * fastest API, with the response read incrementally: each network chunk is stamped on arrival, SSE events
 * are parsed as they complete (TTFT at the first content event, ITL between content events).
 */
import { performance } from 'node:perf_hooks';
import { Pool, type Dispatcher } from 'undici';
import { StreamReader, emptyCounts, errorMessage, eventText, readCounts, type ReportedCounts } from './protocol.js';

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
}

/** Error bodies and non-streaming answers larger than this are cut (a load test never needs more). */
const MAX_BODY_BYTES = 64 * 1024 * 1024;
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
      keepAliveTimeout: 30_000,
      headersTimeout: opts.timeoutMs,
      bodyTimeout: opts.timeoutMs,
      connectTimeout: Math.min(opts.timeoutMs, 30_000),
    });
  }

  /**
   * Send one POST; `done` is called exactly once. `cumulative`: the stream repeats all text so far
   * (SGLang /generate) rather than deltas.
   */
  send(path: string, body: Buffer, requestId: string, cumulative: boolean, done: (o: ExchangeOutcome) => void): void {
    // A flat [name, value, ...] list: undici takes it as is (no per-request object spread).
    const headers = this.baseHeaders.slice();
    headers.push('x-request-id', requestId);
    const handler = new ExchangeHandler(cumulative, done);
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

class ExchangeHandler {
  private status = 0;
  private workerUrl = '';
  private requestId = '';
  private reader: StreamReader | undefined;
  private parts: Buffer[] | undefined;
  private bytes = 0;
  private done = false;
  private firstByteAt = -1;

  constructor(
    private readonly cumulative: boolean,
    private readonly finish: (o: ExchangeOutcome) => void,
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
    if (statusCode < 400 && contentType.startsWith('text/event-stream')) this.reader = new StreamReader(this.cumulative);
    else this.parts = [];
    return true;
  }

  onData(chunk: Buffer): boolean {
    const now = performance.now();
    if (this.firstByteAt < 0) this.firstByteAt = now;
    if (this.reader !== undefined) {
      this.reader.push(chunk, now);
      return true;
    }
    if (this.bytes + chunk.length <= MAX_BODY_BYTES) {
      // undici may reuse the chunk's memory: keep a copy.
      this.parts!.push(Buffer.from(chunk));
    }
    this.bytes += chunk.length;
    return true;
  }

  onComplete(): void {
    if (this.done) return;
    this.done = true;
    const now = performance.now();
    const r = this.reader;
    if (r !== undefined) {
      r.end(now);
      let error = r.error ?? '';
      if (error === '' && r.contentEvents === 0 && !r.sawDone) error = 'stream ended without content or [DONE]';
      this.finish({
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
      });
      return;
    }
    const body = Buffer.concat(this.parts ?? []);
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
    this.finish({
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
    });
  }

  onError(err: Error): void {
    if (this.done) return;
    this.done = true;
    const code = (err as { code?: string }).code;
    const now = performance.now();
    this.finish({
      status: this.status,
      workerUrl: this.workerUrl,
      requestId: this.requestId,
      streamed: this.reader !== undefined,
      firstContentAt: this.reader?.firstContentAt ?? -1,
      completedAt: now,
      gaps: this.reader?.gaps ?? NO_GAPS,
      counts: this.reader?.counts ?? emptyCounts(),
      generatedChars: this.reader?.generatedChars ?? 0,
      error: `${code ?? err.name}: ${err.message}`,
    });
  }
}
