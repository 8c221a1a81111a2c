/**
 * Options of the simulated SGLang server: flag specs (shared by `switchyard sim` and
 * `switchyard serve --sim-workers K`), the resolved SimOptions type, timing profiles and defaults.
 *
 * Timing and capacity flags have no static default: they come from --profile unless given, so a
 * profile can be switched wholesale and single figures still overridden.
 */
import { camelCase, OptionsError, type OptionSpec } from '../config/options.js';

export const SIM_PROFILES = ['h100-8b', 'llm-d'] as const;
export type SimProfileName = (typeof SIM_PROFILES)[number];
export const CRASH_MODES = ['process', 'server'] as const;
export type CrashMode = (typeof CRASH_MODES)[number];

/** The figures a profile fixes (see docs/sim.md for where they come from). */
export interface SimProfile {
  readonly prefillBaseMs: number;
  readonly prefillPerTokenMs: number;
  readonly decodeBaseMs: number;
  readonly decodePerSeqMs: number;
  readonly decodePerKvTokenUs: number;
  readonly maxRunningRequests: number;
  readonly maxTotalTokens: number;
  readonly chunkedPrefillSize: number;
  readonly maxPrefillTokens: number;
  readonly contextLength: number;
}

export const PROFILES: Readonly<Record<SimProfileName, SimProfile>> = {
  // Llama-3.1-8B, bf16, one H100 SXM 80 GB, derived from the hardware (docs/sim.md):
  // prefill ~16 GFLOP/token at ~450 TFLOP/s effective; decode reads 16 GB of weights per step
  // (~5 ms at 3.35 TB/s, plus launch overhead) and 128 KiB of KV per context token.
  'h100-8b': {
    prefillBaseMs: 10,
    prefillPerTokenMs: 0.035,
    decodeBaseMs: 7,
    decodePerSeqMs: 0.06,
    decodePerKvTokenUs: 0.04,
    maxRunningRequests: 2048,
    maxTotalTokens: 400_000,
    chunkedPrefillSize: 8192,
    maxPrefillTokens: 16384,
    contextLength: 131_072,
  },
  // llm-d-inference-sim's published "8B on H100" figures: ITL 12 ms, prefill 30 ms + 0.25 ms/token,
  // load factor 2.0 at 16 sequences (ITL(16) = 24 ms: 11.2 + 0.8 * 16), no context cost.
  'llm-d': {
    prefillBaseMs: 30,
    prefillPerTokenMs: 0.25,
    decodeBaseMs: 11.2,
    decodePerSeqMs: 0.8,
    decodePerKvTokenUs: 0,
    maxRunningRequests: 16,
    maxTotalTokens: 400_000,
    chunkedPrefillSize: 8192,
    maxPrefillTokens: 16384,
    contextLength: 131_072,
  },
};

/** Fault injection settings; all of them can be changed at runtime (POST /sim/faults, setFaults). */
export interface SimFaults {
  /** Fraction of data requests answered with an injected error. */
  failRate: number;
  /** HTTP status of injected failures. */
  statusCode: number;
  /** The first N data requests fail. */
  failFirstN: number;
  /** Extra fixed latency (real ms, not scaled) before a data request reaches the scheduler. */
  latencyMs: number;
  /** Serve N data requests, crash on the next one; -1 = off. */
  crashAfter: number;
  crashMode: CrashMode;
  /** /health and /health_generate answer 503 from T real ms after start (or after being set); -1 = off. */
  healthFailAfterMs: number;
  /** Accept every data request and never answer it (until the client disconnects). */
  hang: boolean;
  /** Fraction of data requests that hang. */
  hangRate: number;
  /** Fraction of data requests answered with garbage (not HTTP), then the connection is closed. */
  garbageRate: number;
}

export const FAULT_KEYS: readonly (keyof SimFaults)[] = [
  'failRate',
  'statusCode',
  'failFirstN',
  'latencyMs',
  'crashAfter',
  'crashMode',
  'healthFailAfterMs',
  'hang',
  'hangRate',
  'garbageRate',
];

export interface SimOptions extends SimProfile, SimFaults {
  profile: SimProfileName;
  modelPath: string;
  /** Name reported by /v1/models and in metric labels; defaults to modelPath. */
  servedModelName: string;
  tokenizerPath: string;
  /** SGLang's --disable-radix-cache: no prefix reuse at all (a baseline for cache-aware routing). */
  disableRadixCache: boolean;
  /** SGLang's --schedule-conservativeness: scales the output-token reservation at admission. */
  scheduleConservativeness: number;
  /** Multiplies every step time (0.01 = 100x faster than the modelled GPU). */
  timeScale: number;
  /** Multiplies step times per server: one value for all, or one per server (the last repeats). */
  slowFactor: number | readonly number[];
  seed: number;
  /** Relative Gaussian jitter of step times (0.05 = 5% standard deviation). */
  jitter: number;
  /** Median of the natural (EOS) output length, in tokens; log-normal. */
  outputLenMedian: number;
  /** Sigma of the underlying normal of the output length distribution. */
  outputLenSigma: number;
  /** SGLang's --stream-interval: a streaming chunk every N tokens (the first token is always sent at once). */
  streamInterval: number;
  /** Request body limit in bytes. */
  maxBodyBytes: number;
  /** GPU id of the first server; server i reports baseGpuId + i. */
  baseGpuId: number;
}

const BASE_DEFAULTS = {
  profile: 'h100-8b' as SimProfileName,
  modelPath: 'meta-llama/Llama-3.1-8B-Instruct',
  disableRadixCache: false,
  scheduleConservativeness: 1,
  timeScale: 1,
  slowFactor: 1 as number | readonly number[],
  seed: 0,
  jitter: 0,
  outputLenMedian: 160,
  outputLenSigma: 0.8,
  streamInterval: 1,
  maxBodyBytes: 32 * 1024 * 1024,
  baseGpuId: 0,
  failRate: 0,
  statusCode: 500,
  failFirstN: 0,
  latencyMs: 0,
  crashAfter: -1,
  crashMode: 'process' as CrashMode,
  healthFailAfterMs: -1,
  hang: false,
  hangRate: 0,
  garbageRate: 0,
};

/** Fills a partial option set from the profile and the defaults, and validates it. */
export function resolveSimOptions(partial: Partial<SimOptions> = {}): SimOptions {
  const defined: Partial<SimOptions> = {};
  for (const [k, v] of Object.entries(partial)) if (v !== undefined) (defined as Record<string, unknown>)[k] = v;
  const profileName = defined.profile ?? BASE_DEFAULTS.profile;
  const profile = PROFILES[profileName];
  if (profile === undefined) throw new OptionsError(`unknown sim profile '${String(profileName)}' (one of ${SIM_PROFILES.join(', ')})`);
  const modelPath = defined.modelPath ?? BASE_DEFAULTS.modelPath;
  const opts: SimOptions = {
    ...BASE_DEFAULTS,
    ...profile,
    servedModelName: modelPath,
    tokenizerPath: modelPath,
    ...defined,
    profile: profileName,
    modelPath,
  };
  validateSimOptions(opts);
  return opts;
}

function check(cond: boolean, message: string): void {
  if (!cond) throw new OptionsError(message);
}

export function validateSimOptions(o: SimOptions): void {
  const nonNeg = (v: number, name: string): void => check(Number.isFinite(v) && v >= 0, `${name} must be a finite number >= 0, got ${v}`);
  const posInt = (v: number, name: string): void => check(Number.isInteger(v) && v >= 1, `${name} must be an integer >= 1, got ${v}`);
  nonNeg(o.prefillBaseMs, 'prefill-base-ms');
  nonNeg(o.prefillPerTokenMs, 'prefill-per-token-ms');
  nonNeg(o.decodeBaseMs, 'decode-base-ms');
  nonNeg(o.decodePerSeqMs, 'decode-per-seq-ms');
  nonNeg(o.decodePerKvTokenUs, 'decode-per-kv-token-us');
  posInt(o.maxRunningRequests, 'max-running-requests');
  posInt(o.maxTotalTokens, 'max-total-tokens');
  check(Number.isInteger(o.chunkedPrefillSize) && (o.chunkedPrefillSize === -1 || o.chunkedPrefillSize >= 1), 'chunked-prefill-size must be -1 (off) or an integer >= 1');
  posInt(o.maxPrefillTokens, 'max-prefill-tokens');
  posInt(o.contextLength, 'context-length');
  check(Number.isFinite(o.timeScale) && o.timeScale > 0, `time-scale must be > 0, got ${o.timeScale}`);
  const slow = typeof o.slowFactor === 'number' ? [o.slowFactor] : o.slowFactor;
  check(slow.length > 0 && slow.every((f) => Number.isFinite(f) && f > 0), 'slow-factor values must be > 0');
  nonNeg(o.jitter, 'jitter');
  check(Number.isInteger(o.seed), 'seed must be an integer');
  check(Number.isFinite(o.outputLenMedian) && o.outputLenMedian >= 1, 'output-len-median must be >= 1');
  nonNeg(o.outputLenSigma, 'output-len-sigma');
  check(Number.isFinite(o.scheduleConservativeness) && o.scheduleConservativeness > 0, 'schedule-conservativeness must be > 0');
  posInt(o.maxBodyBytes, 'max-body-bytes');
  posInt(o.streamInterval, 'stream-interval');
  check(Number.isInteger(o.baseGpuId) && o.baseGpuId >= 0, 'base-gpu-id must be an integer >= 0');
  check(typeof o.modelPath === 'string' && o.modelPath.length > 0, 'model-path must not be empty');
  validateFaults(o);
}

/** Validates (a partial set of) fault settings; throws OptionsError with the flag name. */
export function validateFaults(f: Partial<SimFaults>): void {
  const rate = (v: number | undefined, name: string): void => {
    if (v !== undefined) check(typeof v === 'number' && v >= 0 && v <= 1, `${name} must be a number in [0, 1], got ${String(v)}`);
  };
  rate(f.failRate, 'fail-rate');
  rate(f.hangRate, 'hang-rate');
  rate(f.garbageRate, 'garbage-rate');
  if (f.statusCode !== undefined) check(Number.isInteger(f.statusCode) && f.statusCode >= 400 && f.statusCode <= 599, `status-code must be an integer in [400, 599], got ${String(f.statusCode)}`);
  if (f.failFirstN !== undefined) check(Number.isInteger(f.failFirstN) && f.failFirstN >= 0, `fail-first-n must be an integer >= 0, got ${String(f.failFirstN)}`);
  if (f.latencyMs !== undefined) check(typeof f.latencyMs === 'number' && Number.isFinite(f.latencyMs) && f.latencyMs >= 0, `latency-ms must be >= 0, got ${String(f.latencyMs)}`);
  if (f.crashAfter !== undefined) check(Number.isInteger(f.crashAfter) && f.crashAfter >= -1, `crash-after must be an integer >= -1 (-1 = off), got ${String(f.crashAfter)}`);
  if (f.crashMode !== undefined) check(CRASH_MODES.includes(f.crashMode), `crash-mode must be one of ${CRASH_MODES.join(', ')}, got ${String(f.crashMode)}`);
  if (f.healthFailAfterMs !== undefined) {
    check(typeof f.healthFailAfterMs === 'number' && Number.isFinite(f.healthFailAfterMs) && f.healthFailAfterMs >= -1, `health-fail-after-ms must be >= -1 (-1 = off), got ${String(f.healthFailAfterMs)}`);
  }
  if (f.hang !== undefined) check(typeof f.hang === 'boolean', `hang must be a boolean, got ${String(f.hang)}`);
}

/** Parses an untrusted JSON object (POST /sim/faults) into a validated partial; keys may be camel, snake or kebab case. */
export function parseFaultsPatch(body: Record<string, unknown>): Partial<SimFaults> {
  const patch: Record<string, unknown> = {};
  for (const [rawKey, value] of Object.entries(body)) {
    const key = camelCase(rawKey.replace(/_/g, '-'));
    if (!(FAULT_KEYS as readonly string[]).includes(key)) {
      throw new OptionsError(`unknown fault setting '${rawKey}' (known: ${FAULT_KEYS.join(', ')})`);
    }
    patch[key] = value;
  }
  const typed = patch as Partial<SimFaults>;
  validateFaults(typed);
  return typed;
}

const G_ENGINE = 'Simulated engine (SGLang server args)';
const G_TIMING = 'Timing profile';
const G_FAULTS = 'Fault injection';

/** Gives every spec the environment variable SWITCHYARD_SIM_<NAME>, so sim settings never collide with the router's or the load generator's. */
export function simEnv<const T extends readonly OptionSpec[]>(specs: T): { readonly [K in keyof T]: T[K] & { readonly env: string } } {
  return specs.map((s) => ({ ...s, env: `SWITCHYARD_SIM_${s.name.replace(/-/g, '_').toUpperCase()}` })) as unknown as { readonly [K in keyof T]: T[K] & { readonly env: string } };
}

/**
 * The engine, timing and fault flags of a simulated server, without host/port/count (the command
 * that embeds the sim owns those). Flags that default to "from --profile" have no static default.
 * Environment variables are SWITCHYARD_SIM_<NAME>.
 */
export const SIM_OPTION_SPECS = simEnv([
  { name: 'model-path', type: 'string', default: BASE_DEFAULTS.modelPath, help: 'model the servers report (/get_model_info, /v1/models, metric labels)', group: G_ENGINE },
  { name: 'served-model-name', type: 'string', help: 'name in /v1/models and metric labels (default: --model-path)', group: G_ENGINE },
  { name: 'tokenizer-path', type: 'string', help: 'tokenizer path reported by /get_model_info (default: --model-path)', group: G_ENGINE },
  { name: 'profile', type: 'string', default: BASE_DEFAULTS.profile, choices: SIM_PROFILES, help: 'timing and capacity profile (docs/sim.md)', group: G_TIMING },
  { name: 'max-running-requests', type: 'integer', min: 1, help: 'cap of the running batch; the rest wait in the queue (default: from --profile)', group: G_ENGINE },
  { name: 'max-total-tokens', type: 'integer', min: 1, help: 'KV cache capacity in tokens (default: from --profile)', group: G_ENGINE },
  { name: 'chunked-prefill-size', type: 'integer', min: -1, help: 'max prompt tokens of one request per prefill step; -1 = no chunking (default: from --profile)', group: G_ENGINE },
  { name: 'max-prefill-tokens', type: 'integer', min: 1, help: 'token budget of one prefill batch (default: from --profile)', group: G_ENGINE },
  { name: 'context-length', type: 'integer', min: 1, help: 'model context length in tokens (default: from --profile)', group: G_ENGINE },
  { name: 'disable-radix-cache', type: 'boolean', default: false, help: 'no prefix cache reuse (SGLang flag)', group: G_ENGINE },
  { name: 'schedule-conservativeness', type: 'number', default: 1, help: 'scales the output-token reservation at admission (SGLang flag)', group: G_ENGINE },
  { name: 'output-len-median', type: 'number', default: BASE_DEFAULTS.outputLenMedian, min: 1, help: 'median natural output length (log-normal), capped by max_new_tokens', group: G_ENGINE },
  { name: 'output-len-sigma', type: 'number', default: BASE_DEFAULTS.outputLenSigma, min: 0, help: 'sigma of the output length log-normal', group: G_ENGINE },
  { name: 'stream-interval', type: 'integer', default: 1, min: 1, help: 'streaming chunk every N tokens; the first token is sent at once (SGLang flag)', group: G_ENGINE },
  { name: 'max-body-bytes', type: 'integer', default: BASE_DEFAULTS.maxBodyBytes, min: 1, help: 'request body size limit', group: G_ENGINE },
  { name: 'base-gpu-id', type: 'integer', default: 0, min: 0, help: 'GPU id of the first server (server i reports base + i)', group: G_ENGINE },
  { name: 'prefill-base-ms', type: 'number', min: 0, help: 'fixed cost of a prefill step (default: from --profile)', group: G_TIMING },
  { name: 'prefill-per-token-ms', type: 'number', min: 0, help: 'cost per uncached prompt token in a prefill step (default: from --profile)', group: G_TIMING },
  { name: 'decode-base-ms', type: 'number', min: 0, help: 'fixed cost of a decode step (default: from --profile)', group: G_TIMING },
  { name: 'decode-per-seq-ms', type: 'number', min: 0, help: 'decode step cost per running sequence (default: from --profile)', group: G_TIMING },
  { name: 'decode-per-kv-token-us', type: 'number', min: 0, help: 'decode step cost per context token of the batch, microseconds (default: from --profile)', group: G_TIMING },
  { name: 'time-scale', type: 'number', default: 1, help: 'multiplies every step time (0.01 = 100x faster)', group: G_TIMING },
  { name: 'slow-factor', type: 'list', default: ['1'], metavar: 'F[,F...]', help: 'multiplies step times; one value, or one per server (the last repeats)', group: G_TIMING },
  { name: 'seed', type: 'integer', default: 0, help: 'random seed (server i uses seed + i)', group: G_TIMING },
  { name: 'jitter', type: 'number', default: 0, min: 0, help: 'relative Gaussian jitter of step times (0.05 = 5%)', group: G_TIMING },
  { name: 'fail-rate', type: 'number', default: 0, min: 0, max: 1, help: 'fraction of data requests answered with an injected error', group: G_FAULTS },
  { name: 'status-code', type: 'integer', default: 500, min: 400, max: 599, help: 'HTTP status of injected failures', group: G_FAULTS },
  { name: 'fail-first-n', type: 'integer', default: 0, min: 0, help: 'the first N data requests fail', group: G_FAULTS },
  { name: 'latency-ms', type: 'number', default: 0, min: 0, help: 'extra latency before a data request is admitted (real ms, not scaled)', group: G_FAULTS },
  { name: 'crash-after', type: 'integer', default: -1, min: -1, help: 'serve N data requests, crash on the next (-1 = off)', group: G_FAULTS },
  { name: 'crash-mode', type: 'string', default: 'process', choices: CRASH_MODES, help: 'process: exit(1); server: only that server closes its socket and connections', group: G_FAULTS },
  { name: 'health-fail-after-ms', type: 'number', default: -1, min: -1, help: '/health and /health_generate return 503 after T real ms (-1 = off)', group: G_FAULTS },
  { name: 'hang', type: 'boolean', default: false, help: 'accept data requests and never answer (until the client disconnects)', group: G_FAULTS },
  { name: 'hang-rate', type: 'number', default: 0, min: 0, max: 1, help: 'fraction of data requests that hang', group: G_FAULTS },
  { name: 'garbage-rate', type: 'number', default: 0, min: 0, max: 1, help: 'fraction of data requests answered with bytes that are not HTTP, then the connection closed', group: G_FAULTS },
] as const satisfies readonly OptionSpec[]);

/**
 * SIM_OPTION_SPECS with every flag renamed `<prefix><name>` (e.g. 'sim-' for `serve --sim-*`); the
 * environment variables stay SWITCHYARD_SIM_<NAME>.
 */
export function prefixedSimSpecs(prefix: string): OptionSpec[] {
  return SIM_OPTION_SPECS.map((s) => ({ ...s, name: `${prefix}${s.name}` }));
}

/**
 * Maps the output of parseOptions (camelCase keys; with `prefix`, the keys of prefixedSimSpecs) to a
 * resolved SimOptions. Options left undefined fall back to the profile and the defaults.
 */
export function simOptionsFromParsed(parsed: Record<string, unknown>, prefix = ''): SimOptions {
  const partial: Record<string, unknown> = {};
  for (const spec of SIM_OPTION_SPECS) {
    const value = parsed[camelCase(`${prefix}${spec.name}`)];
    if (value === undefined) continue;
    partial[camelCase(spec.name)] = value;
  }
  const slow = partial['slowFactor'];
  if (Array.isArray(slow)) {
    const values = slow.map((v) => Number(v));
    if (values.some((v) => !Number.isFinite(v) || v <= 0)) throw new OptionsError(`--${prefix}slow-factor expects positive numbers, got '${slow.join(',')}'`);
    partial['slowFactor'] = values.length === 1 ? (values[0] as number) : values;
  }
  return resolveSimOptions(partial as Partial<SimOptions>);
}

/** The slow factor of server `index` (one value for all, or per server with the last repeated). */
export function slowFactorOf(o: Pick<SimOptions, 'slowFactor'>, index: number): number {
  if (typeof o.slowFactor === 'number') return o.slowFactor;
  return o.slowFactor[Math.min(index, o.slowFactor.length - 1)] as number;
}
