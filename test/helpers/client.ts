/** Minimal HTTP client for tests: full control over aborts and raw bytes. */
import http from 'node:http';

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<RawResponse> {
  return send('POST', url, typeof body === 'string' ? body : JSON.stringify(body), { 'content-type': 'application/json', ...headers });
}

export function get(url: string, headers: Record<string, string> = {}): Promise<RawResponse> {
  return send('GET', url, undefined, headers);
}

export function send(method: string, url: string, body: string | Buffer | undefined, headers: Record<string, string> = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (body !== undefined) req.end(body);
    else req.end();
  });
}

/** Start a streaming request and abort it after `afterChunks` chunks arrived; resolves with what was read. */
export function postAndAbort(url: string, body: unknown, afterChunks: number): Promise<{ status: number; chunks: number }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', headers: { 'content-type': 'application/json' }, agent: false }, (res) => {
      let chunks = 0;
      res.on('data', () => {
        chunks++;
        if (chunks >= afterChunks) {
          req.destroy();
          resolve({ status: res.statusCode ?? 0, chunks });
        }
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, chunks }));
      res.on('error', () => undefined);
    });
    req.on('error', (err) => {
      if ((err as NodeJS.ErrnoException).code !== 'ECONNRESET') reject(err);
    });
    req.end(JSON.stringify(body));
  });
}

export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}
