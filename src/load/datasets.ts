/**
 * Workload datasets. Each dataset is a deterministic, lazy sequence of request specs: the same --seed and
 * flags give the same prompts in the same order, and prompts are built only when a request is about to be
 * sent, so a million-request run never holds a million prompts.
 *
 * Lengths are in the shared fake tokenizer's tokens (src/util/tokenizer.ts: 4 characters per token).
 * Generated text is made of 4-character words (a space and three letters), so a text of L tokens is
 * exactly 4L characters and re-tokenizes to exactly L tokens.
 *
 * - random: input length uniform over the integers [max(floor(L*r), 1), L] (SGLang's bench_serving
 *   convention, --random-range-ratio r; NOT vLLM's [L(1-r), L(1+r)]); output length likewise from
 *   --random-output-len. Every prompt is fresh random text (no shared prefixes).
 * - sharegpt: a local JSON file (no downloads): a list of {"conversations": [{"from": "human", "value": ...},
 *   {"from": "gpt", "value": ...}, ...]} ("conversation", "role"/"content" spellings accepted). As in
 *   bench_serving: conversations with >= 2 turns, shuffled with the seed; prompt = first turn, output
 *   length = tokens of the second turn (or --sharegpt-output-len); entries with prompt or output < 2
 *   tokens are pruned, and without a fixed output length those with prompt > 1024 or prompt + output >
 *   2048 tokens (or > --sharegpt-context-len when given). Fewer entries than --num-prompts: cycled.
 * - generated-shared-prefix: G groups x P prompts; each group shares one random system prompt of S
 *   tokens, each prompt adds its own question of Q tokens (prompt = system + "\n\n" + question); output
 *   O tokens. Prompts are shuffled with the seed (as bench_serving does). Defaults 64 x 16, 2048, 128, 256.
 * - custom: a JSONL file, one {"prompt" | "text" | "messages", "output_len"?} per line, in file order
 *   (cycled when --num-prompts is larger).
 */
import { readFileSync } from 'node:fs';
import { OptionsError } from '../config/options.js';
import { CHARS_PER_TOKEN, countTokens } from '../util/tokenizer.js';
import { Rng } from '../util/rng.js';

export const DATASET_NAMES = ['random', 'sharegpt', 'generated-shared-prefix', 'custom'] as const;
export type DatasetName = (typeof DATASET_NAMES)[number];

export interface ChatMessage {
  role: string;
  content: string;
}

/** One request of the workload, before it is turned into an API payload. */
export interface RequestSpec {
  /** Text prompt (every dataset except custom rows with messages). */
  prompt: string | undefined;
  /** Chat messages (custom rows with "messages"). */
  messages: ChatMessage[] | undefined;
  /** Prompt length in fake-tokenizer tokens (the server's count replaces it when reported). */
  promptTokens: number;
  /** max_new_tokens / max_tokens to ask for. */
  outputLen: number;
  /** Shared-prefix group (generated-shared-prefix), else -1. */
  group: number;
}

export interface DatasetOptions {
  dataset: DatasetName;
  datasetPath: string | undefined;
  numPrompts: number | undefined;
  seed: number;
  randomInputLen: number;
  randomOutputLen: number;
  randomRangeRatio: number;
  sharegptOutputLen: number | undefined;
  sharegptContextLen: number | undefined;
  customOutputLen: number;
  gspNumGroups: number;
  gspPromptsPerGroup: number;
  gspSystemPromptLen: number;
  gspQuestionLen: number;
  gspOutputLen: number;
}

/** A dataset: how many requests it yields and a fresh deterministic iterator over them. */
export interface Dataset {
  readonly name: DatasetName;
  /** Requests in the run (the resolved --num-prompts). */
  readonly size: number;
  /** A note for the summary (e.g. "sharegpt: 40 usable entries cycled for 100 prompts"). */
  readonly note: string | undefined;
  /** A new iterator from the first request (each call starts over with the same seed). */
  iterate(): DatasetIterator;
}

export interface DatasetIterator {
  /** The next request spec; call at most `size` times. */
  next(): RequestSpec;
}

export const DEFAULT_NUM_PROMPTS = 1000;

// ------------------------------------------------------------------ text generation

let textScratch = Buffer.allocUnsafe(4096);

/** A random text of exactly `tokens` fake-tokenizer tokens: words of one space and three letters. */
export function randomText(rng: Rng, tokens: number): string {
  // Written as bytes into one scratch buffer and decoded once: the load generator builds bodies while it
  // runs, and a string per word (the old way) was a tenth of everything it allocated (GC pauses are its
  // largest own cause of send lag). Same letters, same order of draws.
  const len = tokens * 4;
  if (textScratch.length < len) textScratch = Buffer.allocUnsafe(Math.max(len, textScratch.length * 2));
  const b = textScratch;
  for (let i = 0, o = 0; i < tokens; i++, o += 4) {
    b[o] = 32;
    b[o + 1] = 97 + ((rng.next() * 26) | 0);
    b[o + 2] = 97 + ((rng.next() * 26) | 0);
    b[o + 3] = 97 + ((rng.next() * 26) | 0);
  }
  return b.toString('latin1', 0, len);
}

/** SGLang's random length: uniform integer in [max(floor(len * ratio), 1), len]. */
export function randomLength(rng: Rng, len: number, ratio: number): number {
  const lo = Math.max(Math.floor(len * ratio), 1);
  const hi = Math.max(len, lo);
  return rng.int(lo, hi);
}

function shuffleInPlace<T>(items: T[], rng: Rng): void {
  for (let i = items.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    const tmp = items[i] as T;
    items[i] = items[j] as T;
    items[j] = tmp;
  }
}

/** Independent, reproducible streams derived from one --seed (prompts vs arrivals vs lengths). */
export function subSeed(seed: number, stream: number): number {
  let h = (seed ^ Math.imul(stream + 1, 0x9e3779b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

// ------------------------------------------------------------------ datasets

export function createDataset(o: DatasetOptions): Dataset {
  switch (o.dataset) {
    case 'random':
      return randomDataset(o);
    case 'sharegpt':
      return sharegptDataset(o);
    case 'generated-shared-prefix':
      return sharedPrefixDataset(o);
    case 'custom':
      return customDataset(o);
  }
}

function randomDataset(o: DatasetOptions): Dataset {
  const size = o.numPrompts ?? DEFAULT_NUM_PROMPTS;
  return {
    name: 'random',
    size,
    note: `random: input uniform in [${Math.max(Math.floor(o.randomInputLen * o.randomRangeRatio), 1)}, ${o.randomInputLen}] tokens, output uniform in [${Math.max(Math.floor(o.randomOutputLen * o.randomRangeRatio), 1)}, ${o.randomOutputLen}] (SGLang's [L*r, L] convention)`,
    iterate(): DatasetIterator {
      const rng = new Rng(subSeed(o.seed, 1));
      return {
        next(): RequestSpec {
          const input = randomLength(rng, o.randomInputLen, o.randomRangeRatio);
          const output = randomLength(rng, o.randomOutputLen, o.randomRangeRatio);
          return { prompt: randomText(rng, input), messages: undefined, promptTokens: input, outputLen: output, group: -1 };
        },
      };
    },
  };
}

interface FixedEntry {
  prompt: string | undefined;
  messages: ChatMessage[] | undefined;
  promptTokens: number;
  outputLen: number;
}

function cycled(name: DatasetName, entries: FixedEntry[], size: number, note: string | undefined): Dataset {
  return {
    name,
    size,
    note,
    iterate(): DatasetIterator {
      let i = 0;
      return {
        next(): RequestSpec {
          const e = entries[i++ % entries.length] as FixedEntry;
          return { prompt: e.prompt, messages: e.messages, promptTokens: e.promptTokens, outputLen: e.outputLen, group: -1 };
        },
      };
    },
  };
}

function readDatasetFile(path: string | undefined, dataset: string): string {
  if (path === undefined || path === '') throw new OptionsError(`--dataset ${dataset} needs --dataset-path (a local file; nothing is downloaded)`);
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new OptionsError(`cannot read --dataset-path ${path}: ${(err as Error).message}`);
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function turnText(turn: unknown): string | undefined {
  if (!isRecord(turn)) return undefined;
  const v = turn['value'] ?? turn['content'] ?? turn['text'];
  return typeof v === 'string' ? v : undefined;
}

function sharegptDataset(o: DatasetOptions): Dataset {
  const raw = readDatasetFile(o.datasetPath, 'sharegpt');
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (err) {
    throw new OptionsError(`--dataset-path ${o.datasetPath}: not valid JSON (${(err as Error).message}); expected a list of {"conversations": [...]}`);
  }
  if (!Array.isArray(parsed)) throw new OptionsError(`--dataset-path ${o.datasetPath}: expected a JSON list of {"conversations": [{"from","value"}, ...]}`);
  const candidates: [string, string][] = [];
  for (const item of parsed) {
    if (!isRecord(item)) continue;
    const conv = item['conversations'] ?? item['conversation'];
    if (!Array.isArray(conv) || conv.length < 2) continue;
    const prompt = turnText(conv[0]);
    const completion = turnText(conv[1]);
    if (prompt === undefined || completion === undefined) continue;
    candidates.push([prompt, completion]);
  }
  shuffleInPlace(candidates, new Rng(subSeed(o.seed, 2)));
  const want = o.numPrompts ?? DEFAULT_NUM_PROMPTS;
  const entries: FixedEntry[] = [];
  for (const [prompt, completion] of candidates) {
    if (entries.length >= want) break;
    const promptTokens = countTokens(prompt);
    const outputLen = o.sharegptOutputLen ?? countTokens(completion);
    if (promptTokens < 2 || outputLen < 2) continue;
    if (o.sharegptContextLen !== undefined) {
      if (promptTokens + outputLen > o.sharegptContextLen) continue;
    } else if (o.sharegptOutputLen === undefined && (promptTokens > 1024 || promptTokens + outputLen > 2048)) continue;
    entries.push({ prompt, messages: undefined, promptTokens, outputLen });
  }
  if (entries.length === 0) {
    throw new OptionsError(`--dataset-path ${o.datasetPath}: no usable conversation (need >= 2 turns with text, prompt and output >= 2 tokens)`);
  }
  const note = entries.length < want ? `sharegpt: ${entries.length} usable conversations cycled for ${want} prompts` : `sharegpt: ${want} of ${candidates.length} conversations`;
  return cycled('sharegpt', entries, want, note);
}

function customDataset(o: DatasetOptions): Dataset {
  const raw = readDatasetFile(o.datasetPath, 'custom');
  const entries: FixedEntry[] = [];
  const lines = raw.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] as string).trim();
    if (line === '') continue;
    const where = `--dataset-path ${o.datasetPath} line ${i + 1}`;
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch (err) {
      throw new OptionsError(`${where}: not valid JSON (${(err as Error).message})`);
    }
    if (!isRecord(row)) throw new OptionsError(`${where}: expected an object {"prompt" | "text" | "messages", "output_len"?}`);
    let outputLen = o.customOutputLen;
    const ol = row['output_len'];
    if (ol !== undefined && ol !== null) {
      if (typeof ol !== 'number' || !Number.isInteger(ol) || ol < 1) throw new OptionsError(`${where}: output_len must be an integer >= 1`);
      outputLen = ol;
    }
    const text = row['prompt'] ?? row['text'];
    if (typeof text === 'string') {
      entries.push({ prompt: text, messages: undefined, promptTokens: countTokens(text), outputLen });
      continue;
    }
    const messages = row['messages'];
    if (Array.isArray(messages) && messages.length > 0) {
      const parsed: ChatMessage[] = [];
      let tokens = 1;
      for (let j = 0; j < messages.length; j++) {
        const m = messages[j];
        if (!isRecord(m) || typeof m['role'] !== 'string' || typeof m['content'] !== 'string') {
          throw new OptionsError(`${where}: messages[${j}] must be {"role": string, "content": string}`);
        }
        parsed.push({ role: m['role'], content: m['content'] });
        tokens += countTokens(m['content']) + 2;
      }
      entries.push({ prompt: undefined, messages: parsed, promptTokens: tokens, outputLen });
      continue;
    }
    throw new OptionsError(`${where}: needs "prompt" or "text" (a string) or "messages" (a non-empty list)`);
  }
  if (entries.length === 0) throw new OptionsError(`--dataset-path ${o.datasetPath}: no rows (JSONL, one object per line)`);
  const want = o.numPrompts ?? entries.length;
  const note = want > entries.length ? `custom: ${entries.length} rows cycled for ${want} prompts` : `custom: ${want} of ${entries.length} rows, in file order`;
  return cycled('custom', entries, want, note);
}

function sharedPrefixDataset(o: DatasetOptions): Dataset {
  const total = o.gspNumGroups * o.gspPromptsPerGroup;
  const size = o.numPrompts ?? total;
  // System prompts: one per group, made once (64 x 2048 tokens = 512 KiB of text by default).
  const sysRng = new Rng(subSeed(o.seed, 3));
  const systems: string[] = [];
  for (let g = 0; g < o.gspNumGroups; g++) systems.push(randomText(sysRng, o.gspSystemPromptLen));
  // The (group, question) order is shuffled as bench_serving does; the order is a compact typed array.
  const order = new Uint32Array(total);
  for (let i = 0; i < total; i++) order[i] = i;
  const orderRng = new Rng(subSeed(o.seed, 4));
  for (let i = total - 1; i > 0; i--) {
    const j = orderRng.int(0, i);
    const tmp = order[i] as number;
    order[i] = order[j] as number;
    order[j] = tmp;
  }
  const sep = '\n\n';
  const promptTokens = countTokens(' '.repeat(o.gspSystemPromptLen * CHARS_PER_TOKEN + sep.length + o.gspQuestionLen * CHARS_PER_TOKEN));
  return {
    name: 'generated-shared-prefix',
    size,
    note: `generated-shared-prefix: ${o.gspNumGroups} groups x ${o.gspPromptsPerGroup} prompts, system ${o.gspSystemPromptLen} + question ${o.gspQuestionLen} tokens, output ${o.gspOutputLen}` + (size > total ? ` (cycled for ${size} prompts)` : size < total ? ` (first ${size} after shuffling)` : ''),
    iterate(): DatasetIterator {
      let i = 0;
      return {
        next(): RequestSpec {
          const slot = order[i++ % total] as number;
          const group = Math.floor(slot / o.gspPromptsPerGroup);
          // Each question is a function of (seed, slot) alone, so it does not depend on the visiting order.
          const question = randomText(new Rng(subSeed(o.seed, 1000 + slot)), o.gspQuestionLen);
          return { prompt: (systems[group] as string) + sep + question, messages: undefined, promptTokens, outputLen: o.gspOutputLen, group };
        },
      };
    },
  };
}
