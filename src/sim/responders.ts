/**
 * How a simulated server answers: collected JSON bodies, or SSE chunks written as tokens arrive. Streaming
 * respects backpressure: while res.write reports the client full nothing more is written; the next chunk
 * after onWritable covers everything skipped (text is cumulative for /generate, a delta for OpenAI).
 */
import type { Exchange } from '../frontend/http.js';
import type { RequestSink, SimRequest } from './engine.js';
import {
  chatCompletionBody,
  completionBody,
  generateResultJson,
  matchedStop,
  openAiFinishReason,
  textJson,
  usageOf,
  type ParsedRequest,
} from './protocol.js';

/** What a responder needs of its server: response headers, the stream interval, the blocked-stream gauge. */
export interface ResponderHost {
  readonly headers: Record<string, string>;
  readonly opts: { readonly streamInterval: number };
  blockedStreams: number;
}

/** Per-request streaming state. */
export class ChunkState {
  /** Characters of req.text already sent (OpenAI deltas). */
  sent = 0;
  /** New tokens arrived while the client was not writable. */
  dirty = false;
  roleSent = false;
  constructor(
    readonly index: number,
    readonly ridJson: string,
  ) {}
}

export interface Responder extends RequestSink {
  attach(reqs: SimRequest[]): void;
  /** The client went away. */
  detach(): void;
}

/** Non-streaming: answer once every request of the body finished. */
export class CollectResponder implements Responder {
  private reqs: SimRequest[] = [];
  private open = 0;

  constructor(
    private readonly server: ResponderHost,
    private readonly ex: Exchange,
    private readonly parsed: ParsedRequest,
    private readonly model: string,
  ) {}

  attach(reqs: SimRequest[]): void {
    this.reqs = reqs;
    this.open = reqs.length;
  }

  detach(): void {
    this.open = -1;
  }

  onTokens(): void {}

  onFinish(): void {
    if (--this.open !== 0) return;
    const p = this.parsed;
    const created = Math.floor(Date.now() / 1000);
    let body: string;
    if (p.kind === 'generate') {
      const parts = this.reqs.map((r) => generateResultJson(r, (r.tag as ChunkState).ridJson, null));
      body = p.batch ? '[' + parts.join(',') + ']' : (parts[0] as string);
    } else if (p.kind === 'chat') body = JSON.stringify(chatCompletionBody(p.responseId, created, this.model, this.reqs[0]!));
    else body = JSON.stringify(completionBody(p.responseId, created, this.model, this.reqs));
    this.ex.json(200, body, this.server.headers);
  }
}

/** SSE: one chunk per step per request; coalesced while the client is not writable. */
export class StreamResponder implements Responder {
  private reqs: SimRequest[] = [];
  private open = 0;
  private blocked = false;
  private readonly created = Math.floor(Date.now() / 1000);
  private readonly interval: number;
  /** The constant head of every OpenAI chunk: {"id":..,"object":..,"created":..,"model":.., */
  private readonly head: string;

  constructor(
    private readonly server: ResponderHost,
    private readonly ex: Exchange,
    private readonly parsed: ParsedRequest,
    model: string,
  ) {
    this.interval = server.opts.streamInterval;
    const object = parsed.kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
    this.head = '{"id":' + JSON.stringify(parsed.responseId) + ',"object":"' + object + '","created":' + this.created + ',"model":' + JSON.stringify(model) + ',';
    const res = ex.res;
    res.onWritable(() => {
      this.unblock();
      return true;
    });
    res.cork(() => {
      res.writeStatus('200 OK');
      res.writeHeader('content-type', 'text/event-stream');
      res.writeHeader('cache-control', 'no-cache');
      for (const k in server.headers) res.writeHeader(k, server.headers[k] as string);
      res.write('');
    });
    ex.started = true;
  }

  attach(reqs: SimRequest[]): void {
    this.reqs = reqs;
    this.open = reqs.length;
  }

  detach(): void {
    if (this.blocked) this.server.blockedStreams--;
    this.blocked = false;
    this.open = -1;
  }

  onTokens(req: SimRequest): void {
    if (this.ex.aborted || this.ex.finished) return;
    const st = req.tag as ChunkState;
    // --stream-interval: skipped tokens ride on the next chunk (text is cumulative or a delta from `sent`).
    const k = req.completionTokens;
    if (this.interval > 1 && k !== 1 && k % this.interval !== 0) return;
    if (this.blocked) {
      st.dirty = true;
      return;
    }
    const chunk = this.progressChunk(req, st);
    if (chunk.length > 0) this.write(chunk);
  }

  onFinish(req: SimRequest): void {
    if (this.ex.aborted || this.ex.finished) return;
    const st = req.tag as ChunkState;
    st.dirty = false;
    let out = this.finalChunks(req, st);
    if (--this.open === 0) {
      if (this.parsed.includeUsage && this.parsed.kind !== 'generate') {
        out += 'data: ' + this.head + '"choices":[],"usage":' + JSON.stringify(usageOf(this.reqs)) + '}\n\n';
      }
      out += 'data: [DONE]\n\n';
      const res = this.ex.res;
      res.cork(() => res.end(out));
      this.ex.finished = true;
      if (this.blocked) this.server.blockedStreams--;
      this.blocked = false;
      return;
    }
    this.write(out);
  }

  private unblock(): void {
    if (!this.blocked) return;
    this.blocked = false;
    this.server.blockedStreams--;
    if (this.ex.aborted || this.ex.finished) return;
    let out = '';
    for (const req of this.reqs) {
      const st = req.tag as ChunkState;
      if (!st.dirty || req.state === 'done') continue;
      st.dirty = false;
      out += this.progressChunk(req, st);
    }
    if (out.length > 0) this.write(out);
  }

  private write(data: string): void {
    const res = this.ex.res;
    let ok = true;
    res.cork(() => {
      ok = res.write(data);
    });
    if (!ok && !this.blocked) {
      this.blocked = true;
      this.server.blockedStreams++;
    }
  }

  /** The chunk reporting progress (everything since the last chunk), or '' when there is nothing new. */
  private progressChunk(req: SimRequest, st: ChunkState): string {
    const kind = this.parsed.kind;
    if (kind === 'generate') return 'data: ' + generateResultJson(req, st.ridJson, this.parsed.batch ? st.index : null) + '\n\n';
    const text = req.text;
    if (st.sent >= text.length && (kind !== 'chat' || st.roleSent)) return '';
    const delta = st.sent === 0 ? text : text.slice(st.sent);
    st.sent = text.length;
    return this.deltaChunk(st, delta, 'null', '');
  }

  private deltaChunk(st: ChunkState, delta: string, finish: string, extra: string): string {
    const usage = this.parsed.includeUsage ? ',"usage":null' : '';
    if (this.parsed.kind === 'chat') {
      let d: string;
      if (!st.roleSent) {
        st.roleSent = true;
        d = '{"role":"assistant","content":' + textJson(delta) + '}';
      } else d = finish === 'null' ? '{"content":' + textJson(delta) + '}' : '{}';
      return 'data: ' + this.head + '"choices":[{"index":' + st.index + ',"delta":' + d + ',"logprobs":null,"finish_reason":' + finish + extra + '}]' + usage + '}\n\n';
    }
    return (
      'data: ' + this.head + '"choices":[{"index":' + st.index + ',"text":' + textJson(delta) + ',"logprobs":null,"finish_reason":' + finish + extra + '}]' + usage + '}\n\n'
    );
  }

  private finalChunks(req: SimRequest, st: ChunkState): string {
    if (this.parsed.kind === 'generate') return 'data: ' + generateResultJson(req, st.ridJson, this.parsed.batch ? st.index : null) + '\n\n';
    let out = '';
    if (st.sent < req.text.length || (!st.roleSent && this.parsed.kind === 'chat')) out += this.progressChunk(req, st);
    const finish = JSON.stringify(openAiFinishReason(req.finishReason));
    const matched = ',"matched_stop":' + JSON.stringify(matchedStop(req.finishReason));
    out += this.deltaChunk(st, '', finish, matched);
    return out;
  }
}
