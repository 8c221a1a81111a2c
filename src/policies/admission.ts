/**
 * Size-aware admission (seed 002, "GPU routing"): before the policy decides, a request is classed by
 * size and sent to one of two worker groups, multi-GPU ("multi", the seed's route4) or single-GPU
 * ("single"); the policy then chooses within that group.
 *
 * Triggers for the multi-GPU group, checked in this order (the first that fires is the trigger):
 *   1. large_input:     input_tokens > large_input_tokens (8000)
 *   2. large_kv:        predicted_kv_mb > large_kv_mb (6000)
 *   3. memory_pressure: the single-GPU workers' reported KV token usage > 0.85 (every available one: no
 *                       single worker has headroom) AND (input_tokens > 4000 OR predicted_kv_mb > 3000)
 * predicted_kv_mb = (input_tokens + max_new_tokens) * kv_bytes_per_token / 2^20: the KV cache the request
 * holds when its generation ends. kv_bytes_per_token defaults to Llama-3.1-8B in bf16:
 * 32 layers * 8 KV heads * 128 dims * 2 (K and V) * 2 bytes = 131072 bytes (128 KiB) per token.
 *
 * When the chosen group has no available worker the request goes to the other group and the reason says
 * so; the counters record where requests actually went (action) and why (trigger).
 *
 * Groups come from `--worker-groups URL=multi,URL=single` (or a JSON object, or an object in the config
 * file); workers not named are single-GPU. Admission is on when at least one group is configured.
 */
import { readFileSync } from 'node:fs';
import { Field, type WorkerTable } from '../actors/worker-table.js';
import { SwitchyardError } from '../errors.js';
import { isCandidate } from './common.js';
import type { RequestFeatures, WorkerInfo } from './types.js';
import { parseWorkerUrlMap } from '../workers/url-map.js';

export const WORKER_GROUPS = ['single', 'multi'] as const;
export type WorkerGroup = (typeof WORKER_GROUPS)[number];
export type AdmissionAction = WorkerGroup;
export const ADMISSION_TRIGGERS = ['none', 'large_input', 'large_kv', 'memory_pressure'] as const;
export type AdmissionTrigger = (typeof ADMISSION_TRIGGERS)[number];

/** Llama-3.1-8B, bf16: 32 layers x 8 KV heads x 128 head dims x 2 (K, V) x 2 bytes. */
export const DEFAULT_KV_BYTES_PER_TOKEN = 32 * 8 * 128 * 2 * 2;

export interface AdmissionOptions {
  readonly largeInputTokens: number;
  readonly largeKvMb: number;
  /** Reported KV token usage (0..1) above which a single-GPU worker is under memory pressure. */
  readonly memoryPressureUsage: number;
  readonly pressureInputTokens: number;
  readonly pressureKvMb: number;
  readonly kvBytesPerToken: number;
}

export const ADMISSION_DEFAULTS: AdmissionOptions = Object.freeze({
  largeInputTokens: 8000,
  largeKvMb: 6000,
  memoryPressureUsage: 0.85,
  pressureInputTokens: 4000,
  pressureKvMb: 3000,
  kvBytesPerToken: DEFAULT_KV_BYTES_PER_TOKEN,
});

/**
 * What admission reports, once per admitted request. Structurally the same as src/metrics' AdmissionRecorder
 * (RouterMetrics.admission implements it): pass that object to Admission.addRecorder.
 */
export interface AdmissionRecorder {
  record(action: string, trigger: string): void;
}

export interface AdmissionCountsSnapshot {
  readonly total: number;
  readonly actions: Readonly<Record<string, number>>;
  readonly triggers: Readonly<Record<string, number>>;
  /** action -> trigger -> count. */
  readonly by_action: Readonly<Record<string, Readonly<Record<string, number>>>>;
}

/** Admission's own counts by action and trigger (fixed vocabulary: no allocation per request). */
export class AdmissionTally implements AdmissionRecorder {
  private readonly counts = new Float64Array(WORKER_GROUPS.length * ADMISSION_TRIGGERS.length);

  record(action: string, trigger: string): void {
    const a = (WORKER_GROUPS as readonly string[]).indexOf(action);
    const t = (ADMISSION_TRIGGERS as readonly string[]).indexOf(trigger);
    if (a < 0 || t < 0) return;
    const i = a * ADMISSION_TRIGGERS.length + t;
    this.counts[i] = (this.counts[i] as number) + 1;
  }

  count(action: AdmissionAction, trigger?: AdmissionTrigger): number {
    const a = WORKER_GROUPS.indexOf(action);
    if (trigger !== undefined) return this.counts[a * ADMISSION_TRIGGERS.length + ADMISSION_TRIGGERS.indexOf(trigger)] as number;
    let n = 0;
    for (let t = 0; t < ADMISSION_TRIGGERS.length; t++) n += this.counts[a * ADMISSION_TRIGGERS.length + t] as number;
    return n;
  }

  snapshot(): AdmissionCountsSnapshot {
    const actions: Record<string, number> = {};
    const triggers: Record<string, number> = {};
    const byAction: Record<string, Record<string, number>> = {};
    let total = 0;
    WORKER_GROUPS.forEach((a, ai) => {
      actions[a] = 0;
      byAction[a] = {};
      ADMISSION_TRIGGERS.forEach((t, ti) => {
        const n = this.counts[ai * ADMISSION_TRIGGERS.length + ti] as number;
        actions[a] = (actions[a] as number) + n;
        triggers[t] = (triggers[t] ?? 0) + n;
        (byAction[a] as Record<string, number>)[t] = n;
        total += n;
      });
    });
    return { total, actions, triggers, by_action: byAction };
  }
}

export interface AdmissionVerdict {
  readonly action: AdmissionAction;
  readonly trigger: AdmissionTrigger;
  /** e.g. "large_input: 10000 > 8000 tokens -> multi". */
  readonly reason: string;
  readonly inputTokens: number;
  readonly predictedKvMb: number;
  /** Lowest reported KV token usage among available single-GPU workers (0..1; 0 when none reported). */
  readonly memoryUsage: number;
}

function positive(o: Partial<AdmissionOptions>, key: keyof AdmissionOptions, max = Infinity): number {
  const v = o[key];
  if (v === undefined) return ADMISSION_DEFAULTS[key];
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || v > max) {
    throw new SwitchyardError('invalid_request', `admission: ${key} must be a positive number${max < Infinity ? ` <= ${max}` : ''}, got ${String(v)}`);
  }
  return v;
}

export function admissionOptions(o: Partial<AdmissionOptions> = {}): AdmissionOptions {
  return {
    largeInputTokens: positive(o, 'largeInputTokens'),
    largeKvMb: positive(o, 'largeKvMb'),
    memoryPressureUsage: positive(o, 'memoryPressureUsage', 1),
    pressureInputTokens: positive(o, 'pressureInputTokens'),
    pressureKvMb: positive(o, 'pressureKvMb'),
    kvBytesPerToken: positive(o, 'kvBytesPerToken'),
  };
}

const MIB = 1024 * 1024;

export class Admission {
  readonly options: AdmissionOptions;
  readonly tally = new AdmissionTally();
  private readonly recorders: AdmissionRecorder[] = [this.tally];
  private single: readonly WorkerInfo[] = [];
  private multi: readonly WorkerInfo[] = [];

  constructor(
    private readonly table: WorkerTable,
    options: Partial<AdmissionOptions> = {},
  ) {
    this.options = admissionOptions(options);
  }

  /** Also report every admission to `r` (e.g. the metrics' AdmissionCounters). */
  addRecorder(r: AdmissionRecorder): void {
    this.recorders.push(r);
  }

  /** The membership, with each worker's group (no group: single-GPU). */
  setWorkers(ws: readonly WorkerInfo[]): void {
    const single: WorkerInfo[] = [];
    const multi: WorkerInfo[] = [];
    for (const w of ws) (w.group === 'multi' ? multi : single).push(w);
    this.single = single;
    this.multi = multi;
  }

  /** Class a request; counts nothing. */
  classify(req: RequestFeatures): AdmissionVerdict {
    const o = this.options;
    const input = req.inputTokens;
    const kvMb = ((input + Math.max(0, req.maxNewTokens)) * o.kvBytesPerToken) / MIB;
    const usage = this.lowestUsage(this.single);
    let trigger: AdmissionTrigger = 'none';
    let why: string;
    if (input > o.largeInputTokens) {
      trigger = 'large_input';
      why = `large_input: ${input} > ${o.largeInputTokens} tokens`;
    } else if (kvMb > o.largeKvMb) {
      trigger = 'large_kv';
      why = `large_kv: ${Math.round(kvMb)} > ${o.largeKvMb} MB`;
    } else if (usage > o.memoryPressureUsage && (input > o.pressureInputTokens || kvMb > o.pressureKvMb)) {
      trigger = 'memory_pressure';
      const size = input > o.pressureInputTokens ? `input ${input} > ${o.pressureInputTokens} tokens` : `kv ${Math.round(kvMb)} > ${o.pressureKvMb} MB`;
      why = `memory_pressure: token usage ${usage.toFixed(2)} > ${o.memoryPressureUsage} and ${size}`;
    } else {
      why = `small: ${input} tokens, kv ${Math.round(kvMb)} MB`;
    }
    let action: AdmissionAction = trigger === 'none' ? 'single' : 'multi';
    if (action === 'multi' && !this.anyAvailable(this.multi)) {
      action = 'single';
      why += '; no multi-GPU worker available';
    } else if (action === 'single' && !this.anyAvailable(this.single) && this.anyAvailable(this.multi)) {
      action = 'multi';
      why += '; no single-GPU worker available';
    }
    return { action, trigger, reason: `${why} -> ${action}`, inputTokens: input, predictedKvMb: kvMb, memoryUsage: usage };
  }

  /** Class a request, count it, and return its features with the group and reason for the policy. */
  admit(req: RequestFeatures): RequestFeatures {
    const v = this.classify(req);
    for (const r of this.recorders) r.record(v.action, v.trigger);
    return { ...req, group: v.action, admission: `admission: ${v.reason}` };
  }

  snapshot(): { options: AdmissionOptions; workers: { single: number; multi: number }; counts: AdmissionCountsSnapshot } {
    return { options: this.options, workers: { single: this.single.length, multi: this.multi.length }, counts: this.tally.snapshot() };
  }

  private anyAvailable(ws: readonly WorkerInfo[]): boolean {
    for (const w of ws) if (isCandidate(this.table, w)) return true;
    return false;
  }

  /** Lowest reported usage over the available workers of a group: pressure only when none has headroom. */
  private lowestUsage(ws: readonly WorkerInfo[]): number {
    let lowest = Infinity;
    for (const w of ws) {
      if (!isCandidate(this.table, w)) continue;
      const u = this.table.peek(w.slot, Field.TokenUsagePermille) / 1000;
      if (u < lowest) lowest = u;
    }
    return lowest === Infinity ? 0 : lowest;
  }
}

/**
 * Parse `--worker-groups`: `URL=multi,URL=single` pairs (commas or whitespace), a JSON object
 * {"URL": "multi"}, or (from a config file) the object itself. `route4` is accepted for multi (seed 002).
 */
export function parseWorkerGroups(raw: string | Readonly<Record<string, unknown>> | undefined): Map<string, WorkerGroup> {
  const out = new Map<string, WorkerGroup>();
  const fail = (m: string): Error => new SwitchyardError('invalid_request', m);
  for (const [key, g] of parseWorkerUrlMap(raw, '--worker-groups', 'group', fail)) {
    const group = g === 'route4' ? 'multi' : g;
    if (group !== 'single' && group !== 'multi') throw fail(`--worker-groups: group of ${key} must be single or multi, got ${JSON.stringify(g)}`);
    out.set(key, group);
  }
  return out;
}

/**
 * The groups map from the option's value, reading an object-valued `worker-groups` key from the config
 * file itself (the option parser flattens objects to "[object Object]").
 */
export function resolveWorkerGroups(raw: string | undefined, configPath: string | undefined): Map<string, WorkerGroup> {
  if (raw !== undefined && raw !== '[object Object]') return parseWorkerGroups(raw);
  if (configPath === undefined) return parseWorkerGroups(undefined);
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(configPath, 'utf8'));
  } catch (err) {
    throw new SwitchyardError('invalid_request', `cannot read config file ${configPath}: ${(err as Error).message}`);
  }
  if (parsed === null || typeof parsed !== 'object') return new Map();
  const o = parsed as Record<string, unknown>;
  const v = o['worker-groups'] ?? o['worker_groups'] ?? o['workerGroups'];
  if (v === undefined) return new Map();
  if (typeof v === 'string') return parseWorkerGroups(v);
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new SwitchyardError('invalid_request', `config file ${configPath}: worker-groups must be an object {"URL": "multi"}`);
  return parseWorkerGroups(v as Record<string, unknown>);
}

/** Membership entries with their group (plain copies: safe to send to policy actors). */
export function withGroups(ws: readonly WorkerInfo[], groups: ReadonlyMap<string, WorkerGroup>): WorkerInfo[] {
  return ws.map((w) => ({ slot: w.slot, generation: w.generation, url: w.url, nodeId: w.nodeId, group: groups.get(w.url) ?? 'single' }));
}
