/**
 * Scans a relayed Server-Sent-Events stream just enough to time it, without parsing every chunk:
 * - finds event boundaries (a blank line) across network chunks;
 * - stamps the first CONTENT event (TTFT: SGLang/vLLM's "first non-empty content chunk"; an OpenAI role-only
 *   delta or an empty text does not count) and every gap between consecutive content events (ITL);
 * - keeps the payload of the last data event before `[DONE]`, parsed once at the end for meta_info / usage.
 * JSON is parsed only for events seen before the first content event (usually one) and for the last one.
 */

const LF = 0x0a;
const CR = 0x0d;

export interface StreamSummary {
  /** Data events seen (excluding [DONE]). */
  events: number;
  contentEvents: number;
  /** ms timestamps (clock of the caller) of the first and last content events; 0 when none. */
  firstContentAt: number;
  lastContentAt: number;
  sawDone: boolean;
  /** Error object of an in-stream `data: {"error":...}` event, if any. */
  error: unknown;
}

export class SseScanner implements StreamSummary {
  events = 0;
  contentEvents = 0;
  firstContentAt = 0;
  lastContentAt = 0;
  sawDone = false;
  error: unknown = undefined;
  /** Gaps (ms) between consecutive content events, in arrival order. */
  readonly gaps: number[] = [];

  // The current (incomplete) event's bytes, kept only while it straddles chunks.
  private carry: Buffer | undefined;
  // Last complete data payload (without the "data: " prefix), by reference into the chunk it arrived in.
  private lastPayload: Buffer | undefined;

  /** Feed one network chunk received at time `now` (ms). */
  push(chunk: Buffer, now: number): void {
    let buf = chunk;
    if (this.carry !== undefined) {
      buf = Buffer.concat([this.carry, chunk]);
      this.carry = undefined;
    }
    // Scanning always starts at an event boundary: the carry begins where the unfinished event began.
    let lastLineWasEmpty = true;
    let eventStart = 0;
    let lineStart = 0;
    const len = buf.length;
    let i = buf.indexOf(LF, 0);
    while (i !== -1) {
      // A line is [lineStart, i) minus an optional CR.
      const lineEnd = i > lineStart && buf[i - 1] === CR ? i - 1 : i;
      if (lineEnd === lineStart) {
        if (!lastLineWasEmpty) this.onEvent(buf, eventStart, lineStart, now);
        lastLineWasEmpty = true;
        eventStart = i + 1;
      } else {
        lastLineWasEmpty = false;
      }
      lineStart = i + 1;
      i = buf.indexOf(LF, lineStart);
    }
    if (eventStart < len) this.carry = buf.subarray(eventStart);
  }

  /** Handles one complete event occupying buf[start, end) (its lines, each ending in LF). */
  private onEvent(buf: Buffer, start: number, end: number, now: number): void {
    // Collect the data of the event: SSE allows several data lines; SGLang and OpenAI send one.
    let p = start;
    let payloadStart = -1;
    let payloadEnd = -1;
    while (p < end) {
      let nl = buf.indexOf(LF, p);
      if (nl === -1 || nl > end) nl = end;
      if (nl - p >= 5 && buf[p] === 0x64 && buf[p + 1] === 0x61 && buf[p + 2] === 0x74 && buf[p + 3] === 0x61 && buf[p + 4] === 0x3a) {
        let s = p + 5;
        if (buf[s] === 0x20) s++;
        let e = nl;
        if (e > s && buf[e - 1] === CR) e--;
        if (payloadStart === -1) {
          payloadStart = s;
          payloadEnd = e;
        } else {
          payloadEnd = e; // multi-line data: take the span (rare; joined lines stay valid for our reads)
        }
      }
      p = nl + 1;
    }
    if (payloadStart === -1) return; // comment or keep-alive event
    const len = payloadEnd - payloadStart;
    if (len === 6 && buf.toString('latin1', payloadStart, payloadEnd) === '[DONE]') {
      this.sawDone = true;
      return;
    }
    this.events++;
    const payload = buf.subarray(payloadStart, payloadEnd);
    this.lastPayload = payload;
    if (this.firstContentAt === 0) {
      if (!this.isContent(payload)) return;
      this.firstContentAt = now;
      this.lastContentAt = now;
      this.contentEvents = 1;
      return;
    }
    // After the first token every data event is content until the final usage/meta event; a usage-only
    // OpenAI chunk (choices: []) is recognised cheaply by its prefix-free marker.
    if (payload.includes(USAGE_ONLY_MARKER) || payload.includes(USAGE_ONLY_MARKER_SPACED)) return;
    this.contentEvents++;
    this.gaps.push(now - this.lastContentAt);
    this.lastContentAt = now;
  }

  /** Parses one early event to tell whether it carries generated content. */
  private isContent(payload: Buffer): boolean {
    let obj: unknown;
    try {
      obj = JSON.parse(payload.toString('utf8'));
    } catch {
      return false;
    }
    if (obj === null || typeof obj !== 'object') return false;
    const o = obj as Record<string, unknown>;
    if (o['error'] !== undefined) {
      this.error = o['error'];
      return false;
    }
    if (typeof o['text'] === 'string') return (o['text'] as string).length > 0;
    const choices = o['choices'];
    if (Array.isArray(choices)) {
      for (const c of choices as Array<Record<string, unknown>>) {
        if (typeof c['text'] === 'string' && (c['text'] as string).length > 0) return true;
        const delta = c['delta'] as Record<string, unknown> | undefined;
        if (delta !== undefined && delta !== null) {
          if (typeof delta['content'] === 'string' && (delta['content'] as string).length > 0) return true;
          if (typeof delta['reasoning_content'] === 'string' && (delta['reasoning_content'] as string).length > 0) return true;
          if (Array.isArray(delta['tool_calls']) && (delta['tool_calls'] as unknown[]).length > 0) return true;
        }
      }
      return false;
    }
    // Unknown shape: any data counts as content.
    return true;
  }

  /** Parse the last data event (SGLang chunk with meta_info, or OpenAI chunk with usage); undefined if none. */
  lastEvent(): Record<string, unknown> | undefined {
    if (this.lastPayload === undefined) return undefined;
    try {
      const obj: unknown = JSON.parse(this.lastPayload.toString('utf8'));
      return obj !== null && typeof obj === 'object' && !Array.isArray(obj) ? (obj as Record<string, unknown>) : undefined;
    } catch {
      return undefined;
    }
  }
}

const USAGE_ONLY_MARKER = Buffer.from('"choices":[]');
const USAGE_ONLY_MARKER_SPACED = Buffer.from('"choices": []');

/** Token counts read from a final SGLang meta_info or OpenAI usage object. */
export interface TokenCounts {
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
  /** Server-reported queue time (s), SGLang meta_info only. */
  queueTime: number | undefined;
  finishReason: string | undefined;
}

/** Reads token counts from a response object of any of the shapes a worker sends. */
export function readTokenCounts(obj: unknown): TokenCounts | undefined {
  if (obj === null || typeof obj !== 'object') return undefined;
  const target = Array.isArray(obj) ? (obj[obj.length - 1] as unknown) : obj;
  if (target === null || typeof target !== 'object') return undefined;
  const o = target as Record<string, unknown>;
  const meta = o['meta_info'] as Record<string, unknown> | undefined;
  if (meta !== undefined && meta !== null && typeof meta === 'object') {
    const fr = meta['finish_reason'] as Record<string, unknown> | null | undefined;
    return {
      promptTokens: num(meta['prompt_tokens']),
      completionTokens: num(meta['completion_tokens']),
      cachedTokens: num(meta['cached_tokens']),
      queueTime: typeof meta['queue_time'] === 'number' ? (meta['queue_time'] as number) : undefined,
      finishReason: fr !== null && typeof fr === 'object' && typeof fr['type'] === 'string' ? (fr['type'] as string) : undefined,
    };
  }
  const usage = o['usage'] as Record<string, unknown> | undefined | null;
  if (usage !== undefined && usage !== null && typeof usage === 'object') {
    const details = usage['prompt_tokens_details'] as Record<string, unknown> | undefined | null;
    const choices = o['choices'] as Array<Record<string, unknown>> | undefined;
    const fr = Array.isArray(choices) && choices.length > 0 ? choices[0]?.['finish_reason'] : undefined;
    return {
      promptTokens: num(usage['prompt_tokens']),
      completionTokens: num(usage['completion_tokens']),
      cachedTokens: details !== undefined && details !== null ? num(details['cached_tokens']) : 0,
      queueTime: undefined,
      finishReason: typeof fr === 'string' ? fr : undefined,
    };
  }
  return undefined;
}

function num(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}
