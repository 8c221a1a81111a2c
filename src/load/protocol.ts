/**
 * The wire side of a load request: the payload for each API, and reading what comes back (streamed SSE
 * events or one JSON body) into content timings and token counts.
 *
 * Content (for TTFT/ITL, the SGLang/vLLM meaning): an event that adds generated text.
 * - /generate streams CUMULATIVE text: an event is content when its text is longer than the last one.
 * - chat completions: choices[0].delta.content (or reasoning_content) non-empty.
 * - completions: choices[0].text non-empty.
 * A role-only delta, an empty finish chunk or a usage-only chunk is not content.
 */
import type { RequestSpec } from './datasets.js';
import type { ApiName, OpenAiRoute } from './options.js';

export interface PayloadSettings {
  api: ApiName;
  openaiRoute: OpenAiRoute;
  model: string;
  stream: boolean;
  ignoreEos: boolean;
  extra: Record<string, unknown> | undefined;
}

export function requestPath(api: ApiName, route: OpenAiRoute): string {
  if (api === 'sglang') return '/generate';
  return route === 'chat' ? '/v1/chat/completions' : '/v1/completions';
}

/** Text of a spec for APIs that take text (chat messages joined by newlines). */
function promptText(spec: RequestSpec): string {
  if (spec.prompt !== undefined) return spec.prompt;
  return (spec.messages ?? []).map((m) => m.content).join('\n');
}

/** The JSON body of one request (bench_serving's payloads; --extra-request-body merged last). */
export function buildPayload(spec: RequestSpec, s: PayloadSettings): Record<string, unknown> {
  let body: Record<string, unknown>;
  if (s.api === 'sglang') {
    body = {
      text: promptText(spec),
      sampling_params: { temperature: 0, max_new_tokens: spec.outputLen, ignore_eos: s.ignoreEos },
      stream: s.stream,
    };
  } else {
    body = { model: s.model, temperature: 0, max_tokens: spec.outputLen, ignore_eos: s.ignoreEos, stream: s.stream };
    if (s.openaiRoute === 'chat') body['messages'] = spec.messages ?? [{ role: 'user', content: promptText(spec) }];
    else body['prompt'] = promptText(spec);
    if (s.stream) body['stream_options'] = { include_usage: true };
  }
  if (s.extra !== undefined) {
    for (const [k, v] of Object.entries(s.extra)) {
      const cur = body[k];
      if (isRecord(cur) && isRecord(v)) body[k] = { ...cur, ...v };
      else body[k] = v;
    }
  }
  return body;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** What the final event / body said about tokens. -1 = not reported. */
export interface ReportedCounts {
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
  finishReason: string;
}

export function emptyCounts(): ReportedCounts {
  return { promptTokens: -1, completionTokens: -1, cachedTokens: -1, finishReason: '' };
}

/** Reads meta_info (SGLang) or usage (OpenAI) of one response object into `into`. */
export function readCounts(obj: Record<string, unknown>, into: ReportedCounts): void {
  const meta = obj['meta_info'];
  if (isRecord(meta)) {
    if (typeof meta['prompt_tokens'] === 'number') into.promptTokens = meta['prompt_tokens'];
    if (typeof meta['completion_tokens'] === 'number') into.completionTokens = meta['completion_tokens'];
    if (typeof meta['cached_tokens'] === 'number') into.cachedTokens = meta['cached_tokens'];
    const fr = meta['finish_reason'];
    if (isRecord(fr) && typeof fr['type'] === 'string') into.finishReason = fr['type'];
  }
  const usage = obj['usage'];
  if (isRecord(usage)) {
    if (typeof usage['prompt_tokens'] === 'number') into.promptTokens = usage['prompt_tokens'];
    if (typeof usage['completion_tokens'] === 'number') into.completionTokens = usage['completion_tokens'];
    const details = usage['prompt_tokens_details'];
    if (isRecord(details) && typeof details['cached_tokens'] === 'number') into.cachedTokens = details['cached_tokens'];
    else if (typeof usage['cached_tokens'] === 'number') into.cachedTokens = usage['cached_tokens'];
  }
  const choices = obj['choices'];
  if (Array.isArray(choices) && choices.length > 0 && isRecord(choices[0])) {
    const fr = choices[0]['finish_reason'];
    if (typeof fr === 'string') into.finishReason = fr;
  }
}

/** Generated text carried by one event or body (delta for OpenAI streams, cumulative for /generate). */
export function eventText(obj: Record<string, unknown>): string | undefined {
  if (typeof obj['text'] === 'string') return obj['text'];
  const choices = obj['choices'];
  if (!Array.isArray(choices) || choices.length === 0) return undefined;
  const c = choices[0];
  if (!isRecord(c)) return undefined;
  if (typeof c['text'] === 'string') return c['text'];
  const d = c['delta'] ?? c['message'];
  if (isRecord(d)) {
    const content = typeof d['content'] === 'string' ? d['content'] : '';
    const reasoning = typeof d['reasoning_content'] === 'string' ? d['reasoning_content'] : '';
    return content + reasoning;
  }
  return undefined;
}

/** Error message of an `{"error": ...}` object, if it is one. */
export function errorMessage(obj: unknown): string | undefined {
  if (!isRecord(obj)) return undefined;
  const e = obj['error'];
  if (e === undefined || e === null) return undefined;
  if (typeof e === 'string') return e;
  if (isRecord(e)) {
    const code = typeof e['code'] === 'string' ? `${e['code']}: ` : '';
    return code + (typeof e['message'] === 'string' ? e['message'] : JSON.stringify(e));
  }
  return JSON.stringify(e);
}

const LF = 0x0a;
const CR = 0x0d;

/**
 * Incremental SSE reader for one response. Events split across network chunks are carried over; all
 * events completed by one chunk share that chunk's arrival time (what a client can observe).
 */
export class StreamReader {
  /** Time of the first content event (ms), -1 until then. */
  firstContentAt = -1;
  lastContentAt = -1;
  contentEvents = 0;
  /** Gaps between consecutive content events (ms). */
  readonly gaps: number[] = [];
  /** Characters of generated text seen (the fallback output-token estimate: 4 characters per token). */
  generatedChars = 0;
  sawDone = false;
  error: string | undefined;
  readonly counts: ReportedCounts = emptyCounts();
  private carry: Buffer | undefined;
  private cumulativeLen = 0;

  constructor(private readonly cumulative: boolean) {}

  push(chunk: Buffer, now: number): void {
    let buf = chunk;
    if (this.carry !== undefined) {
      buf = Buffer.concat([this.carry, chunk]);
      this.carry = undefined;
    }
    let eventStart = 0;
    let lineStart = 0;
    let i = buf.indexOf(LF, 0);
    while (i !== -1) {
      const lineEnd = i > lineStart && buf[i - 1] === CR ? i - 1 : i;
      if (lineEnd === lineStart) {
        if (lineStart > eventStart) this.onEvent(buf, eventStart, lineStart, now);
        eventStart = i + 1;
      }
      lineStart = i + 1;
      i = buf.indexOf(LF, lineStart);
    }
    if (eventStart < buf.length) this.carry = Buffer.from(buf.subarray(eventStart));
  }

  /** Flush an unterminated last event (a server that closes without the blank line). */
  end(now: number): void {
    if (this.carry !== undefined && this.carry.length > 0) {
      const buf = Buffer.concat([this.carry, Buffer.from('\n')]);
      this.carry = undefined;
      this.onEvent(buf, 0, buf.length, now);
    }
  }

  private onEvent(buf: Buffer, start: number, end: number, now: number): void {
    let p = start;
    let data = '';
    let sawData = false;
    while (p < end) {
      let nl = buf.indexOf(LF, p);
      if (nl === -1 || nl > end) nl = end;
      let e = nl;
      if (e > p && buf[e - 1] === CR) e--;
      if (e - p >= 5 && buf[p] === 0x64 && buf[p + 1] === 0x61 && buf[p + 2] === 0x74 && buf[p + 3] === 0x61 && buf[p + 4] === 0x3a) {
        let s = p + 5;
        if (buf[s] === 0x20) s++;
        data += (sawData ? '\n' : '') + buf.toString('utf8', s, e);
        sawData = true;
      }
      p = nl + 1;
    }
    if (!sawData) return;
    if (data === '[DONE]') {
      this.sawDone = true;
      return;
    }
    let obj: unknown;
    try {
      obj = JSON.parse(data);
    } catch {
      return; // not JSON: ignored, as bench_serving does
    }
    if (!isRecord(obj)) return;
    const err = errorMessage(obj);
    if (err !== undefined) {
      this.error = err;
      return;
    }
    readCounts(obj, this.counts);
    const text = eventText(obj);
    if (text === undefined) return;
    let added: number;
    if (this.cumulative) {
      added = text.length - this.cumulativeLen;
      if (added > 0) this.cumulativeLen = text.length;
    } else added = text.length;
    if (added <= 0) return;
    this.generatedChars += added;
    if (this.firstContentAt < 0) this.firstContentAt = now;
    else this.gaps.push(now - this.lastContentAt);
    this.lastContentAt = now;
    this.contentEvents++;
  }
}
