/**
 * Flags of `switchyard load` (names as SGLang's bench_serving where they overlap) and the resolved
 * LoadOptions the runner takes. The workload flags (dataset, arrivals, API, request shape) are shared with
 * `switchyard compare` and `switchyard sweep`, which add their own fleet flags and pick the target URL.
 */
import { OptionsError, camelCase, type OptionSpec } from '../config/options.js';
import { DATASET_NAMES, type DatasetName, type DatasetOptions } from './datasets.js';
import { parseRequestRate } from './arrivals.js';

export const API_NAMES = ['sglang', 'openai'] as const;
export type ApiName = (typeof API_NAMES)[number];
export const OPENAI_ROUTES = ['chat', 'completions'] as const;
export type OpenAiRoute = (typeof OPENAI_ROUTES)[number];
export const TARGET_KINDS = ['auto', 'router', 'server'] as const;
export type TargetKind = (typeof TARGET_KINDS)[number];
export const ESTIMATE_POLICIES = ['none', 'round_robin', 'random'] as const;
export type EstimatePolicy = (typeof ESTIMATE_POLICIES)[number];

export interface Slo {
  ttftMs: number | undefined;
  tpotMs: number | undefined;
  e2eMs: number | undefined;
}

/** Everything a load run needs besides the target. */
export interface WorkloadOptions extends DatasetOptions {
  api: ApiName;
  openaiRoute: OpenAiRoute;
  model: string | undefined;
  requestRate: number;
  burstiness: number;
  maxConcurrency: number | undefined;
  maxConnections: number;
  disableStream: boolean;
  disableIgnoreEos: boolean;
  warmupRequests: number;
  warmupSeconds: number;
  /** V8 young-generation collections on helper threads (helper-threads.ts); default false: on the sending thread. */
  parallelScavenge: boolean;
  slo: Slo | undefined;
  extraRequestBody: Record<string, unknown> | undefined;
  requestTimeoutSecs: number;
  apiKey: string | undefined;
  flushCache: boolean;
}

export interface LoadOptions extends WorkloadOptions {
  url: string;
  output: string;
  target: TargetKind;
  /** Policy whose logic estimates the GPU when neither a header nor a trace tells (seed 000). */
  gpuFallbackPolicy: EstimatePolicy;
  /** Number of GPUs for the estimate when the target does not list its workers. */
  numGpus: number | undefined;
  /** Prefix of the x-request-id of every request (default: random per run). */
  runId: string | undefined;
  /** Print the result table (stdout). */
  quiet: boolean;
  /** Progress bar: on a TTY by default. */
  progress: 'auto' | 'on' | 'off';
  /** Attribute late sends to causes (GC, descheduling, the generator's work, ...): summary.json's send_lag_causes. */
  lagDiagnostics?: boolean;
  /**
   * Nice value for this process's other threads while it runs (helper-threads.ts); 0 or absent: left
   * alone. Only for a process whose other threads are all helpers (the load command; not compare or
   * sweep, whose simulated fleets may run in worker threads).
   */
  helperNice?: number;
}

const G_WORK = 'Workload (SGLang bench_serving names)';
const G_DATA = 'Datasets';
const G_REQ = 'Requests';

/** Flags shared by load, compare and sweep. */
export const WORKLOAD_SPECS = [
  { name: 'api', type: 'string', default: 'sglang', choices: API_NAMES, help: 'sglang: POST /generate; openai: POST /v1/chat/completions (or /v1/completions, see --openai-route)', group: G_REQ, alias: ['backend'] },
  { name: 'openai-route', type: 'string', default: 'chat', choices: OPENAI_ROUTES, help: 'with --api openai: chat completions or completions', group: G_REQ },
  { name: 'model', type: 'string', help: 'model name for the OpenAI API (default: the first of the target\'s /v1/models)', group: G_REQ },
  { name: 'dataset', type: 'string', default: 'random', choices: DATASET_NAMES, help: 'workload dataset', group: G_DATA, alias: ['dataset-name'] },
  { name: 'dataset-path', type: 'string', help: 'local file for sharegpt (JSON) or custom (JSONL); nothing is downloaded', group: G_DATA, metavar: 'FILE' },
  { name: 'num-prompts', type: 'integer', min: 1, help: 'requests in the run (default 1000; generated-shared-prefix: groups x prompts per group; custom: rows in the file)', group: G_WORK },
  { name: 'random-input-len', type: 'integer', default: 1024, min: 1, help: 'random: max input tokens', group: G_DATA },
  { name: 'random-output-len', type: 'integer', default: 1024, min: 1, help: 'random: max output tokens', group: G_DATA },
  { name: 'random-range-ratio', type: 'number', default: 0, min: 0, max: 1, help: 'random: lengths uniform in [max(L*r, 1), L] (SGLang convention)', group: G_DATA },
  { name: 'sharegpt-output-len', type: 'integer', min: 1, help: 'sharegpt: fixed output length (default: the reply\'s length)', group: G_DATA },
  { name: 'sharegpt-context-len', type: 'integer', min: 2, help: 'sharegpt: drop entries whose prompt + output exceed this', group: G_DATA },
  { name: 'custom-output-len', type: 'integer', default: 256, min: 1, help: 'custom: output length of rows without output_len', group: G_DATA },
  { name: 'gsp-num-groups', type: 'integer', default: 64, min: 1, help: 'generated-shared-prefix: groups (one system prompt each)', group: G_DATA },
  { name: 'gsp-prompts-per-group', type: 'integer', default: 16, min: 1, help: 'generated-shared-prefix: prompts per group', group: G_DATA },
  { name: 'gsp-system-prompt-len', type: 'integer', default: 2048, min: 1, help: 'generated-shared-prefix: system prompt tokens', group: G_DATA },
  { name: 'gsp-question-len', type: 'integer', default: 128, min: 1, help: 'generated-shared-prefix: question tokens', group: G_DATA },
  { name: 'gsp-output-len', type: 'integer', default: 256, min: 1, help: 'generated-shared-prefix: output tokens', group: G_DATA },
  { name: 'request-rate', type: 'string', default: 'inf', help: 'requests per second (Poisson/gamma arrivals) or inf (all at once)', group: G_WORK, metavar: 'R|inf' },
  { name: 'burstiness', type: 'number', default: 1, min: 0.0001, help: 'gamma shape of the gaps: 1 = Poisson, < 1 burstier, > 1 more regular', group: G_WORK },
  { name: 'max-concurrency', type: 'integer', min: 1, help: 'cap on requests in flight (the rest wait client-side; counted as queueing)', group: G_WORK },
  { name: 'max-connections', type: 'integer', default: 2048, min: 1, help: 'connection pool size; also the in-flight cap when --max-concurrency is not set', group: G_WORK },
  { name: 'seed', type: 'integer', default: 1, help: 'seed of prompts, lengths and arrivals', group: G_WORK },
  { name: 'disable-stream', type: 'boolean', default: false, help: 'non-streaming requests (TTFT = E2E; no ITL/TPOT)', group: G_REQ },
  { name: 'disable-ignore-eos', type: 'boolean', default: false, help: 'let the server stop at EOS (default: ignore_eos, exact output lengths)', group: G_REQ },
  { name: 'warmup-requests', type: 'integer', default: 1, min: 0, help: 'requests sent together (and not recorded) before the run; as many as will be in flight also opens their connections and warms the generator before its clock starts (a lower send lag early in the run)', group: G_WORK },
  { name: 'warmup-seconds', type: 'number', default: 0.25, min: 0, max: 60, help: 'then this long of one-token requests at --request-rate through the run\'s own send path, not recorded: the generator\'s code is compiled when its clock starts (at 2,000 req/s, p99 send lag ~2 -> ~1 ms); at most 2,000 requests; 0: off; none at --request-rate inf', group: G_WORK },
  { name: 'parallel-scavenge', type: 'boolean', default: false, help: "let V8 collect the generator's young generation on helper threads too; default: on the sending thread alone, which on a small machine shared with the server keeps helpers from taking its core (2 cores, 2,000 req/s: send-lag p99 ~1.8 -> ~1.0 ms)", group: 'Generator' },
  { name: 'slo', type: 'string', help: 'SLOs for goodput: ttft=MS,tpot=MS,e2e=MS (any subset)', group: G_WORK, metavar: 'K=MS,...' },
  { name: 'extra-request-body', type: 'string', help: 'JSON object merged into every request body', group: G_REQ, metavar: 'JSON' },
  { name: 'request-timeout-secs', type: 'number', default: 3600, min: 0.001, help: 'per-request timeout (headers, and gaps between chunks)', group: G_REQ },
  { name: 'api-key', type: 'string', help: 'sent as Authorization: Bearer KEY', group: G_REQ },
  { name: 'flush-cache', type: 'boolean', default: false, help: 'POST /flush_cache to the target before the run', group: G_WORK },
] as const satisfies readonly OptionSpec[];

/** The load command's own flags. */
export const LOAD_ONLY_SPECS = [
  { name: 'url', type: 'string', help: 'target base URL: a Switchyard or SGLang router, or one SGLang-compatible server', group: 'Target', alias: ['base-url'], metavar: 'URL' },
  { name: 'target', type: 'string', default: 'auto', choices: TARGET_KINDS, help: 'auto: a router if GET /list_workers answers, else a single server', group: 'Target' },
  { name: 'output', type: 'string', help: 'results folder (requests.csv, summary.json); default ./load-results/<time>', group: 'Output', metavar: 'DIR' },
  { name: 'gpu-fallback-policy', type: 'string', default: 'none', choices: ESTIMATE_POLICIES, help: 'when no X-SGLang-Worker header and no trace: estimate the GPU as this policy would (marked estimated)', group: 'Target' },
  { name: 'num-gpus', type: 'integer', min: 1, help: 'GPU count for that estimate when the target does not list its workers', group: 'Target' },
  { name: 'run-id', type: 'string', help: 'prefix of every x-request-id (default: random)', group: 'Output' },
  { name: 'quiet', type: 'boolean', default: false, help: 'no result table on stdout', group: 'Output' },
  { name: 'progress', type: 'string', default: 'auto', choices: ['auto', 'on', 'off'], help: 'progress bar on stderr (auto: only on a TTY)', group: 'Output' },
  { name: 'helper-nice', type: 'integer', default: 10, min: 0, max: 19, help: "nice value for the generator's helper threads (V8's collector and compiler threads, libuv's pool) so that the sending thread wins its core when both are runnable; 0: leave them be (Linux; lowering priority needs no privilege)", group: 'Generator' },
  { name: 'lag-diagnostics', type: 'boolean', default: false, help: "attribute sends later than 0.5 ms to causes (GC, descheduled by the OS, the generator's own work, other JS, timer): send_lag_causes in summary.json", group: 'Output' },
] as const satisfies readonly OptionSpec[];

/** Gives every spec its own env variable SWITCHYARD_<COMMAND>_<NAME> (so e.g. SWITCHYARD_SEED of serve never leaks in). */
export function withEnvPrefix<S extends OptionSpec>(specs: readonly S[], command: string): S[] {
  return specs.map((s) => ({ ...s, env: `SWITCHYARD_${command.toUpperCase()}_${s.name.replace(/-/g, '_').toUpperCase()}` }));
}

export function parseSlo(raw: string | undefined): Slo | undefined {
  if (raw === undefined || raw.trim() === '') return undefined;
  const slo: Slo = { ttftMs: undefined, tpotMs: undefined, e2eMs: undefined };
  for (const part of raw.split(',')) {
    const [k, v] = part.split('=').map((s) => s.trim());
    const n = Number(v);
    if (v === undefined || v === '' || !Number.isFinite(n) || n <= 0) throw new OptionsError(`--slo: '${part}' is not KEY=MS with MS > 0 (keys: ttft, tpot, e2e)`);
    if (k === 'ttft') slo.ttftMs = n;
    else if (k === 'tpot') slo.tpotMs = n;
    else if (k === 'e2e' || k === 'e2e_latency') slo.e2eMs = n;
    else throw new OptionsError(`--slo: unknown key '${k}' (keys: ttft, tpot, e2e)`);
  }
  return slo;
}

function parseExtraBody(raw: string | undefined): Record<string, unknown> | undefined {
  if (raw === undefined || raw.trim() === '') return undefined;
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch (err) {
    throw new OptionsError(`--extra-request-body is not valid JSON: ${(err as Error).message}`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new OptionsError('--extra-request-body must be a JSON object');
  return v as Record<string, unknown>;
}

/** Resolves the parsed workload flags (camelCase keys of WORKLOAD_SPECS) into WorkloadOptions. */
export function workloadFromParsed(p: Record<string, unknown>): WorkloadOptions {
  const get = <T>(name: string): T => p[camelCase(name)] as T;
  let requestRate: number;
  try {
    requestRate = parseRequestRate(String(get<string>('request-rate')));
  } catch (err) {
    throw new OptionsError((err as Error).message);
  }
  const dataset = get<DatasetName>('dataset');
  if ((dataset === 'sharegpt' || dataset === 'custom') && (get<string | undefined>('dataset-path') ?? '') === '') {
    throw new OptionsError(`--dataset ${dataset} needs --dataset-path (a local file; nothing is downloaded)`);
  }
  return {
    dataset,
    datasetPath: get('dataset-path'),
    numPrompts: get('num-prompts'),
    seed: get('seed'),
    randomInputLen: get('random-input-len'),
    randomOutputLen: get('random-output-len'),
    randomRangeRatio: get('random-range-ratio'),
    sharegptOutputLen: get('sharegpt-output-len'),
    sharegptContextLen: get('sharegpt-context-len'),
    customOutputLen: get('custom-output-len'),
    gspNumGroups: get('gsp-num-groups'),
    gspPromptsPerGroup: get('gsp-prompts-per-group'),
    gspSystemPromptLen: get('gsp-system-prompt-len'),
    gspQuestionLen: get('gsp-question-len'),
    gspOutputLen: get('gsp-output-len'),
    api: get('api'),
    openaiRoute: get('openai-route'),
    model: get('model'),
    requestRate,
    burstiness: get('burstiness'),
    maxConcurrency: get('max-concurrency'),
    maxConnections: get('max-connections'),
    disableStream: get('disable-stream'),
    disableIgnoreEos: get('disable-ignore-eos'),
    warmupRequests: get('warmup-requests'),
    warmupSeconds: get('warmup-seconds'),
    parallelScavenge: get('parallel-scavenge'),
    slo: parseSlo(get('slo')),
    extraRequestBody: parseExtraBody(get('extra-request-body')),
    requestTimeoutSecs: get('request-timeout-secs'),
    apiKey: get('api-key'),
    flushCache: get('flush-cache'),
  };
}

/** Fills every workload option not given from the flag defaults (for programmatic callers and tests). */
export function defaultWorkload(overrides: Partial<WorkloadOptions> = {}): WorkloadOptions {
  const base: Record<string, unknown> = {};
  for (const s of WORKLOAD_SPECS) if ('default' in s) base[camelCase(s.name)] = s.default;
  const defaults = workloadFromParsed(base);
  const out: Record<string, unknown> = { ...defaults };
  for (const [k, v] of Object.entries(overrides)) if (v !== undefined) out[k] = v;
  return out as unknown as WorkloadOptions;
}

export function defaultOutputDir(prefix = 'load-results'): string {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').replace(/-\d{3}Z$/, 'Z');
  return `./${prefix}/${stamp}`;
}
