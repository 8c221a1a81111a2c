/**
 * Keep-alive idle races on real sockets: a server that closes a connection exactly its idle timeout after
 * the last response (as uvicorn does with timeout_keep_alive), and clients that send right around that
 * moment. A client that keeps idle connections longer than the server sends, sooner or later, on a
 * connection the server is closing ("other side closed" / ECONNRESET); ours must close first.
 */
import net from 'node:net';
import t from 'tap';
import { Pool } from 'undici';
import { FastPool } from '../../src/proxy/upstream/fast-pool.js';
import type { UpstreamDispatcher } from '../../src/proxy/upstream/types.js';
import { LoadClient, sendAndParse } from '../../src/load/client.js';
import { CLIENT_KEEP_ALIVE_MS } from '../../src/util/keep-alive.js';
import { post } from '../helpers/client.js';
import { startTestRouter } from '../helpers/router.js';
import { delay, okResponse, send, startRawServer, type RawServer } from './upstream-helpers.js';

const BODY = JSON.stringify({ text: 'ok', meta_info: { prompt_tokens: 1, completion_tokens: 1 } });

interface IdleClosingServer {
  raw: RawServer;
  /** Connections the server closed itself because they sat idle for its whole timeout. */
  idleCloses: number;
}

/** Answers every request at once, then closes the connection `idleMs` after the response unless another request came. */
async function startIdleClosingServer(idleMs: number): Promise<IdleClosingServer> {
  const timers = new Map<net.Socket, NodeJS.Timeout>();
  const st: IdleClosingServer = { raw: undefined as unknown as RawServer, idleCloses: 0 };
  st.raw = await startRawServer((socket, req) => {
    const pending = timers.get(socket);
    if (pending !== undefined) clearTimeout(pending);
    else if (req.index === 0) socket.once('close', () => clearTimeout(timers.get(socket)));
    socket.write(okResponse(BODY));
    timers.set(
      socket,
      setTimeout(() => {
        st.idleCloses++;
        socket.destroy();
      }, idleMs),
    );
  });
  return st;
}

/**
 * Open `width` connections at once, then send one request at each offset (ms after those responses
 * arrived) on whatever the client reuses or opens. Non-idempotent POSTs: no client-side retry hides a
 * request written on a closing connection.
 */
async function probeAround(dispatcher: UpstreamDispatcher, width: number, offsets: number[]): Promise<string[]> {
  const failures: string[] = [];
  const warm = await Promise.all(Array.from({ length: width }, () => send(dispatcher)));
  for (const x of warm) if (x.status !== 200) failures.push(`warm-up: ${x.status} ${x.error?.code ?? ''} ${x.error?.message ?? ''}`);
  const results = await Promise.all(
    offsets.map(async (ms) => {
      await delay(ms);
      const x = await send(dispatcher);
      return x.status === 200 ? '' : `at +${ms} ms: ${x.error?.code ?? x.status} ${x.error?.message ?? ''}`;
    }),
  );
  for (const r of results) if (r !== '') failures.push(r);
  return failures;
}

/** Offsets from `from` to `to` ms in `step` ms steps. */
function offsets(from: number, to: number, step: number): number[] {
  const out: number[] = [];
  for (let ms = from; ms <= to; ms += step) out.push(ms);
  return out;
}

for (const kind of ['fast', 'undici'] as const) {
  t.test(`${kind} client: idle timeout below the server's, requests around the server's idle close: 0 failures`, async (t) => {
    // 800 ms server vs 300 ms client: the relation of uvicorn's 5 s and our 4 s, scaled down (with a wider
    // margin: on a loaded machine the client may read a response 100 ms or more after the server wrote it).
    const server = await startIdleClosingServer(800);
    const opts = { connections: 64, keepAliveTimeout: 300, headersTimeout: 10_000, bodyTimeout: 10_000, connectTimeout: 5_000 };
    const pool: UpstreamDispatcher = kind === 'fast' ? new FastPool(server.raw.origin, opts) : (new Pool(server.raw.origin, { ...opts, pipelining: 1 }) as unknown as UpstreamDispatcher);
    t.teardown(async () => {
      await pool.destroy();
      await server.raw.close();
    });
    const failures: string[] = [];
    for (let round = 0; round < 3; round++) failures.push(...(await probeAround(pool, 24, offsets(650, 900, 10))));
    t.same(failures, [], 'every request answered');
    t.equal(server.idleCloses, 0, 'the client always closed an idle connection before the server did');
  });
}

t.test('fast client: a connection idle past its idle time is not reused, even before the ticker closes it', async (t) => {
  const server = await startIdleClosingServer(60_000);
  // 800 ms: the ticker checks every 100 ms and arms the deadline at its next tick, so it closes the
  // connection only 800-1,000 ms after it went idle.
  const pool = new FastPool(server.raw.origin, { connections: 8, keepAliveTimeout: 800 });
  t.teardown(async () => {
    await pool.destroy();
    await server.raw.close();
  });
  t.equal((await send(pool)).status, 200);
  await delay(810);
  t.equal((await send(pool)).status, 200);
  t.equal(server.raw.connections, 2, 'the second request went on a new connection');
  await delay(100);
  t.equal((await send(pool)).status, 200);
  t.equal(server.raw.connections, 2, 'a connection inside its idle time is reused');
});

t.test('defaults: the router in front of a backend that closes idle connections after 5 s (uvicorn), and the load client', async (t) => {
  t.ok(CLIENT_KEEP_ALIVE_MS <= 4_000, 'clients keep idle connections well below 5 s');
  const backend = await startIdleClosingServer(5_000);
  const loadTarget = await startIdleClosingServer(5_000);
  // No retries: a request written on a connection the backend is closing would fail, not be re-sent.
  const router = await startTestRouter(['--worker-urls', backend.raw.origin, '--policy', 'round_robin', '--disable-retries']);
  const load = new LoadClient({ origin: loadTarget.raw.origin, connections: 8, timeoutMs: 10_000, headers: {} });
  t.teardown(async () => {
    await load.destroy();
    await router.close();
    await backend.raw.close();
    await loadTarget.raw.close();
  });
  const generate = { text: 'hi', sampling_params: { max_new_tokens: 1 } };
  const body = Buffer.from(JSON.stringify(generate));
  const viaRouter = async (): Promise<number> => (await post(`${router.url}/generate`, generate)).status;
  const viaLoad = async (): Promise<string> => {
    const o = await sendAndParse(load, '/generate', body, 'r', false);
    return o.status === 200 ? '' : `${o.status} ${o.error}`;
  };
  t.same(await Promise.all(Array.from({ length: 8 }, viaRouter)), Array(8).fill(200), 'warm-up through the router');
  t.same(await Promise.all(Array.from({ length: 8 }, viaLoad)), Array(8).fill(''), 'warm-up of the load client');
  // Around the backend's idle close: 4.8 s to 5.3 s after the warm-up responses.
  const at = offsets(4_800, 5_300, 50);
  const [routed, loaded] = await Promise.all([
    Promise.all(at.map(async (ms) => (await delay(ms), viaRouter()))),
    Promise.all(at.map(async (ms) => (await delay(ms), viaLoad()))),
  ]);
  t.same(routed, Array(at.length).fill(200), 'every routed request answered');
  t.same(loaded, Array(at.length).fill(''), 'every load-client request answered');
  t.equal(backend.idleCloses, 0, "the router's upstream and probe connections were closed before the backend's idle timeout");
  t.equal(loadTarget.idleCloses, 0, "the load client's connections were closed before the server's idle timeout");
});

t.test('a reused connection the backend closes as the request arrives: the request fails without retries, the worker is not ejected', async (t) => {
  // The backend answers the first /generate of each connection and closes the connection when a second one
  // arrives on it (a server closing an idle connection just as the router reuses it). Health probes and
  // other requests are answered normally.
  const backend = await startRawServer((socket, req) => {
    if (req.method === 'POST' && req.path === '/generate' && req.index >= 1) socket.destroy();
    else socket.write(okResponse(BODY));
  });
  const router = await startTestRouter(['--worker-urls', backend.origin, '--policy', 'round_robin', '--disable-retries']);
  t.teardown(async () => {
    await router.close();
    await backend.close();
  });
  const generate = { text: 'hi', sampling_params: { max_new_tokens: 1 } };
  t.equal((await post(`${router.url}/generate`, generate)).status, 200, 'first request: a new connection');
  const second = await post(`${router.url}/generate`, generate);
  t.equal(second.status, 502, 'second request: written on the reused connection the backend closed, no retry allowed');
  t.match(second.body, /upstream_connect_failed/);
  t.equal(router.ctx.registry.healthyCount(), 1, 'the worker was not ejected: its next connection works');
  t.equal((await post(`${router.url}/generate`, generate)).status, 200, 'the next request goes on a fresh connection');
});

t.test('a refused connection still ejects the worker (the marker is only for reused connections)', async (t) => {
  const backend = await startRawServer((socket) => socket.write(okResponse(BODY)));
  const router = await startTestRouter(['--worker-urls', backend.origin, '--policy', 'round_robin', '--disable-retries']);
  t.teardown(async () => {
    await router.close();
  });
  const generate = { text: 'hi', sampling_params: { max_new_tokens: 1 } };
  t.equal((await post(`${router.url}/generate`, generate)).status, 200);
  await backend.close();
  // The pooled connection is gone with the server; the next request opens a new one and is refused.
  let status = 0;
  for (let i = 0; i < 3 && router.ctx.registry.healthyCount() === 1; i++) status = (await post(`${router.url}/generate`, generate)).status;
  t.ok(status === 502 || status === 503, `refused (${status})`);
  t.equal(router.ctx.registry.healthyCount(), 0, 'ejected after the connection failure');
});
