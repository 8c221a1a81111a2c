/**
 * What the load generator learns about its target before and after a run, over the target's own
 * control endpoints:
 * - GET /list_workers (Switchyard and SGLang's router): a router, and its workers ({urls}, and with
 *   Switchyard {workers: [{url, node_id}]}); anything else answering: a single server (seed 004's
 *   node-level test).
 * - GET /v1/models: the model name for the OpenAI API when --model is not given.
 * - POST /flush_cache before the run (--flush-cache).
 * - POST /v1/traces/batch {"request_ids": [...]} after the run, for requests whose response carried no
 *   X-SGLang-Worker header (may 404 on routers that do not offer it: then the next fallback applies).
 */
import { request } from 'undici';
import type { TargetKind } from './options.js';

export interface KnownWorker {
  url: string;
  /** node_id from /list_workers (Switchyard), else undefined. */
  nodeId: number | undefined;
}

export interface TargetInfo {
  kind: 'router' | 'server';
  /** Workers the router listed (empty for a server, or a router that lists none). */
  workers: KnownWorker[];
}

const PROBE_TIMEOUT_MS = 5000;

export class TargetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TargetError';
  }
}

function authHeaders(apiKey: string | undefined): Record<string, string> {
  return apiKey === undefined ? {} : { authorization: `Bearer ${apiKey}` };
}

async function getJson(url: string, apiKey: string | undefined, method: 'GET' | 'POST' = 'GET', body?: unknown): Promise<{ status: number; json: unknown }> {
  const res = await request(url, {
    method,
    headers: { ...authHeaders(apiKey), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? null : JSON.stringify(body),
    headersTimeout: PROBE_TIMEOUT_MS,
    bodyTimeout: PROBE_TIMEOUT_MS,
  });
  const text = await res.body.text();
  let json: unknown;
  try {
    json = text === '' ? undefined : JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.statusCode, json };
}

/** Canonical form of a worker URL for matching header values with listed URLs. */
export function normalizeUrl(raw: string): string {
  try {
    const u = new URL(raw.trim());
    const port = u.port !== '' ? u.port : u.protocol === 'https:' ? '443' : '80';
    const host = u.hostname === 'localhost' ? '127.0.0.1' : u.hostname.toLowerCase();
    return `${u.protocol}//${host}:${port}`;
  } catch {
    return raw.trim().replace(/\/+$/, '');
  }
}

export function portOf(url: string): number {
  try {
    const u = new URL(url);
    return u.port !== '' ? Number(u.port) : u.protocol === 'https:' ? 443 : 80;
  } catch {
    const m = /:(\d+)\/?$/.exec(url);
    return m ? Number(m[1]) : 0;
  }
}

/** Decides router vs server (unless forced) and lists a router's workers. Throws TargetError when unreachable. */
export async function probeTarget(baseUrl: string, kind: TargetKind, apiKey: string | undefined): Promise<TargetInfo> {
  let listed: { status: number; json: unknown };
  try {
    listed = await getJson(`${baseUrl}/list_workers`, apiKey);
  } catch (err) {
    throw new TargetError(`cannot reach ${baseUrl}: ${(err as Error).message}`);
  }
  const workers: KnownWorker[] = [];
  const json = listed.json as { urls?: unknown; workers?: unknown } | undefined;
  const isRouter = listed.status === 200 && json !== undefined && json !== null && (Array.isArray(json.urls) || Array.isArray(json.workers));
  if (isRouter) {
    const nodeIds = new Map<string, number>();
    if (Array.isArray(json.workers)) {
      for (const w of json.workers as unknown[]) {
        if (w === null || typeof w !== 'object') continue;
        const rec = w as Record<string, unknown>;
        const url = typeof rec['url'] === 'string' ? rec['url'] : undefined;
        if (url === undefined) continue;
        const nid = rec['node_id'];
        if (typeof nid === 'number' && Number.isInteger(nid) && nid >= 0) nodeIds.set(normalizeUrl(url), nid);
        else if (!nodeIds.has(normalizeUrl(url))) nodeIds.set(normalizeUrl(url), -1);
      }
    }
    if (Array.isArray(json.urls)) for (const u of json.urls as unknown[]) if (typeof u === 'string' && !nodeIds.has(normalizeUrl(u))) nodeIds.set(normalizeUrl(u), -1);
    for (const [url, nid] of nodeIds) workers.push({ url, nodeId: nid >= 0 ? nid : undefined });
  }
  const resolved = kind === 'auto' ? (isRouter ? 'router' : 'server') : kind;
  return { kind: resolved, workers };
}

/** The first model of GET /v1/models, or undefined. */
export async function firstModel(baseUrl: string, apiKey: string | undefined): Promise<string | undefined> {
  try {
    const { status, json } = await getJson(`${baseUrl}/v1/models`, apiKey);
    if (status !== 200 || json === null || typeof json !== 'object') return undefined;
    const data = (json as { data?: unknown }).data;
    if (!Array.isArray(data) || data.length === 0) return undefined;
    const id = (data[0] as { id?: unknown }).id;
    return typeof id === 'string' ? id : undefined;
  } catch {
    return undefined;
  }
}

export async function flushCache(baseUrl: string, apiKey: string | undefined): Promise<{ ok: boolean; status: number }> {
  try {
    const { status } = await getJson(`${baseUrl}/flush_cache`, apiKey, 'POST');
    return { ok: status < 400, status };
  } catch {
    return { ok: false, status: 0 };
  }
}

export interface TraceAnswer {
  workerUrl: string | undefined;
  nodeId: number | undefined;
}

/**
 * Asks the router which worker served each request. Tolerant of shapes: a list of traces, or
 * {traces|results: list | {id: trace}}, each trace with request_id|id and worker_url|worker|url and
 * optionally node_id|gpu_id. Returns undefined when the endpoint is not offered (404/405/501) or fails.
 */
export async function lookupTraces(baseUrl: string, apiKey: string | undefined, ids: readonly string[], batchSize = 500): Promise<Map<string, TraceAnswer> | undefined> {
  const out = new Map<string, TraceAnswer>();
  for (let i = 0; i < ids.length; i += batchSize) {
    let res: { status: number; json: unknown };
    try {
      res = await getJson(`${baseUrl}/v1/traces/batch`, apiKey, 'POST', { request_ids: ids.slice(i, i + batchSize) });
    } catch {
      return i === 0 ? undefined : out;
    }
    if (res.status >= 400) return i === 0 ? undefined : out;
    collectTraces(res.json, out);
  }
  return out;
}

function collectTraces(json: unknown, out: Map<string, TraceAnswer>): void {
  if (json === null || json === undefined) return;
  const take = (id: string | undefined, t: unknown): void => {
    if (t === null || typeof t !== 'object') return;
    const rec = t as Record<string, unknown>;
    const rid = id ?? (typeof rec['request_id'] === 'string' ? rec['request_id'] : typeof rec['id'] === 'string' ? rec['id'] : undefined);
    if (rid === undefined) return;
    const w = rec['worker_url'] ?? rec['worker'] ?? rec['url'];
    const n = rec['node_id'] ?? rec['gpu_id'];
    const answer: TraceAnswer = {
      workerUrl: typeof w === 'string' && w !== '' ? w : undefined,
      nodeId: typeof n === 'number' && Number.isInteger(n) && n >= 0 ? n : undefined,
    };
    if (answer.workerUrl !== undefined || answer.nodeId !== undefined) out.set(rid, answer);
  };
  const list = Array.isArray(json) ? json : (json as Record<string, unknown>)['traces'] ?? (json as Record<string, unknown>)['results'];
  if (Array.isArray(list)) for (const t of list) take(undefined, t);
  else if (list !== null && typeof list === 'object') for (const [id, t] of Object.entries(list as Record<string, unknown>)) take(id, t);
}
