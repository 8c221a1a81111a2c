/**
 * Many concurrent open streams through the router: what each costs in router memory, and what the router
 * adds to every token's latency, against the same streams straight to the backend.
 *
 * Setup (all on this machine): a paced SSE backend (this file run as a program: `node open-streams.js
 * backend`) listening on 8 ports (the router's upstream pool keeps at most 2,048 connections per worker,
 * so 10k streams need several workers), sending one small SGLang-shaped event per stream every
 * SWITCHYARD_BENCH_STREAM_INTERVAL_MS (default 5000 ms, phases spread so the events of 10k streams form a
 * steady flow of 2,000 events/s, not a burst), each event stamped with its send time (epoch ms, sub-ms). A client thread in
 * this process holds N streams open with raw sockets and records, for every event, its delay (arrival -
 * send stamp) and its gap since the stream's previous event (ITL).
 *
 * Rounds (ctx.runs), interleaved: N streams direct to the backend (opened, settled 1 s, measured for
 * ctx.durationSec, closed), then N streams through `switchyard serve --policy round_robin` (defaults
 * otherwise: stats and request tracking on) to the same backend. Router memory is its RSS (/proc) idle
 * (after a warm-up of 200 streams) and with the N streams open.
 *
 * N = SWITCHYARD_BENCH_OPEN_STREAMS (default 10,000), reduced to what the open-file limit allows: the
 * router holds two sockets per stream (client and upstream), so with a limit of 20,000 descriptors (this
 * machine's hard limit) it can hold about 9,800. The figures say which N was measured.
 *
 * Figures (T = direct | router; medians over the rounds):
 *   open_streams.count                   streams held open (N)
 *   open_streams.T.delay_p50_ms / p99    event delay, backend write -> client read
 *   open_streams.T.itl_p99_ms            99th percentile gap between a stream's consecutive events
 *   open_streams.added_delay_p50_ms/p99  router delay - direct delay, same round (what the hop adds)
 *   open_streams.added_itl_p99_ms        router ITL p99 - direct ITL p99, same round
 *   open_streams.router.rss_idle_mb      router RSS before the streams (after warm-up)
 *   open_streams.router.rss_open_mb      router RSS with N streams open
 *   open_streams.router.rss_per_stream_kb (open - idle) / N
 *   open_streams.router.cpu_pct          router CPU (all its threads) while relaying, % of one core
 *   open_streams.T.events_per_s          events received per second (N x 1000 / interval when keeping up)
 */
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { parseOptions, HelpRequested, OptionsError, type OptionSpec } from '../../src/config/options.js';
import { createApp, Exchange, listen, parseContentLength, parseJsonObject, type HttpRequest, type HttpResponse } from '../../src/frontend/http.js';
import { SwitchyardError } from '../../src/errors.js';
import { freePort, start, waitForHttp, waitForLine, type ManagedProcess } from '../lib/processes.js';
import { reportSkip, ScenarioSkipped, summarize, type BenchContext, type Figure, type Scenario } from '../lib/scenario.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const SELF = fileURLToPath(import.meta.url);
const HOST = '127.0.0.1';
const BACKEND_PORTS = 8;
const TICK_MS = 10;
const READY_TIMEOUT_MS = 30_000;
const WARMUP_STREAMS = 200;
/**
 * 5 s between a stream's events: 2,000 events/s at 10k streams. At 1 s (10k events/s) the router, sharing
 * this 2-core machine with the backend, the client and other work, saturated near 8,800 streams: its
 * event loop fell behind, its health checks timed out and it marked the backend unhealthy (503s). The
 * scenario measures the cost of holding streams; chunks_per_s in e2e-proxy measures relaying throughput.
 */
const DEFAULT_INTERVAL_MS = 5000;
/** Descriptors a router needs besides two per stream (listen sockets, pools' spare, threads, logs). */
const FD_RESERVE = 400;

// ---------------------------------------------------------------------------------------------------
// The paced backend (a separate process)

const BACKEND_SPECS = [
  { name: 'host', type: 'string', default: HOST, env: false, help: 'address to listen on' },
  { name: 'ports', type: 'integer', default: BACKEND_PORTS, min: 1, max: 64, env: false, help: 'ports to listen on (each a worker to the router)' },
  { name: 'interval-ms', type: 'integer', default: 5000, min: TICK_MS, max: 60_000, env: false, help: 'ms between two events of one stream' },
] as const satisfies readonly OptionSpec[];

interface PacedStream {
  readonly ex: Exchange;
  readonly id: string;
  sent: number;
  /** Waiting for the socket to drain: events due meanwhile are skipped (the delay figures show it). */
  blocked: boolean;
}

async function runBackend(argv: string[]): Promise<number> {
  let o;
  try {
    o = parseOptions(BACKEND_SPECS, argv, { command: 'open-streams backend', summary: 'Paced SSE backend for the open-streams benchmark.', env: {} });
  } catch (err) {
    if (err instanceof HelpRequested) {
      process.stdout.write(err.text + '\n');
      return 0;
    }
    if (err instanceof OptionsError) {
      process.stderr.write(`open-streams backend: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const phases = Math.max(1, Math.round(o.intervalMs / TICK_MS));
  const buckets: Set<PacedStream>[] = Array.from({ length: phases }, () => new Set());
  let nextPhase = 0;
  let seq = 0;

  const event = (st: PacedStream): string => {
    st.sent++;
    return `data: {"text":" tok","meta_info":{"id":"${st.id}","completion_tokens":${st.sent},"sent_at":${(performance.timeOrigin + performance.now()).toFixed(3)}}}\n\n`;
  };
  const send = (st: PacedStream): void => {
    if (st.blocked || st.ex.aborted) return;
    st.ex.res.cork(() => {
      if (!st.ex.started) {
        st.ex.res.writeStatus('200 OK');
        st.ex.res.writeHeader('content-type', 'text/event-stream');
        st.ex.res.writeHeader('cache-control', 'no-cache');
        st.ex.started = true;
      }
      if (!st.ex.res.write(event(st))) st.blocked = true;
    });
  };

  const generate = (res: HttpResponse, req: HttpRequest): void => {
    const ex = new Exchange(res);
    ex.readBody(1 << 16, parseContentLength(req.getHeader('content-length')), (err, body) => {
      if (err !== null) return;
      const parsed = parseJsonObject(body);
      if (parsed instanceof SwitchyardError) return ex.error(parsed);
      if (parsed['stream'] !== true) return ex.json(200, { text: ' tok', meta_info: { id: 'open-streams', prompt_tokens: 8, completion_tokens: 1, cached_tokens: 0, finish_reason: { type: 'length', length: 1 } } });
      const bucket = buckets[nextPhase] as Set<PacedStream>;
      nextPhase = (nextPhase + 1) % phases;
      const st: PacedStream = { ex, id: `s${seq++}`, sent: 0, blocked: false };
      bucket.add(st);
      ex.onAbort = () => bucket.delete(st);
      res.onWritable(() => {
        st.blocked = false;
        return true;
      });
      send(st); // the first token at once
    });
  };

  const app = createApp();
  app.post('/generate', generate);
  const ok = (res: HttpResponse): void => new Exchange(res).text(200, '', 'text/plain');
  app.get('/health', ok);
  app.get('/health_generate', ok);
  app.get('/get_load', (res) => new Exchange(res).json(200, [{ dp_rank: 0, num_reqs: 0, num_waiting_reqs: 0, num_tokens: 0 }]));
  app.get('/get_model_info', (res) => new Exchange(res).json(200, { model_path: 'open-streams', tokenizer_path: 'open-streams', is_generation: true }));
  app.get('/get_server_info', (res) => new Exchange(res).json(200, { model_path: 'open-streams', max_running_requests: 1 << 20, version: 'open-streams' }));
  app.get('/v1/models', (res) => new Exchange(res).json(200, { object: 'list', data: [{ id: 'open-streams', object: 'model', created: 0, owned_by: 'switchyard-bench' }] }));
  app.any('/*', (res, req) => new Exchange(res).fail('not_found', `${req.getMethod().toUpperCase()} ${req.getUrl()} is not served here`));

  const ports: number[] = [];
  for (let i = 0; i < o.ports; i++) ports.push((await listen(app, o.host, 0)).port);

  let phase = 0;
  let due = performance.now();
  const tick = (): void => {
    // Catch up on missed ticks (a loaded machine): each phase's streams get their event once per round.
    const t = performance.now();
    while (due <= t) {
      for (const st of buckets[phase] as Set<PacedStream>) send(st);
      phase = (phase + 1) % phases;
      due += TICK_MS;
    }
    setTimeout(tick, Math.max(0, due - performance.now()));
  };
  tick();
  const stop = (): void => process.exit(0);
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdout.write(JSON.stringify({ ready: true, ports, pid: process.pid }) + '\n');
  return -1;
}

// ---------------------------------------------------------------------------------------------------
// The client (a worker thread of the scenario process; node:net only, eval'd CommonJS)

const CLIENT_THREAD = `
const net = require('node:net');
const { parentPort } = require('node:worker_threads');
const MARK = '"sent_at":';
let streams = [];
let recording = false;
let delays = [];
let gaps = [];
let events = 0;
let closedEarly = 0;
let closing = false;
const now = () => performance.timeOrigin + performance.now();

function onData(st, d) {
  const t = now();
  let text = st.pending + d.toString('latin1');
  if (!st.ok) {
    if (text.length < 12) { st.pending = text; return; }
    if (!text.startsWith('HTTP/1.1 200')) { st.settle(false, text.slice(0, 200)); st.s.destroy(); return; }
    st.ok = true;
    st.settle(true);
  }
  let at = 0;
  let cut = -1;
  for (;;) {
    const i = text.indexOf(MARK, at);
    if (i === -1) break;
    const end = text.indexOf('}', i);
    if (end === -1) { cut = i; break; }
    const sent = Number(text.slice(i + MARK.length, end));
    if (recording) {
      delays.push(t - sent);
      if (st.last > 0) gaps.push(t - st.last);
      events++;
    }
    st.last = t;
    at = end;
  }
  st.pending = cut >= 0 ? text.slice(cut) : text.slice(Math.max(at, text.length - MARK.length));
}

function open(msg) {
  const t0 = Date.now();
  let started = 0, opened = 0, failed = 0, inflight = 0, firstError = '';
  const request = Buffer.from(msg.request);
  const progress = setInterval(() => parentPort.postMessage({ kind: 'progress', started, opened, failed, firstError, ms: Date.now() - t0 }), 10000);
  const done = () => {
    clearInterval(progress);
    parentPort.postMessage({ kind: 'opened', opened, failed, firstError, ms: Date.now() - t0 });
  };
  const next = () => {
    while (inflight < 256 && started < msg.count) {
      const port = msg.ports[started % msg.ports.length];
      started++;
      inflight++;
      const s = net.connect(port, '127.0.0.1');
      const st = { s, ok: false, settled: false, pending: '', last: 0 };
      st.settle = (ok, why) => {
        if (st.settled) return;
        st.settled = true;
        inflight--;
        if (ok) opened++; else { failed++; if (firstError === '') firstError = why || 'closed'; }
        if (opened + failed === msg.count) done(); else next();
      };
      s.setNoDelay(true);
      s.on('connect', () => s.write(request));
      s.on('data', (d) => onData(st, d));
      s.on('error', (e) => st.settle(false, e.code || e.message));
      s.on('close', () => {
        if (!st.settled) st.settle(false, 'closed before a response');
        else if (st.ok && !closing) closedEarly++;
      });
      streams.push(st);
    }
  };
  next();
}

parentPort.on('message', (msg) => {
  if (msg.kind === 'open') { closing = false; closedEarly = 0; open(msg); }
  else if (msg.kind === 'record') {
    delays = []; gaps = []; events = 0; recording = true;
    const t0 = now();
    setTimeout(() => {
      recording = false;
      parentPort.postMessage({ kind: 'recorded', delays: Float64Array.from(delays), gaps: Float64Array.from(gaps), events, seconds: (now() - t0) / 1000, closedEarly, open: streams.filter((s) => s.ok && !s.s.destroyed).length });
    }, msg.ms);
  } else if (msg.kind === 'close') {
    closing = true;
    for (const st of streams) st.s.destroy();
    streams = [];
    parentPort.postMessage({ kind: 'closed' });
  }
});
`;

interface OpenProgress {
  kind: 'progress';
  started: number;
  opened: number;
  failed: number;
  firstError: string;
  ms: number;
}

type ClientReply =
  | { kind: 'opened'; opened: number; failed: number; firstError: string; ms: number }
  | { kind: 'recorded'; delays: Float64Array; gaps: Float64Array; events: number; seconds: number; closedEarly: number; open: number }
  | { kind: 'closed' };

class Client {
  private readonly worker = new Worker(CLIENT_THREAD, { eval: true });
  private waiting: { resolve: (m: ClientReply) => void; reject: (err: Error) => void } | undefined;
  private failure: Error | undefined;

  constructor(private readonly onProgress: (p: OpenProgress) => void) {
    this.worker.on('message', (m: ClientReply | OpenProgress) => {
      if (m.kind === 'progress') return this.onProgress(m);
      const w = this.waiting;
      this.waiting = undefined;
      w?.resolve(m);
    });
    this.worker.on('error', (err) => {
      this.failure = err;
      const w = this.waiting;
      this.waiting = undefined;
      w?.reject(new Error(`client thread failed: ${err.message}`));
    });
  }

  private ask<K extends ClientReply['kind']>(msg: object, kind: K, timeoutMs: number): Promise<Extract<ClientReply, { kind: K }>> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`client thread: no '${kind}' within ${timeoutMs} ms`)), timeoutMs);
      this.waiting = {
        resolve: (m) => {
          clearTimeout(timer);
          if (m.kind !== kind) reject(new Error(`client thread answered '${m.kind}', expected '${kind}'`));
          else resolve(m as Extract<ClientReply, { kind: K }>);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      this.worker.postMessage(msg);
    });
  }

  open(ports: readonly number[], count: number, request: string): Promise<Extract<ClientReply, { kind: 'opened' }>> {
    // Opening is slow on a loaded machine (the router opened ~260 streams/s here): allow 50 ms per stream.
    return this.ask({ kind: 'open', ports, count, request }, 'opened', 30_000 + 50 * count);
  }
  record(ms: number): Promise<Extract<ClientReply, { kind: 'recorded' }>> {
    return this.ask({ kind: 'record', ms }, 'recorded', ms + 30_000);
  }
  async close(): Promise<void> {
    await this.ask({ kind: 'close' }, 'closed', 30_000);
  }
  async terminate(): Promise<void> {
    await this.worker.terminate();
  }
}

// ---------------------------------------------------------------------------------------------------
// Measuring

/** The soft limit on open files (what children inherit), from /proc/self/limits. */
export function openFileLimit(limits = readFileSync('/proc/self/limits', 'utf8')): number {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(limits);
  if (m === null || m[1] === 'unlimited') return Number.POSITIVE_INFINITY;
  return Number(m[1]);
}

/** Streams to hold: what was asked, reduced so the router's two sockets per stream fit the fd limit. */
export function streamCount(requested: number, fdLimit: number): number {
  return Math.max(0, Math.min(requested, Math.floor((fdLimit - FD_RESERVE) / 2)));
}

function rssMb(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (m === null) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) / 1024;
}

/** CPU seconds (user + system, all threads) of a process, from /proc/PID/stat (USER_HZ = 100). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function percentile(values: Float64Array, p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length - 1) * p))] as number;
}

function envInt(name: string, fallback: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name} must be an integer >= ${min}, got '${raw}'`);
  return n;
}

function httpPost(port: number, path: string, body: string): string {
  return `POST ${path} HTTP/1.1\r\nHost: ${HOST}:${port}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

interface Round {
  delayP50: number;
  delayP99: number;
  itlP99: number;
  eventsPerSec: number;
}

async function measureTarget(client: Client, ctx: BenchContext, label: string, ports: readonly number[], count: number, body: string): Promise<Round> {
  const o = await client.open(ports, count, httpPost(ports[0] as number, '/generate', body));
  if (o.failed > count * 0.01) {
    await client.close();
    throw new Error(`${label}: ${o.failed} of ${count} streams failed to open (first: ${o.firstError})`);
  }
  ctx.log(`${label}: ${o.opened} streams open in ${(o.ms / 1000).toFixed(1)} s${o.failed > 0 ? ` (${o.failed} failed: ${o.firstError})` : ''}`);
  await new Promise((r) => setTimeout(r, 1000)); // settle: every stream past its first event
  const rec = await client.record(ctx.durationSec * 1000);
  await client.close();
  if (rec.closedEarly > count * 0.01) throw new Error(`${label}: ${rec.closedEarly} streams closed during the measurement`);
  const round: Round = {
    delayP50: percentile(rec.delays, 0.5),
    delayP99: percentile(rec.delays, 0.99),
    itlP99: percentile(rec.gaps, 0.99),
    eventsPerSec: rec.events / rec.seconds,
  };
  ctx.log(`${label}: ${rec.events} events in ${rec.seconds.toFixed(1)} s (${round.eventsPerSec.toFixed(0)}/s), delay p50 ${round.delayP50.toFixed(2)} ms p99 ${round.delayP99.toFixed(2)} ms, ITL p99 ${round.itlP99.toFixed(1)} ms`);
  return round;
}

async function startRouter(backendPorts: readonly number[]): Promise<{ proc: ManagedProcess; port: number }> {
  let last: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort(HOST);
    const metricsPort = await freePort(HOST);
    if (metricsPort === port) continue;
    const args = [join(ROOT, 'bin', 'switchyard.js'), 'serve', '--host', HOST, '--port', String(port), '--prometheus-host', HOST, '--prometheus-port', String(metricsPort), '--worker-urls', ...backendPorts.map((p) => `http://${HOST}:${p}`), '--policy', 'round_robin', '--log-level', 'warn'];
    const proc = start('router', process.execPath, args, { cwd: ROOT, echoStderr: true });
    try {
      await waitForHttp(`http://${HOST}:${port}/readiness`, { timeoutMs: READY_TIMEOUT_MS, proc });
      return { proc, port };
    } catch (err) {
      last = err;
      await proc.stop();
    }
  }
  throw new Error(`router did not start: ${(last as Error).message}`);
}

const scenario: Scenario = {
  name: 'open-streams',
  description: '10k concurrent open SSE streams direct vs through the router: router RSS per stream, added event delay and ITL, router CPU',
  async run(ctx: BenchContext): Promise<Figure[]> {
    const requested = envInt('SWITCHYARD_BENCH_OPEN_STREAMS', 10_000, 1);
    const intervalMs = envInt('SWITCHYARD_BENCH_STREAM_INTERVAL_MS', DEFAULT_INTERVAL_MS, TICK_MS);
    const fdLimit = openFileLimit();
    const count = streamCount(requested, fdLimit);
    if (count < 100) throw new ScenarioSkipped(`the open-file limit (${fdLimit}) leaves room for only ${count} streams through a router`);
    if (count < requested) ctx.log(`holding ${count} streams, not ${requested}: the router needs two descriptors per stream and the open-file limit is ${fdLimit}`);
    if (!existsSync(join(ROOT, 'dist', 'src', 'cli', 'serve.js'))) throw new ScenarioSkipped('router not built yet (dist/src/cli/serve.js is missing)');

    const procs: ManagedProcess[] = [];
    const client = new Client((p) => ctx.log(`opening: ${p.opened} open, ${p.failed} failed, ${p.started - p.opened - p.failed} pending after ${(p.ms / 1000).toFixed(0)} s${p.firstError === '' ? '' : ` (first error: ${p.firstError})`}`));
    try {
      const backend = start('backend', process.execPath, [SELF, 'backend', '--host', HOST, '--ports', String(BACKEND_PORTS), '--interval-ms', String(intervalMs)], { echoStderr: true });
      procs.push(backend);
      const ready = await waitForLine(backend, /^\{"ready":true,"ports":\[([\d,]+)\]/, READY_TIMEOUT_MS);
      const backendPorts = (ready[1] as string).split(',').map(Number);
      const router = await startRouter(backendPorts);
      procs.push(router.proc);
      ctx.log(`backend ports ${backendPorts.join(',')} (pid ${backend.pid}); router :${router.port} (pid ${router.proc.pid}); ${count} streams, an event every ${intervalMs} ms each`);

      const body = JSON.stringify({ text: 'Switchyard open-streams benchmark.', sampling_params: { max_new_tokens: 1_000_000, temperature: 0 }, stream: true });
      // Warm the router's paths (and its upstream pools) before taking its idle RSS.
      const warm = await client.open([router.port], WARMUP_STREAMS, httpPost(router.port, '/generate', body));
      if (warm.failed > 0) throw new Error(`router warm-up: ${warm.failed} of ${WARMUP_STREAMS} streams failed (first: ${warm.firstError})`);
      await new Promise((r) => setTimeout(r, 1000));
      await client.close();
      await new Promise((r) => setTimeout(r, 1500));
      const rssIdle = rssMb(router.proc.pid);

      const direct: Round[] = [];
      const routed: Round[] = [];
      const rssOpen: number[] = [];
      const cpuPct: number[] = [];
      for (let r = 1; r <= ctx.runs; r++) {
        direct.push(await measureTarget(client, ctx, `round ${r}/${ctx.runs} direct`, backendPorts, count, body));
        await new Promise((res) => setTimeout(res, 1000));
        const cpu0 = cpuSeconds(router.proc.pid);
        const t0 = performance.now();
        const measured = measureTarget(client, ctx, `round ${r}/${ctx.runs} router`, [router.port], count, body);
        // RSS with every stream open: sampled during the measurement (the client closes them at its end).
        let peak = 0;
        const sampler = setInterval(() => {
          try {
            peak = Math.max(peak, rssMb(router.proc.pid));
          } catch {
            // the router is gone: the measurement fails on its own, with the reason
          }
        }, 250);
        try {
          routed.push(await measured);
        } finally {
          clearInterval(sampler);
        }
        cpuPct.push(((cpuSeconds(router.proc.pid) - cpu0) / ((performance.now() - t0) / 1000)) * 100);
        rssOpen.push(peak);
        ctx.log(`round ${r}/${ctx.runs} router RSS ${rssIdle.toFixed(0)} MB idle, ${peak.toFixed(0)} MB with ${count} streams`);
        await new Promise((res) => setTimeout(res, 1000));
      }

      const fig = (name: string, values: readonly number[], unit: string, better: Figure['better'], note: string): Figure => {
        const { median, spread } = summarize(values);
        return { name: `open_streams.${name}`, value: Number(median.toPrecision(4)), unit, better, spread: Number(spread.toPrecision(3)), note };
      };
      const perRound = (a: readonly Round[], b: readonly Round[], k: keyof Round): number[] => a.map((x, i) => x[k] - (b[i] as Round)[k]);
      const load = `${count} streams, an event every ${intervalMs} ms each, ${ctx.durationSec} s x ${ctx.runs} round(s)`;
      const figures: Figure[] = [{ name: 'open_streams.count', value: count, unit: 'streams', better: 'higher', note: count < requested ? `${requested} asked; open-file limit ${fdLimit}` : 'as asked' }];
      for (const [t, rounds] of [['direct', direct], ['router', routed]] as const) {
        figures.push(fig(`${t}.delay_p50_ms`, rounds.map((x) => x.delayP50), 'ms', 'lower', `backend write -> client read; ${load}`));
        figures.push(fig(`${t}.delay_p99_ms`, rounds.map((x) => x.delayP99), 'ms', 'lower', 'backend write -> client read'));
        figures.push(fig(`${t}.itl_p99_ms`, rounds.map((x) => x.itlP99), 'ms', 'lower', `gap between a stream's events (${intervalMs} ms sent)`));
        figures.push(fig(`${t}.events_per_s`, rounds.map((x) => x.eventsPerSec), 'events/s', 'higher', `${Math.round((count * 1000) / intervalMs)} sent per second`));
      }
      figures.push(fig('added_delay_p50_ms', perRound(routed, direct, 'delayP50'), 'ms', 'lower', 'router - direct, same round'));
      figures.push(fig('added_delay_p99_ms', perRound(routed, direct, 'delayP99'), 'ms', 'lower', 'router - direct, same round'));
      figures.push(fig('added_itl_p99_ms', perRound(routed, direct, 'itlP99'), 'ms', 'lower', 'router - direct ITL p99, same round'));
      figures.push({ name: 'open_streams.router.rss_idle_mb', value: Number(rssIdle.toPrecision(4)), unit: 'MB', better: 'lower', note: `after ${WARMUP_STREAMS} warm-up streams; stats and tracking on (defaults)` });
      figures.push(fig('router.rss_open_mb', rssOpen, 'MB', 'lower', `peak during the measurement, ${count} streams open`));
      figures.push(fig('router.rss_per_stream_kb', rssOpen.map((x) => ((x - rssIdle) * 1024) / count), 'KB', 'lower', '(open - idle) / streams'));
      figures.push(fig('router.cpu_pct', cpuPct, '%', 'lower', 'router CPU (all threads) while opening and relaying, % of one core'));
      if (count < requested) reportSkip(ctx, `open_streams at ${requested}`, `measured at ${count}: open-file limit ${fdLimit} (router: 2 sockets per stream)`);
      return figures;
    } finally {
      await client.terminate();
      await Promise.all(procs.map((p) => p.stop()));
    }
  },
};

export default scenario;

// Run as the backend program (not when imported by the runner).
if (process.argv[1] !== undefined && process.argv[2] === 'backend' && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  runBackend(process.argv.slice(3)).then(
    (code) => {
      if (code >= 0) process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`open-streams backend: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
