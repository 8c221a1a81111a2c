/** Helpers of the load tests: a CSV reader, an independent percentile, a scripted fake target. */
import { readFileSync, mkdtempSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultWorkload, type LoadOptions, type WorkloadOptions } from '../../src/load/options.js';

export function tempDir(prefix = 'sy-load-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** RFC 4180 CSV (quoted fields with "" escapes) into objects keyed by the header. */
export function readCsv(path: string): Record<string, string>[] {
  const text = readFileSync(path, 'utf8');
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      row.push(field);
      field = '';
    } else if (ch === '\n') {
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
    } else field += ch;
  }
  const header = rows.shift() ?? [];
  return rows.map((r) => Object.fromEntries(header.map((h, i) => [h, r[i] ?? ''])));
}

/** numpy.percentile(values, p) (linear), written independently of src/load/stats.ts. */
export function npPercentile(values: number[], p: number): number {
  const xs = [...values].sort((a, b) => a - b);
  if (xs.length === 0) return NaN;
  const k = ((xs.length - 1) * p) / 100;
  const f = Math.floor(k);
  const c = Math.min(f + 1, xs.length - 1);
  return xs[f]! + (xs[c]! - xs[f]!) * (k - f);
}

export function column(rows: Record<string, string>[], name: string, onlyOk = true): number[] {
  return rows.filter((r) => !onlyOk || r['ok'] === '1').map((r) => r[name] ?? '').filter((v) => v !== '').map(Number);
}

export function loadOpts(url: string, output: string, w: Partial<WorkloadOptions>, extra: Partial<LoadOptions> = {}): LoadOptions {
  return {
    ...defaultWorkload({ dataset: 'random', randomInputLen: 48, randomOutputLen: 12, randomRangeRatio: 0.5, numPrompts: 20, requestRate: 400, warmupRequests: 1, warmupSeconds: 0, ...w }),
    url,
    output,
    target: 'auto',
    gpuFallbackPolicy: 'none',
    numGpus: undefined,
    runId: 'test',
    quiet: true,
    progress: 'off',
    ...extra,
  };
}

export interface FakeTarget {
  url: string;
  port: number;
  maxConcurrent: number;
  received: { path: string; requestId: string; body: Record<string, unknown> }[];
  close(): Promise<void>;
}

/**
 * A scripted SGLang-shaped target on node:http: answers /generate with JSON (no X-SGLang-Worker unless
 * `workerHeader` gives one per request index), /list_workers and /v1/traces/batch as told.
 */
export async function startFakeTarget(o: {
  listWorkers?: unknown;
  workerHeader?: (index: number) => string | undefined;
  traces?: (ids: string[]) => unknown;
  delayMs?: number;
  /** Answer request `index` with this HTTP status and error message instead. */
  failWith?: (index: number) => { status: number; message: string } | undefined;
}): Promise<FakeTarget> {
  let active = 0;
  const state: FakeTarget = { url: '', port: 0, maxConcurrent: 0, received: [], close: () => Promise.resolve() };
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const json = (raw === '' ? {} : JSON.parse(raw)) as Record<string, unknown>;
      const send = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
        res.writeHead(status, { 'content-type': 'application/json', ...headers });
        res.end(JSON.stringify(body));
      };
      if (req.url === '/list_workers') {
        if (o.listWorkers === undefined) return send(404, { error: { message: 'no' } });
        return send(200, o.listWorkers);
      }
      if (req.url === '/v1/traces/batch') {
        if (o.traces === undefined) return send(404, { error: { message: 'no traces here' } });
        return send(200, o.traces((json['request_ids'] as string[]) ?? []));
      }
      if (req.url === '/generate') {
        const rid = String(req.headers['x-request-id'] ?? '');
        state.received.push({ path: req.url, requestId: rid, body: json });
        active++;
        state.maxConcurrent = Math.max(state.maxConcurrent, active);
        const index = Number(rid.split('-').pop());
        const worker = Number.isInteger(index) ? o.workerHeader?.(index) : undefined;
        const failure = Number.isInteger(index) ? o.failWith?.(index) : undefined;
        if (failure !== undefined) {
          active--;
          return send(failure.status, { error: { message: failure.message, type: 'server_error', code: 'internal_error' } });
        }
        const max = Number((json['sampling_params'] as Record<string, unknown> | undefined)?.['max_new_tokens'] ?? 4);
        setTimeout(() => {
          active--;
          send(
            200,
            { text: ' the'.repeat(max), meta_info: { id: rid, prompt_tokens: 10, completion_tokens: max, cached_tokens: 2, finish_reason: { type: 'length', length: max } } },
            worker === undefined ? {} : { 'X-SGLang-Worker': worker },
          );
        }, o.delayMs ?? 0);
        return;
      }
      send(404, { error: { message: `no route ${req.url}` } });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.port = (server.address() as AddressInfo).port;
  state.url = `http://127.0.0.1:${state.port}`;
  state.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return state;
}
