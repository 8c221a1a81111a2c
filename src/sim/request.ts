/**
 * One request inside the simulated scheduler: its prompt, generated tokens and text, timings and state.
 */
import { performance } from 'node:perf_hooks';
import type { Rng } from '../util/rng.js';
import type { SimOptions } from './options.js';
import { OUTPUT_WORDS, outputWord, tokenize } from '../util/tokenizer.js';
import type { RadixNode } from './radix-cache.js';

/** Llama-3's <|eot_id|>: the token a naturally finished request ends with. */
export const EOS_TOKEN_ID = 128009;

const WORD_IDS = new Map<string, number>(OUTPUT_WORDS.map((w) => [w, tokenize(w)[0] as number]));

export type FinishReason =
  | { type: 'length'; length: number }
  | { type: 'stop'; matched: number | string | null }
  | { type: 'abort'; message: string };

/** Receives a request's progress; implemented by the HTTP responders. */
export interface RequestSink {
  /** One or more tokens were appended (req.text / req.outputIds are cumulative). */
  onTokens(req: SimRequest): void;
  /** The request finished (req.finishReason is set). Not called for aborted requests. */
  onFinish(req: SimRequest): void;
}

export interface SubmitSpec {
  rid: string;
  promptIds: Uint32Array;
  maxNewTokens: number;
  minNewTokens: number;
  ignoreEos: boolean;
  stop: readonly string[] | null;
  stopTokenIds: readonly number[] | null;
  /** performance.now() when the HTTP request arrived (e2e_latency starts here). */
  createdAt: number;
  /** Batch index (streaming batches tag chunks with it). */
  index: number;
  /** Internal requests (health probes) stay out of metrics and totals. */
  internal?: boolean;
}

export type RequestState = 'waiting' | 'prefilling' | 'running' | 'done';

export class SimRequest {
  state: RequestState = 'waiting';
  /** performance.now() when the scheduler received it. */
  readonly arrival: number;
  /** Virtual time of admission into the first prefill batch (-1 before). */
  admittedAt = -1;
  firstTokenAt = -1;
  lastTokenAt = -1;
  finishedAt = -1;
  /** Prefix-cache hit tokens at first admission (meta_info.cached_tokens). */
  cachedTokens = 0;
  /** Tokens of the current sequence (prompt + generated before a retraction) present in KV. */
  computed = 0;
  /** Tokens allocated for the prefill chunk in flight. */
  inflight = 0;
  /** KV slots owned privately (decode tokens; with the radix cache disabled also the prompt). */
  privateTokens = 0;
  /** Locked radix node at the end of the computed prefix. */
  node: RadixNode | null = null;
  /** Index in the engine's running array (swap-remove). */
  runIndex = -1;
  readonly outputIds: number[] = [];
  /** Generated text, cumulative; never shrinks (a stop string only trims text not yet emitted). */
  text = '';
  /** The output ids as a JSON list body ("1,2,3"), kept incrementally for streaming chunks. */
  idsCsv = '';
  finishReason: FinishReason | null = null;
  retractions = 0;
  /** Token length at which the model "emits EOS" (Infinity with ignore_eos). */
  readonly naturalLength: number;
  readonly outputSeed: number;
  /** Set by responders; opaque to the engine. */
  tag: unknown = undefined;
  private readonly stopTokenSet: Set<number> | null;
  private readonly maxStopLength: number;

  constructor(
    readonly spec: SubmitSpec,
    readonly sink: RequestSink,
    rng: Rng,
    opts: SimOptions,
  ) {
    this.arrival = performance.now();
    this.outputSeed = Math.floor(rng.next() * 0x7fffffff);
    if (spec.ignoreEos) this.naturalLength = Number.POSITIVE_INFINITY;
    else {
      const natural = Math.max(1, Math.round(rng.logNormal(opts.outputLenMedian, opts.outputLenSigma)));
      this.naturalLength = Math.max(natural, spec.minNewTokens);
    }
    this.stopTokenSet = spec.stopTokenIds !== null && spec.stopTokenIds.length > 0 ? new Set(spec.stopTokenIds) : null;
    let maxStop = 0;
    if (spec.stop !== null) for (const s of spec.stop) maxStop = Math.max(maxStop, s.length);
    this.maxStopLength = maxStop;
  }

  get rid(): string {
    return this.spec.rid;
  }
  get promptTokens(): number {
    return this.spec.promptIds.length;
  }
  get completionTokens(): number {
    return this.outputIds.length;
  }
  /** Length of the sequence a (re)prefill must hold: prompt plus tokens generated before a retraction. */
  get sequenceLength(): number {
    return this.spec.promptIds.length + this.outputIds.length;
  }
  /** Queue time in seconds (virtual), or -1 before admission. */
  get queueTimeSec(): number {
    return this.admittedAt < 0 ? -1 : Math.max(0, this.admittedAt - this.arrival) / 1000;
  }
  get e2eLatencySec(): number {
    return this.finishedAt < 0 ? -1 : Math.max(0, this.finishedAt - this.spec.createdAt) / 1000;
  }

  /** The token sequence prompt + outputIds[0, outputs). */
  sequence(outputs: number): Uint32Array {
    const prompt = this.spec.promptIds;
    if (outputs <= 0) return prompt;
    const seq = new Uint32Array(prompt.length + outputs);
    seq.set(prompt, 0);
    for (let i = 0; i < outputs; i++) seq[prompt.length + i] = this.outputIds[i] as number;
    return seq;
  }

  /** Appends the next token; returns the finish reason if this token ends the request. */
  appendToken(contextLength: number): FinishReason | null {
    const k = this.outputIds.length;
    const maxNew = this.spec.maxNewTokens;
    if (k + 1 >= this.naturalLength && this.naturalLength < maxNew) {
      this.pushId(EOS_TOKEN_ID);
      return { type: 'stop', matched: EOS_TOKEN_ID };
    }
    const word = outputWord(this.outputSeed, k);
    const id = WORD_IDS.get(word) as number;
    this.pushId(id);
    const before = this.text.length;
    this.text += word;
    if (this.stopTokenSet !== null && this.stopTokenSet.has(id)) return { type: 'stop', matched: id };
    if (this.maxStopLength > 0) {
      const from = Math.max(0, before - this.maxStopLength + 1);
      for (const s of this.spec.stop as readonly string[]) {
        const at = this.text.indexOf(s, from);
        if (at >= 0) {
          // Trim the stop string, but never below text already emitted in earlier chunks.
          this.text = this.text.slice(0, Math.max(at, before));
          return { type: 'stop', matched: s };
        }
      }
    }
    if (k + 1 >= maxNew) return { type: 'length', length: k + 1 };
    if (this.spec.promptIds.length + k + 1 >= contextLength) return { type: 'length', length: k + 1 };
    return null;
  }

  private pushId(id: number): void {
    this.idsCsv = this.outputIds.length === 0 ? String(id) : this.idsCsv + ',' + id;
    this.outputIds.push(id);
  }
}
