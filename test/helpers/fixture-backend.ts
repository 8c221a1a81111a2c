/**
 * A scriptable SGLang-shaped backend for router tests (node:http, so it is independent of the code under
 * test). Records what it received; behaviour per request is set by the test.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  json: Record<string, unknown> | undefined;
}

export interface FixtureBackend {
  url: string;
  port: number;
  received: ReceivedRequest[];
  /** Requests whose client connection closed before we finished. */
  closedEarly: number;
  open: number;
  /** Chunks per stream and the delay between them. */
  streamChunks: number;
  chunkDelayMs: number;
  /** Override the answer to data requests. */
  handler: ((req: ReceivedRequest, res: http.ServerResponse) => void) | undefined;
  healthy: boolean;
  /** Delay before answering /health (simulates a slow probe path). */
  healthDelayMs: number;
  close(): Promise<void>;
  /** Stop listening and destroy open sockets (simulates a crash). */
  kill(): Promise<void>;
}

export async function startFixtureBackend(port = 0, name = 'fixture'): Promise<FixtureBackend> {
  const sockets = new Set<import('node:net').Socket>();
  const fb: FixtureBackend = {
    url: '',
    port: 0,
    received: [],
    closedEarly: 0,
    open: 0,
    streamChunks: 5,
    chunkDelayMs: 2,
    handler: undefined,
    healthy: true,
    healthDelayMs: 0,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
    kill: async () => {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      let json: Record<string, unknown> | undefined;
      try {
        json = JSON.parse(body) as Record<string, unknown>;
      } catch {
        json = undefined;
      }
      const path = req.url ?? '/';
      if (req.method === 'GET' && path === '/health') {
        if (fb.healthDelayMs > 0) setTimeout(() => res.writeHead(fb.healthy ? 200 : 503).end(), fb.healthDelayMs);
        else res.writeHead(fb.healthy ? 200 : 503).end();
        return;
      }
      if (req.method === 'GET' && path === '/get_load') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify([{ dp_rank: 0, num_reqs: 0, num_waiting_reqs: 0, num_tokens: 0 }]));
        return;
      }
      if (req.method === 'GET') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ model_path: name, path }));
        return;
      }
      const rec: ReceivedRequest = { method: req.method ?? '', path, headers: req.headers, body, json };
      fb.received.push(rec);
      if (path === '/flush_cache') {
        res.writeHead(200).end('ok');
        return;
      }
      if (fb.handler !== undefined) return fb.handler(rec, res);
      answer(fb, rec, res, name);
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
  fb.port = (server.address() as AddressInfo).port;
  fb.url = `http://127.0.0.1:${fb.port}`;
  return fb;
}

function answer(fb: FixtureBackend, rec: ReceivedRequest, res: http.ServerResponse, name: string): void {
  const rid = (rec.json?.['rid'] as string | undefined) ?? (rec.headers['x-request-id'] as string | undefined) ?? 'none';
  const meta = (n: number, done: boolean) => ({ id: rid, prompt_tokens: 10, completion_tokens: n, cached_tokens: 3, finish_reason: done ? { type: 'length', length: n } : null, served_by: name });
  if (rec.json?.['stream'] !== true) {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ text: 'hello', output_ids: [1, 2], meta_info: meta(2, true) }));
    return;
  }
  fb.open++;
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  let i = 0;
  let finished = false;
  res.on('close', () => {
    if (!finished) fb.closedEarly++;
    fb.open--;
    clearTimeout(timer);
  });
  let timer: NodeJS.Timeout;
  const next = () => {
    i++;
    const done = i === fb.streamChunks;
    res.write(`data: ${JSON.stringify({ text: 'x'.repeat(i), meta_info: meta(i, done) })}\n\n`);
    if (done) {
      finished = true;
      res.end('data: [DONE]\n\n');
      return;
    }
    timer = setTimeout(next, fb.chunkDelayMs);
  };
  timer = setTimeout(next, fb.chunkDelayMs);
}
