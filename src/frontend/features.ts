/**
 * Extracts what routing needs from a parsed request body: the routing text (SGLang router semantics:
 * /generate text | prompt | input_ids joined; chat: ALL message contents concatenated; completions: prompt),
 * an input-token estimate, stream flag, output budget and the model. Validates only what routing needs;
 * everything else is the worker's business.
 */
import { threadId } from 'node:worker_threads';
import { SwitchyardError } from '../errors.js';
import { countTokens } from '../util/tokenizer.js';
import type { RouteKind } from '../policies/types.js';

export interface ExtractedFeatures {
  text: string;
  inputTokens: number;
  stream: boolean;
  maxNewTokens: number;
  model: string | undefined;
  /** The rid already in a /generate body, if any. */
  rid: string | undefined;
}

const DEFAULT_MAX_NEW_TOKENS = 128;

export function extractFeatures(route: RouteKind, body: Record<string, unknown>): ExtractedFeatures | SwitchyardError {
  let text: string;
  let inputTokens: number;
  switch (route) {
    case 'generate': {
      const t = body['text'] ?? body['prompt'];
      const ids = body['input_ids'];
      if (typeof t === 'string') text = t;
      else if (Array.isArray(t) && t.every((x) => typeof x === 'string')) text = (t as string[]).join('');
      else if (t !== undefined && t !== null) return new SwitchyardError('invalid_request', '`text` must be a string or a list of strings');
      else if (Array.isArray(ids)) {
        const flat = ids.flat();
        if (!flat.every((x) => typeof x === 'number')) return new SwitchyardError('invalid_request', '`input_ids` must be a list of integers (or a list of such lists)');
        text = flat.join(' ');
        inputTokens = flat.length;
        break;
      } else if (ids !== undefined && ids !== null) return new SwitchyardError('invalid_request', '`input_ids` must be a list of integers');
      else return new SwitchyardError('missing_prompt', '/generate needs `text` or `input_ids`');
      inputTokens = countTokens(text);
      break;
    }
    case 'chat': {
      const messages = body['messages'];
      if (!Array.isArray(messages) || messages.length === 0) {
        return new SwitchyardError('missing_prompt', '/v1/chat/completions needs a non-empty `messages` list');
      }
      text = '';
      for (const m of messages) {
        if (m === null || typeof m !== 'object') return new SwitchyardError('invalid_request', 'each message must be an object');
        const content = (m as Record<string, unknown>)['content'];
        if (typeof content === 'string') text += content;
        else if (Array.isArray(content)) {
          // multimodal parts: route on their text parts
          for (const part of content) {
            if (part !== null && typeof part === 'object' && typeof (part as Record<string, unknown>)['text'] === 'string') {
              text += (part as Record<string, unknown>)['text'] as string;
            }
          }
        }
      }
      inputTokens = countTokens(text);
      break;
    }
    case 'completions': {
      const p = body['prompt'];
      if (typeof p === 'string') text = p;
      else if (Array.isArray(p)) {
        if (p.every((x) => typeof x === 'string')) text = (p as string[]).join('');
        else if (p.every((x) => typeof x === 'number')) {
          text = (p as number[]).join(' ');
          inputTokens = p.length;
          break;
        } else return new SwitchyardError('invalid_request', '`prompt` must be a string, a list of strings or a list of token ids');
      } else return new SwitchyardError('missing_prompt', '/v1/completions needs a `prompt`');
      inputTokens = countTokens(text);
      break;
    }
    case 'other': {
      const candidate = body['input'] ?? body['text'] ?? body['prompt'] ?? body['query'];
      text = typeof candidate === 'string' ? candidate : Array.isArray(candidate) ? candidate.filter((x) => typeof x === 'string').join('') : '';
      inputTokens = countTokens(text);
      break;
    }
  }
  const stream = body['stream'] === true;
  let maxNewTokens = DEFAULT_MAX_NEW_TOKENS;
  if (route === 'generate') {
    const sp = body['sampling_params'];
    if (sp !== undefined && sp !== null) {
      if (typeof sp !== 'object' || Array.isArray(sp)) return new SwitchyardError('invalid_request', '`sampling_params` must be an object');
      const m = (sp as Record<string, unknown>)['max_new_tokens'];
      if (typeof m === 'number' && m >= 0) maxNewTokens = m;
    }
  } else {
    const m = body['max_completion_tokens'] ?? body['max_tokens'];
    if (typeof m === 'number' && m >= 0) maxNewTokens = m;
  }
  const model = typeof body['model'] === 'string' ? (body['model'] as string) : undefined;
  const ridRaw = body['rid'];
  const rid = typeof ridRaw === 'string' && ridRaw.length > 0 ? ridRaw : undefined;
  return { text, inputTokens, stream, maxNewTokens, model, rid };
}

const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:\-]{1,128}$/;

/** Request ids travel into headers, logs and trace keys: keep them to a safe alphabet and length. */
export function isValidRequestId(id: string): boolean {
  return REQUEST_ID_PATTERN.test(id);
}

let counter = 0;
// Front-end threads (--frontend-threads) generate ids too: their thread id keeps the ids apart.
const PREFIX = `${process.pid.toString(36)}${threadId === 0 ? '' : `.${threadId.toString(36)}`}-${Date.now().toString(36)}`;

/** A unique request id (cheap: pid/time prefix and a counter). */
export function generateRequestId(): string {
  counter = (counter + 1) >>> 0;
  return `sy-${PREFIX}-${counter.toString(36)}`;
}

/**
 * /generate: the worker must see the same request id as the client and the traces. When the body has no
 * rid, splice `"rid":"<id>",` after the opening brace instead of re-serialising the whole body. Batch
 * requests (text/input_ids lists) keep their own rids.
 */
export function withRid(raw: Buffer, parsed: Record<string, unknown>, f: ExtractedFeatures, requestId: string): Buffer {
  if (f.rid === requestId) return raw;
  const text = parsed['text'];
  const ids = parsed['input_ids'];
  const isBatch = Array.isArray(text) || (Array.isArray(ids) && ids.length > 0 && Array.isArray(ids[0]));
  if (isBatch) return raw;
  if (!('rid' in parsed)) {
    const open = raw.indexOf(0x7b); // '{'
    if (open !== -1) {
      const close = raw.lastIndexOf(0x7d);
      let empty = true;
      for (let i = open + 1; i < close; i++) {
        const c = raw[i]!;
        if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) {
          empty = false;
          break;
        }
      }
      const insert = Buffer.from(`"rid":${JSON.stringify(requestId)}${empty ? '' : ','}`);
      return Buffer.concat([raw.subarray(0, open + 1), insert, raw.subarray(open + 1)]);
    }
  }
  return Buffer.from(JSON.stringify({ ...parsed, rid: requestId }));
}
