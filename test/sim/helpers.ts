/** Small HTTP helpers for the simulator's tests (real sockets, no mocks). */
import http from 'node:http';

export interface JsonResponse<T = any> {
  status: number;
  headers: Headers;
  body: T;
  text: string;
}

export async function getJson<T = any>(url: string): Promise<JsonResponse<T>> {
  const res = await fetch(url);
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, body: text.length > 0 && res.headers.get('content-type')?.includes('json') ? JSON.parse(text) : (undefined as T) };
}

export async function postJson<T = any>(url: string, body: unknown, init: RequestInit = {}): Promise<JsonResponse<T>> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    ...init,
  });
  const text = await res.text();
  let parsed: T = undefined as T;
  if (res.headers.get('content-type')?.includes('json') && text.length > 0) parsed = JSON.parse(text);
  return { status: res.status, headers: res.headers, text, body: parsed };
}

/** Posts and reads an SSE stream to the end; returns the parsed `data:` payloads (without [DONE]) and whether [DONE] came last. */
export async function postStream(url: string, body: unknown): Promise<{ status: number; headers: Headers; events: any[]; done: boolean; raw: string }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const raw = await res.text();
  return { status: res.status, headers: res.headers, raw, ...parseSse(raw) };
}

export function parseSse(raw: string): { events: any[]; done: boolean } {
  const events: any[] = [];
  let done = false;
  for (const block of raw.split('\n\n')) {
    if (block.trim() === '') continue;
    if (!block.startsWith('data: ')) throw new Error(`not an SSE data block: ${JSON.stringify(block.slice(0, 80))}`);
    const payload = block.slice(6);
    if (payload === '[DONE]') {
      done = true;
      continue;
    }
    if (done) throw new Error('data after [DONE]');
    events.push(JSON.parse(payload));
  }
  return { events, done };
}

/** Parses the Prometheus text into name{labels} -> value. */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    out.set(line.slice(0, sp), Number(line.slice(sp + 1)));
  }
  return out;
}

export async function metrics(url: string): Promise<Map<string, number>> {
  const res = await fetch(`${url}/metrics`);
  return parseMetrics(await res.text());
}

/** The value of an unlabelled-by-bucket series, e.g. metric(m, 'sglang:time_to_first_token_seconds_sum'). */
export function metric(m: Map<string, number>, name: string): number {
  for (const [k, v] of m) if (k.startsWith(name + '{')) return v;
  throw new Error(`metric ${name} not found`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `check` until it returns true (or throws after `timeoutMs`). */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** A raw request with node:http (its own connection) that can be aborted; resolves on response end or error. */
export function rawRequest(
  url: string,
  method: string,
  body: string | Buffer | undefined,
  headers: Record<string, string> = {},
): { promise: Promise<{ status: number; body: string; error?: string }>; abort: () => void; firstByte: Promise<void> } {
  let req!: http.ClientRequest;
  let onFirst!: () => void;
  const firstByte = new Promise<void>((r) => (onFirst = r));
  const promise = new Promise<{ status: number; body: string; error?: string }>((resolve) => {
    req = http.request(url, { method, headers: { 'content-type': 'application/json', ...headers }, agent: false }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        if (data.length === 0) onFirst();
        data += d;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: data }));
      res.on('error', (e) => resolve({ status: res.statusCode ?? 0, body: data, error: e.message }));
      res.on('close', () => resolve({ status: res.statusCode ?? 0, body: data, error: 'closed' }));
    });
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ status: 0, body: '', error: e.code ?? e.message }));
    if (body !== undefined) req.write(body);
    req.end();
  });
  return { promise, abort: () => req.destroy(), firstByte };
}

/** A prompt of exactly `tokens` fake-tokenizer tokens (4 characters each), distinct per `seed`. */
export function promptOf(tokens: number, seed = 0): string {
  let s = '';
  let i = seed * 7919;
  while (s.length < tokens * 4) s += `w${(i++).toString(36).padStart(3, '0')}`;
  return s.slice(0, tokens * 4);
}
