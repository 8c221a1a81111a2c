/**
 * SGLang's request and response shapes for the simulated server: validation of /generate,
 * /v1/chat/completions and /v1/completions bodies into engine submissions, and the builders of
 * responses and SSE chunks (strings built by concatenation: they run once per token per stream).
 */
import { randomUUID } from 'node:crypto';
import { SwitchyardError } from '../errors.js';
import { OUTPUT_WORDS, tokenize } from '../util/tokenizer.js';
import type { FinishReason, SimRequest } from './engine.js';

/** SGLang's default max_new_tokens for /generate. */
export const DEFAULT_MAX_NEW_TOKENS = 128;

/**
 * Chat template at the token level: each message is [role header] + tokens(content) + [end of turn],
 * then an assistant header. Content is tokenized on its own, so a message boundary is a token
 * boundary: a follow-up turn that repeats an earlier answer verbatim hits the cache exactly.
 */
export const CHAT_TOKENS = {
  system: 128006,
  user: 128007,
  assistant: 128008,
  tool: 128010,
  other: 128011,
  endOfTurn: 128009,
} as const;

export type ApiKind = 'generate' | 'chat' | 'completion';

export interface ItemSpec {
  rid: string;
  promptIds: Uint32Array;
  maxNewTokens: number;
  minNewTokens: number;
  ignoreEos: boolean;
  stop: readonly string[] | null;
  stopTokenIds: readonly number[] | null;
}

export interface ParsedRequest {
  kind: ApiKind;
  items: ItemSpec[];
  stream: boolean;
  /** /generate with a list input: answered as a list. */
  batch: boolean;
  /** OpenAI stream_options.include_usage. */
  includeUsage: boolean;
  /** OpenAI response id (chatcmpl-... / cmpl-...). */
  responseId: string;
}

export interface Limits {
  /** min(context length, KV capacity): the longest sequence a request may reach. */
  maxSequenceLength: number;
}

function bad(message: string): SwitchyardError {
  return new SwitchyardError('invalid_request', message);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function isTokenId(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffffffff;
}

function tokenArray(v: unknown, what: string): Uint32Array {
  if (!Array.isArray(v)) throw bad(`${what} must be a list of token ids`);
  const ids = new Uint32Array(v.length);
  for (let i = 0; i < v.length; i++) {
    const id = v[i];
    if (!isTokenId(id)) throw bad(`${what}[${i}] must be a non-negative integer token id`);
    ids[i] = id;
  }
  return ids;
}

function optionalInt(v: unknown, name: string, min: number): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw bad(`${name} must be an integer >= ${min}, got ${JSON.stringify(v)}`);
  return v;
}

function optionalBool(v: unknown, name: string): boolean | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw bad(`${name} must be a boolean, got ${JSON.stringify(v)}`);
  return v;
}

function optionalNumber(v: unknown, name: string, check: (n: number) => boolean, range: string): void {
  if (v === undefined || v === null) return;
  if (typeof v !== 'number' || !Number.isFinite(v) || !check(v)) throw bad(`${name} must be a number ${range}, got ${JSON.stringify(v)}`);
}

function parseStop(v: unknown, name: string): string[] | null {
  if (v === undefined || v === null) return null;
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || !list.every((s) => typeof s === 'string')) throw bad(`${name} must be a string or a list of strings`);
  const stops = (list as string[]).filter((s) => s.length > 0);
  return stops.length > 0 ? stops : null;
}

function parseStopTokenIds(v: unknown, name: string): number[] | null {
  if (v === undefined || v === null) return null;
  if (!Array.isArray(v) || !v.every(isTokenId)) throw bad(`${name} must be a list of non-negative integer token ids`);
  return v.length > 0 ? (v as number[]) : null;
}

/** Sampling fields shared by the native and OpenAI APIs that the simulator validates (SGLang's verify()). */
function checkSampling(p: Record<string, unknown>, prefix: string): void {
  optionalNumber(p['temperature'], `${prefix}temperature`, (n) => n >= 0, '>= 0');
  optionalNumber(p['top_p'], `${prefix}top_p`, (n) => n > 0 && n <= 1, 'in (0, 1]');
  optionalNumber(p['min_p'], `${prefix}min_p`, (n) => n >= 0 && n <= 1, 'in [0, 1]');
  const topK = p['top_k'];
  if (topK !== undefined && topK !== null && (typeof topK !== 'number' || !Number.isInteger(topK) || (topK !== -1 && topK < 1))) {
    throw bad(`${prefix}top_k must be -1 or an integer >= 1, got ${JSON.stringify(topK)}`);
  }
  const n = optionalInt(p['n'], `${prefix}n`, 1);
  if (n !== undefined && n > 1) throw bad(`${prefix}n > 1 (parallel sampling) is not supported by the simulator`);
}

function checkPromptLength(ids: Uint32Array, limits: Limits, index: number, batch: boolean): void {
  const where = batch ? ` (item ${index})` : '';
  if (ids.length === 0) throw new SwitchyardError('missing_prompt', `the prompt is empty${where}`);
  if (ids.length >= limits.maxSequenceLength) {
    throw bad(`The input (${ids.length} tokens) is longer than the model's context length (${limits.maxSequenceLength} tokens)${where}.`);
  }
}

export function generateRid(): string {
  return randomUUID().replace(/-/g, '');
}

/** POST /generate (SGLang's GenerateReqInput). */
export function parseGenerate(body: Record<string, unknown>, limits: Limits): ParsedRequest {
  const text = body['text'];
  const inputIds = body['input_ids'];
  const hasText = text !== undefined && text !== null;
  const hasIds = inputIds !== undefined && inputIds !== null;
  if (hasText && hasIds) throw bad('either text or input_ids should be provided, not both');
  if (!hasText && !hasIds) {
    if (body['input_embeds'] !== undefined) throw bad('input_embeds is not supported by the simulator');
    throw new SwitchyardError('missing_prompt', 'either text or input_ids should be provided');
  }
  let prompts: Uint32Array[];
  let batch: boolean;
  if (hasText) {
    if (typeof text === 'string') {
      prompts = [tokenize(text)];
      batch = false;
    } else if (Array.isArray(text) && text.length > 0 && text.every((t) => typeof t === 'string')) {
      prompts = (text as string[]).map((t) => tokenize(t));
      batch = true;
    } else throw bad('text must be a string or a non-empty list of strings');
  } else if (Array.isArray(inputIds) && inputIds.length > 0 && Array.isArray(inputIds[0])) {
    prompts = inputIds.map((ids, i) => tokenArray(ids, `input_ids[${i}]`));
    batch = true;
  } else {
    prompts = [tokenArray(inputIds, 'input_ids')];
    batch = false;
  }
  prompts.forEach((ids, i) => checkPromptLength(ids, limits, i, batch));

  const sp = body['sampling_params'];
  let perItem: Record<string, unknown>[];
  if (sp === undefined || sp === null) perItem = prompts.map(() => ({}));
  else if (isRecord(sp)) perItem = prompts.map(() => sp);
  else if (Array.isArray(sp) && batch && sp.length === prompts.length && sp.every(isRecord)) perItem = sp as Record<string, unknown>[];
  else throw bad('sampling_params must be an object (or, for a batch, a list of objects of the same length)');

  const rid = body['rid'];
  let rids: string[];
  if (rid === undefined || rid === null) rids = prompts.map(() => generateRid());
  else if (!batch && typeof rid === 'string' && rid.length > 0) rids = [rid];
  else if (batch && Array.isArray(rid) && rid.length === prompts.length && rid.every((r) => typeof r === 'string' && r.length > 0)) rids = rid as string[];
  else throw new SwitchyardError('invalid_request_id', batch ? 'rid must be a list of non-empty strings, one per prompt' : 'rid must be a non-empty string');

  const stream = optionalBool(body['stream'], 'stream') ?? false;
  const items = prompts.map((promptIds, i): ItemSpec => {
    const p = perItem[i] as Record<string, unknown>;
    const prefix = 'sampling_params.';
    checkSampling(p, prefix);
    const maxNew = optionalInt(p['max_new_tokens'], `${prefix}max_new_tokens`, 0) ?? DEFAULT_MAX_NEW_TOKENS;
    return {
      rid: rids[i] as string,
      promptIds,
      maxNewTokens: maxNew,
      minNewTokens: optionalInt(p['min_new_tokens'], `${prefix}min_new_tokens`, 0) ?? 0,
      ignoreEos: optionalBool(p['ignore_eos'], `${prefix}ignore_eos`) ?? false,
      stop: parseStop(p['stop'], `${prefix}stop`),
      stopTokenIds: parseStopTokenIds(p['stop_token_ids'], `${prefix}stop_token_ids`),
    };
  });
  return { kind: 'generate', items, stream, batch, includeUsage: false, responseId: '' };
}

function messageText(content: unknown, index: number): string {
  if (content === undefined || content === null) return '';
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    let text = '';
    for (let j = 0; j < content.length; j++) {
      const part = content[j];
      if (!isRecord(part) || typeof part['type'] !== 'string') throw bad(`messages[${index}].content[${j}] must be an object with a type`);
      if (part['type'] === 'text') {
        if (typeof part['text'] !== 'string') throw bad(`messages[${index}].content[${j}].text must be a string`);
        text += part['text'];
      }
    }
    return text;
  }
  throw bad(`messages[${index}].content must be a string, a list of content parts or null`);
}

/** Token ids of a chat conversation under the simulator's template (see CHAT_TOKENS). */
export function chatPromptIds(messages: readonly { role: string; content: string }[]): Uint32Array {
  const parts: Uint32Array[] = [];
  let total = 1;
  for (const m of messages) {
    const ids = tokenize(m.content);
    parts.push(ids);
    total += ids.length + 2;
  }
  const out = new Uint32Array(total);
  let pos = 0;
  messages.forEach((m, i) => {
    const role = m.role in CHAT_TOKENS && m.role !== 'endOfTurn' ? CHAT_TOKENS[m.role as 'system' | 'user' | 'assistant' | 'tool'] : CHAT_TOKENS.other;
    out[pos++] = role;
    const ids = parts[i] as Uint32Array;
    out.set(ids, pos);
    pos += ids.length;
    out[pos++] = CHAT_TOKENS.endOfTurn;
  });
  out[pos] = CHAT_TOKENS.assistant;
  return out;
}

function openAiCommon(body: Record<string, unknown>): {
  stream: boolean;
  includeUsage: boolean;
  maxTokens: number | undefined;
  minTokens: number;
  ignoreEos: boolean;
  stop: string[] | null;
  stopTokenIds: number[] | null;
  rid: string | undefined;
} {
  if (body['model'] !== undefined && body['model'] !== null && typeof body['model'] !== 'string') throw bad('model must be a string');
  checkSampling(body, '');
  const stream = optionalBool(body['stream'], 'stream') ?? false;
  let includeUsage = false;
  const so = body['stream_options'];
  if (so !== undefined && so !== null) {
    if (!isRecord(so)) throw bad('stream_options must be an object');
    includeUsage = optionalBool(so['include_usage'], 'stream_options.include_usage') ?? false;
  }
  const maxCompletion = optionalInt(body['max_completion_tokens'], 'max_completion_tokens', 0);
  const maxTokens = maxCompletion ?? optionalInt(body['max_tokens'], 'max_tokens', 0);
  const rid = body['rid'];
  if (rid !== undefined && rid !== null && (typeof rid !== 'string' || rid.length === 0)) throw new SwitchyardError('invalid_request_id', 'rid must be a non-empty string');
  return {
    stream,
    includeUsage,
    maxTokens,
    minTokens: optionalInt(body['min_tokens'], 'min_tokens', 0) ?? 0,
    ignoreEos: optionalBool(body['ignore_eos'], 'ignore_eos') ?? false,
    stop: parseStop(body['stop'], 'stop'),
    stopTokenIds: parseStopTokenIds(body['stop_token_ids'], 'stop_token_ids'),
    rid: typeof rid === 'string' ? rid : undefined,
  };
}

/** POST /v1/chat/completions. */
export function parseChat(body: Record<string, unknown>, limits: Limits): ParsedRequest {
  const messages = body['messages'];
  if (messages === undefined || messages === null) throw new SwitchyardError('missing_prompt', 'messages is required');
  if (!Array.isArray(messages) || messages.length === 0) throw bad('messages must be a non-empty list');
  const parsed = messages.map((m, i) => {
    if (!isRecord(m)) throw bad(`messages[${i}] must be an object`);
    if (typeof m['role'] !== 'string') throw bad(`messages[${i}].role must be a string`);
    return { role: m['role'], content: messageText(m['content'], i) };
  });
  const c = openAiCommon(body);
  const promptIds = chatPromptIds(parsed);
  checkPromptLength(promptIds, limits, 0, false);
  const rid = c.rid ?? generateRid();
  return {
    kind: 'chat',
    items: [
      {
        rid,
        promptIds,
        maxNewTokens: c.maxTokens ?? limits.maxSequenceLength - promptIds.length,
        minNewTokens: c.minTokens,
        ignoreEos: c.ignoreEos,
        stop: c.stop,
        stopTokenIds: c.stopTokenIds,
      },
    ],
    stream: c.stream,
    batch: false,
    includeUsage: c.includeUsage,
    responseId: c.rid ?? `chatcmpl-${rid}`,
  };
}

/** POST /v1/completions. */
export function parseCompletion(body: Record<string, unknown>, limits: Limits): ParsedRequest {
  const prompt = body['prompt'];
  if (prompt === undefined || prompt === null) throw new SwitchyardError('missing_prompt', 'prompt is required');
  let prompts: Uint32Array[];
  if (typeof prompt === 'string') prompts = [tokenize(prompt)];
  else if (Array.isArray(prompt) && prompt.length > 0 && prompt.every((p) => typeof p === 'string')) prompts = (prompt as string[]).map((p) => tokenize(p));
  else if (Array.isArray(prompt) && prompt.length > 0 && prompt.every((p) => Array.isArray(p))) prompts = prompt.map((p, i) => tokenArray(p, `prompt[${i}]`));
  else if (Array.isArray(prompt) && prompt.length > 0) prompts = [tokenArray(prompt, 'prompt')];
  else throw bad('prompt must be a string, a list of strings, a list of token ids or a list of token id lists');
  const c = openAiCommon(body);
  prompts.forEach((ids, i) => checkPromptLength(ids, limits, i, prompts.length > 1));
  const base = c.rid ?? generateRid();
  const items = prompts.map(
    (promptIds, i): ItemSpec => ({
      rid: prompts.length === 1 ? base : `${base}-${i}`,
      promptIds,
      maxNewTokens: c.maxTokens ?? 16, // OpenAI's default max_tokens for completions
      minNewTokens: c.minTokens,
      ignoreEos: c.ignoreEos,
      stop: c.stop,
      stopTokenIds: c.stopTokenIds,
    }),
  );
  return { kind: 'completion', items, stream: c.stream, batch: prompts.length > 1, includeUsage: c.includeUsage, responseId: c.rid ?? `cmpl-${base}` };
}

// ------------------------------------------------------------------ responses

/** Generated text is made of OUTPUT_WORDS; when they need no JSON escaping, quoting is concatenation. */
const WORDS_JSON_SAFE = OUTPUT_WORDS.every((w) => /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/.test(w));

export function textJson(text: string): string {
  return WORDS_JSON_SAFE ? '"' + text + '"' : JSON.stringify(text);
}

export function finishReasonJson(fr: FinishReason | null): string {
  if (fr === null) return 'null';
  switch (fr.type) {
    case 'length':
      return '{"type":"length","length":' + fr.length + '}';
    case 'stop':
      return '{"type":"stop","matched":' + (fr.matched === null ? 'null' : typeof fr.matched === 'number' ? String(fr.matched) : JSON.stringify(fr.matched)) + '}';
    case 'abort':
      return '{"type":"abort","message":' + JSON.stringify(fr.message) + '}';
  }
}

/** Seconds rounded to the microsecond (the clock's useful resolution; avoids float noise in JSON). */
export function roundMicros(seconds: number): number {
  return Math.round(seconds * 1e6) / 1e6;
}

/** SGLang's meta_info: id, finish_reason, token counts, and latencies once known. */
export function metaInfoJson(req: SimRequest, ridJson: string): string {
  let s =
    '{"id":' +
    ridJson +
    ',"finish_reason":' +
    finishReasonJson(req.finishReason) +
    ',"prompt_tokens":' +
    req.promptTokens +
    ',"completion_tokens":' +
    req.completionTokens +
    ',"cached_tokens":' +
    req.cachedTokens;
  const q = req.queueTimeSec;
  if (q >= 0) s += ',"queue_time":' + roundMicros(q);
  const e2e = req.e2eLatencySec;
  if (e2e >= 0) s += ',"e2e_latency":' + roundMicros(e2e);
  return s + '}';
}

/** One /generate result object ({"text","output_ids","meta_info"}), optionally with a batch index. */
export function generateResultJson(req: SimRequest, ridJson: string, index: number | null): string {
  return (
    '{"text":' +
    textJson(req.text) +
    ',"output_ids":[' +
    req.idsCsv +
    '],"meta_info":' +
    metaInfoJson(req, ridJson) +
    (index === null ? '' : ',"index":' + index) +
    '}'
  );
}

export function openAiFinishReason(fr: FinishReason | null): string | null {
  if (fr === null) return null;
  return fr.type === 'length' ? 'length' : fr.type === 'stop' ? 'stop' : 'abort';
}

export function matchedStop(fr: FinishReason | null): number | string | null {
  return fr !== null && fr.type === 'stop' ? fr.matched : null;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: { cached_tokens: number };
}

export function usageOf(reqs: readonly SimRequest[]): Usage {
  let prompt = 0;
  let completion = 0;
  let cached = 0;
  for (const r of reqs) {
    prompt += r.promptTokens;
    completion += r.completionTokens;
    cached += r.cachedTokens;
  }
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion, prompt_tokens_details: { cached_tokens: cached } };
}

export function chatCompletionBody(id: string, created: number, model: string, req: SimRequest): unknown {
  return {
    id,
    object: 'chat.completion',
    created,
    model,
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: req.text, reasoning_content: null, tool_calls: null },
        logprobs: null,
        finish_reason: openAiFinishReason(req.finishReason),
        matched_stop: matchedStop(req.finishReason),
      },
    ],
    usage: usageOf([req]),
  };
}

export function completionBody(id: string, created: number, model: string, reqs: readonly SimRequest[]): unknown {
  return {
    id,
    object: 'text_completion',
    created,
    model,
    choices: reqs.map((r, i) => ({
      index: i,
      text: r.text,
      logprobs: null,
      finish_reason: openAiFinishReason(r.finishReason),
      matched_stop: matchedStop(r.finishReason),
    })),
    usage: usageOf(reqs),
  };
}
