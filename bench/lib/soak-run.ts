/**
 * The timed soak behind `npm run soak -- --minutes N` (bench/soak.ts): K simulated workers, each a
 * `switchyard sim` process on a fixed port; the router in its own process (bench/lib/soak-router.ts)
 * sampled over IPC for memory and counters; steady Poisson load from this process (streaming and
 * non-streaming, /generate and chat, some client aborts); and faults on a schedule:
 *
 *   kill          SIGKILL a worker process, restart it on the same port at the end of the window;
 *   5xx           the worker answers 503 (POST /sim/faults {fail_rate: 1, status_code: 503});
 *   garbage       the worker answers bytes that are not HTTP ({garbage_rate: 1});
 *   hang          the worker never answers ({hang: true}): the router's --request-timeout-secs ends them;
 *   slow-clients  a few clients stream large answers and read them slowly (router backpressure).
 *
 * Every request ends as ok, aborted (by us), an error (a JSON error or an SSE error event, with its code)
 * or lost (reset, truncated stream, no answer in time). Errors a fault explains are "expected".
 */
import http from 'node:http';
import net from 'node:net';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { Rng } from '../../src/util/rng.js';
import { CLIENT_KEEP_ALIVE_MS } from '../../src/util/keep-alive.js';
import type { RouterMessage, RouterSample } from './soak-router.js';
import {
  FAULT_KINDS,
  formatSoak,
  judge,
  memoryTrend,
  tallyErrors,
  type FaultKind,
  type FaultWindow,
  type LeakCheck,
  type Outcome,
  type RequestRecord,
  type SoakSummary,
} from './soak-report.js';

const BIN = fileURLToPath(new URL('../../../bin/switchyard.js', import.meta.url));
const ROUTER_CHILD = fileURLToPath(new URL('./soak-router.js', import.meta.url));

export interface SoakOptions {
  readonly minutes: number;
  /** Mean arrivals per second (Poisson). */
  readonly rate: number;
  readonly workers: number;
  readonly streamFraction: number;
  /** Share of streams with long answers (1000-3000 tokens). */
  readonly longStreamFraction: number;
  readonly abortFraction: number;
  /** Output lengths are drawn uniformly from [8, maxTokens]. */
  readonly maxTokens: number;
  readonly timeScale: number;
  readonly policy: string;
  readonly sampleSecs: number;
  /** Default: 20% of the run, at most 60 s. */
  readonly warmupSecs?: number | undefined;
  readonly faultEverySecs: number;
  readonly faultSecs: number;
  readonly faults: readonly FaultKind[];
  readonly requestTimeoutSecs: number;
  readonly clientTimeoutSecs: number;
  readonly seed: number;
  readonly maxRssSlopeMbPerMin: number;
  readonly maxHeapSlopeMbPerMin?: number | undefined;
  /** Extra router flags (after the soak's own, so they win). */
  readonly routerArgs: readonly string[];
  readonly log: (message: string) => void;
}

export interface SoakResult {
  readonly summary: SoakSummary;
  readonly text: string;
  readonly samples: readonly RouterSample[];
}

// ------------------------------------------------------------------------------------------ processes

/** A free port below Linux's ephemeral range, so no outgoing connection takes it while its worker is down. */
async function freeFixedPort(taken: Set<number>): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 10_000);
    if (taken.has(port)) continue;
    const free = await new Promise<boolean>((resolve) => {
      const srv = net.createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
    if (free) {
      taken.add(port);
      return port;
    }
  }
  throw new Error('no free port in 20000-29999');
}

class SimProcess {
  proc: ChildProcess | undefined;
  readonly url: string;

  constructor(
    readonly index: number,
    readonly port: number,
    private readonly timeScale: number,
    private readonly seed: number,
  ) {
    this.url = `http://127.0.0.1:${port}`;
  }

  start(): Promise<void> {
    const args = [BIN, 'sim', '--port', String(this.port), '--count', '1', '--time-scale', String(this.timeScale), '--seed', String(this.seed + this.index), '--base-gpu-id', String(this.index), '--log-level', 'info'];
    const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    return new Promise((resolve, reject) => {
      let buf = '';
      const timer = setTimeout(() => reject(new Error(`sim ${this.index} not ready in 60 s: ${buf.slice(-500)}`)), 60_000);
      const onData = (d: Buffer) => {
        if (buf.length < 100_000) buf += d.toString();
        if (buf.includes('"sim.ready"')) {
          clearTimeout(timer);
          proc.stdout!.removeListener('data', onData);
          proc.stderr!.removeListener('data', onData);
          proc.stdout!.resume();
          proc.stderr!.resume();
          resolve();
        }
      };
      proc.stdout!.on('data', onData);
      proc.stderr!.on('data', onData);
      proc.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`sim ${this.index} exited (${code ?? signal}) before it was ready: ${buf.slice(-500)}`));
      });
    });
  }

  /** SIGKILL; resolves once the process is gone. */
  kill(): Promise<number> {
    const proc = this.proc;
    this.proc = undefined;
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(0);
    const pid = proc.pid ?? 0;
    return new Promise((resolve) => {
      proc.once('exit', () => resolve(pid));
      proc.kill('SIGKILL');
    });
  }

  async setFaults(patch: Record<string, unknown>): Promise<void> {
    const body = JSON.stringify(patch);
    await new Promise<void>((resolve, reject) => {
      const req = http.request(`${this.url}/sim/faults`, { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }, agent: false }, (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`POST /sim/faults: ${res.statusCode}`))));
      });
      req.on('error', reject);
      req.end(body);
    });
  }
}

class RouterProcess {
  private readonly proc: ChildProcess;
  private waiting: ((m: RouterMessage) => void)[] = [];
  private readonly stderrTail: string[] = [];
  url = '';
  metricsUrl: string | undefined;

  constructor(args: readonly string[]) {
    this.proc = spawn(process.execPath, [ROUTER_CHILD, ...args], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    this.proc.stderr!.on('data', (d: Buffer) => {
      for (const line of d.toString().split('\n')) {
        if (line.trim() === '') continue;
        this.stderrTail.push(line.length > 400 ? `${line.slice(0, 400)}...` : line);
        if (this.stderrTail.length > 15) this.stderrTail.shift();
      }
    });
    this.proc.on('message', (m: RouterMessage) => {
      const next = this.waiting.shift();
      next?.(m);
    });
  }

  /** Router log lines (warnings and errors) seen last. */
  get log(): readonly string[] {
    return this.stderrTail;
  }

  private next(): Promise<RouterMessage> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the router did not answer in 60 s; its log: ${this.stderrTail.join('\n')}`)), 60_000);
      this.waiting.push((m) => {
        clearTimeout(timer);
        resolve(m);
      });
    });
  }

  async ready(): Promise<void> {
    const m = await this.next();
    if (m.type !== 'ready') throw new Error(`router failed to start: ${m.type === 'error' ? m.message : m.type}`);
    this.url = m.url;
    this.metricsUrl = m.metricsUrl;
  }

  async sample(): Promise<RouterSample> {
    const reply = this.next();
    this.proc.send({ type: 'sample' });
    const m = await reply;
    if (m.type !== 'sample') throw new Error(`unexpected router message ${m.type}`);
    return m;
  }

  async close(): Promise<void> {
    if (this.proc.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => this.proc.once('exit', () => resolve()));
    this.proc.send({ type: 'close' });
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 40_000);
    await exited;
    clearTimeout(timer);
  }
}

// ------------------------------------------------------------------------------------------ load

const WORDS = 'router worker cache prefix token stream batch decode prefill queue latency budget shard replica policy schedule memory tree node fleet'.split(' ');

function phrase(rng: Rng, words: number): string {
  const out: string[] = [];
  for (let i = 0; i < words; i++) out.push(WORDS[rng.int(0, WORDS.length - 1)]!);
  return out.join(' ');
}

interface Request {
  path: string;
  body: string;
  stream: boolean;
  abortAfterMs: number | undefined;
  slow: boolean;
}

/** Reads one request's answer and classifies it. */
function fire(agent: http.Agent, base: string, r: Request, clientTimeoutMs: number): Promise<Outcome> {
  return new Promise((resolve) => {
    let settled = false;
    let aborting = false;
    const done = (o: Outcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      resolve(aborting ? { kind: 'aborted' } : o);
    };
    const req = http.request(base + r.path, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(r.body) } }, (res) => {
      const status = res.statusCode ?? 0;
      const isStream = (res.headers['content-type'] ?? '').startsWith('text/event-stream');
      let tail = '';
      let body = '';
      let sawError = false;
      let chunks = 0;
      res.on('data', (c: Buffer) => {
        chunks++;
        const s = c.toString('utf8');
        if (isStream) {
          tail = (tail + s).slice(-8192);
          if (!sawError && tail.includes('data: {"error"')) sawError = true;
          if (chunks === 1) {
            if (r.abortAfterMs !== undefined) {
              setTimeout(() => {
                if (settled) return;
                aborting = true;
                req.destroy();
                done({ kind: 'aborted' });
              }, r.abortAfterMs);
            }
            if (r.slow) slowRead(res, () => settled);
          }
        } else if (body.length < 1 << 20) body += s;
      });
      res.on('end', () => {
        if (isStream) {
          if (!tail.endsWith('data: [DONE]\n\n')) return done({ kind: 'lost', why: 'stream ended without [DONE]' });
          if (!sawError) return done(status === 200 ? { kind: 'ok' } : { kind: 'error', error: `http_${status}` });
          const at = tail.lastIndexOf('data: {"error"');
          const event = tail.slice(at + 6, tail.indexOf('\n\n', at));
          try {
            const code = (JSON.parse(event) as { error?: { code?: string } }).error?.code ?? 'no_code';
            return done({ kind: 'error', error: `stream:${code}` });
          } catch {
            return done({ kind: 'error', error: 'stream:unparseable_error_event' });
          }
        }
        if (status >= 200 && status < 300) {
          try {
            JSON.parse(body);
            return done({ kind: 'ok' });
          } catch {
            return done({ kind: 'lost', why: `truncated or invalid JSON answer (${status})` });
          }
        }
        try {
          const code = (JSON.parse(body) as { error?: { code?: string } }).error?.code;
          return done({ kind: 'error', error: code ?? `http_${status}_without_code` });
        } catch {
          return done({ kind: 'error', error: `http_${status}_not_json` });
        }
      });
      res.on('error', () => done({ kind: 'lost', why: isStream ? 'stream reset' : 'answer reset' }));
      res.on('aborted', () => done({ kind: 'lost', why: isStream ? 'stream reset' : 'answer reset' }));
    });
    req.on('error', (err: NodeJS.ErrnoException) => done({ kind: 'lost', why: `request ${err.code ?? err.message}` }));
    const deadline = setTimeout(() => {
      if (settled) return;
      done({ kind: 'lost', why: `no complete answer in ${clientTimeoutMs / 1000} s` });
      req.destroy();
    }, clientTimeoutMs);
    if (r.abortAfterMs !== undefined && !r.stream) {
      setTimeout(() => {
        if (settled) return;
        aborting = true;
        req.destroy();
        done({ kind: 'aborted' });
      }, r.abortAfterMs);
    }
    req.end(r.body);
  });
}

/** A slow client: stops reading for 2 s after the first chunk, then reads in short bursts. */
function slowRead(res: http.IncomingMessage, finished: () => boolean): void {
  res.pause();
  const cycle = (): void => {
    if (finished() || res.readableEnded) return;
    res.resume();
    setTimeout(() => {
      if (finished() || res.readableEnded) return;
      res.pause();
      setTimeout(cycle, 200);
    }, 20);
  };
  setTimeout(cycle, 2000);
}

// ------------------------------------------------------------------------------------------ the run

export function soakTimeline(o: Pick<SoakOptions, 'minutes' | 'warmupSecs' | 'faultEverySecs' | 'faultSecs' | 'faults' | 'workers'>): { durationMs: number; warmupMs: number; cooldownMs: number; faults: FaultWindow[] } {
  const durationMs = Math.round(o.minutes * 60_000);
  const warmupMs = Math.round(o.warmupSecs !== undefined ? o.warmupSecs * 1000 : Math.min(60_000, durationMs * 0.2));
  const cooldownMs = Math.round(Math.min(30_000, durationMs * 0.15));
  const faults: FaultWindow[] = [];
  const span = durationMs - warmupMs - cooldownMs;
  if (o.faults.length > 0 && span > 0) {
    // Every kind at least once, even in a short run.
    const period = Math.max(2000, Math.min(o.faultEverySecs * 1000, span / o.faults.length));
    const length = Math.min(o.faultSecs * 1000, period * 0.6);
    for (let k = 0, start = warmupMs; start + length <= durationMs - cooldownMs; k++, start += period) {
      faults.push({ kind: o.faults[k % o.faults.length]!, worker: k % o.workers, start: Math.round(start), end: Math.round(start + length), note: '' });
    }
  }
  return { durationMs, warmupMs, cooldownMs, faults };
}

export async function runSoak(o: SoakOptions): Promise<SoakResult> {
  for (const f of o.faults) if (!(FAULT_KINDS as readonly string[]).includes(f)) throw new Error(`unknown fault '${f}' (one of ${FAULT_KINDS.join(', ')})`);
  if (o.workers < 2 && o.faults.some((f) => f !== 'slow-clients')) throw new Error('worker faults need at least 2 workers (requests are retried on another)');
  const rng = new Rng(o.seed);
  const { durationMs, warmupMs, faults } = soakTimeline(o);
  const sampleMs = Math.max(500, Math.min(o.sampleSecs * 1000, durationMs / 20));
  const ports = new Set<number>();
  const sims: SimProcess[] = [];
  for (let i = 0; i < o.workers; i++) sims.push(new SimProcess(i, await freeFixedPort(ports), o.timeScale, o.seed));
  o.log(`starting ${o.workers} sim workers (${sims.map((s) => s.port).join(', ')}) and the router`);
  await Promise.all(sims.map((s) => s.start()));
  const routerArgs = [
    '--host', '127.0.0.1', '--port', '0', '--prometheus-port', '0',
    '--worker-urls', ...sims.map((s) => s.url),
    '--policy', o.policy,
    '--request-timeout-secs', String(o.requestTimeoutSecs),
    '--health-check-interval-secs', '1', '--health-success-threshold', '1',
    '--cb-timeout-duration-secs', '5',
    '--max-concurrent-requests', '512', '--queue-size', '256',
    // A small trace store reaches its steady state (LRU churn) during warm-up instead of growing all run.
    '--max-trace-entries', '1000',
    ...o.routerArgs,
  ];
  const router = new RouterProcess(routerArgs);
  const samples: RouterSample[] = [];
  const records: RequestRecord[] = [];
  const lags: number[] = [];
  let slowClients = 0;
  let streams = 0;
  try {
    await router.ready();
    // Idle sockets are dropped after CLIENT_KEEP_ALIVE_MS, below the router's 10 s idle close: a socket
    // reused just as the router closes it fails with ECONNRESET, which the soak would count as lost
    // (seen under load: 16 'request ECONNRESET' in a 20 s run).
    const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, timeout: CLIENT_KEEP_ALIVE_MS });
    const systemPrompts = Array.from({ length: 32 }, (_, i) => `System ${i}: ${phrase(rng, 60)}.`);
    const t0 = performance.now();
    const since = () => performance.now() - t0;
    const pending = new Set<Promise<void>>();
    let stopped = false;

    // Faults on their schedule.
    const activeKinds = new Set<FaultKind>();
    let slowLeft = 0;
    const faultTimers: NodeJS.Timeout[] = [];
    const faultJobs: Promise<void>[] = [];
    for (const f of faults) {
      const sim = sims[f.worker]!;
      faultTimers.push(
        setTimeout(() => {
          activeKinds.add(f.kind);
          const job = (async () => {
            if (f.kind === 'kill') f.note = `SIGKILL pid ${await sim.kill()}`;
            else if (f.kind === '5xx') await sim.setFaults({ fail_rate: 1, status_code: 503 }).then(() => (f.note = 'fail_rate 1, status 503'));
            else if (f.kind === 'garbage') await sim.setFaults({ garbage_rate: 1 }).then(() => (f.note = 'garbage_rate 1'));
            else if (f.kind === 'hang') await sim.setFaults({ hang: true }).then(() => (f.note = 'hang'));
            else {
              slowLeft = 2;
              f.note = 'the next 2 streams read slowly';
            }
          })().catch((err: Error) => void (f.note = `failed to apply: ${err.message}`));
          faultJobs.push(job);
        }, f.start),
        setTimeout(() => {
          activeKinds.delete(f.kind);
          const job = (async () => {
            if (f.kind === 'kill') {
              await sim.start();
              f.note += `, restarted on :${sim.port}`;
            } else if (f.kind === '5xx') await sim.setFaults({ fail_rate: 0 });
            else if (f.kind === 'garbage') await sim.setFaults({ garbage_rate: 0 });
            else if (f.kind === 'hang') await sim.setFaults({ hang: false });
          })().catch((err: Error) => void (f.note += `; failed to end: ${err.message}`));
          faultJobs.push(job);
        }, f.end),
      );
    }

    // Memory and counters every sampleMs.
    let sampling: Promise<unknown> = Promise.resolve();
    const sampler = setInterval(() => {
      sampling = sampling.then(() => router.sample().then((s) => void samples.push(s))).catch((err: Error) => o.log(`sample failed: ${err.message}`));
    }, sampleMs);
    samples.push(await router.sample());

    function makeRequest(i: number): Request {
      const stream = rng.next() < o.streamFraction;
      if (stream) streams++;
      const slow = stream && slowLeft > 0 && activeKinds.has('slow-clients');
      if (slow) {
        slowLeft--;
        slowClients++;
      }
      const abort = !slow && rng.next() < o.abortFraction;
      // Long answers (ignore_eos): the requests a client abandons, and a share of the streams (chat, so
      // deltas, not /generate's cumulative text), so that aborts and worker kills land mid-stream.
      const long = !slow && (abort || (stream && rng.next() < o.longStreamFraction));
      const tokens = slow ? 3000 : long ? rng.int(1000, 3000) : rng.int(8, o.maxTokens);
      const system = systemPrompts[rng.int(0, systemPrompts.length - 1)]!;
      const question = `${phrase(rng, 8)} #${i}`;
      const chat = !slow && (long || rng.next() < 0.3);
      const body = chat
        ? JSON.stringify({ model: 'sim', stream, max_tokens: tokens, ignore_eos: long, messages: [{ role: 'system', content: system }, { role: 'user', content: question }] })
        : JSON.stringify({ text: `${system} ${question}`, stream, sampling_params: { max_new_tokens: tokens, ignore_eos: slow || long } });
      // Streams are abandoned after their first chunk (+0-300 ms), others 5-300 ms after they were sent.
      return { path: chat ? '/v1/chat/completions' : '/generate', body, stream, slow, abortAfterMs: abort ? (stream ? rng.int(0, 300) : rng.int(5, 300)) : undefined };
    }

    // Poisson arrivals, scheduled on absolute times (a late timer sends at once and the lag is recorded).
    let nextAt = 0;
    let sent = 0;
    await new Promise<void>((resolveLoad) => {
      const tick = (): void => {
        if (stopped) return;
        const now = since();
        while (nextAt <= now && nextAt < durationMs) {
          lags.push(now - nextAt);
          const sentAt = now;
          const req = makeRequest(sent++);
          const p = fire(agent, router.url, req, o.clientTimeoutSecs * 1000).then((outcome) => {
            records.push({ sentAt, endedAt: since(), stream: req.stream, outcome });
          });
          pending.add(p);
          void p.finally(() => pending.delete(p));
          nextAt += rng.exponential(1000 / o.rate);
        }
        if (nextAt >= durationMs) {
          stopped = true;
          resolveLoad();
          return;
        }
        setTimeout(tick, Math.max(0, nextAt - since()));
      };
      tick();
    });

    o.log(`load done: ${sent} requests sent; waiting for the last answers`);
    for (const t of faultTimers) clearTimeout(t);
    await Promise.all([...pending]);
    await Promise.all(faultJobs);
    // Heal whatever a fault cut short at the end (a killed worker not yet restarted, a fault still set).
    for (const sim of sims) {
      if (sim.proc === undefined) await sim.start();
      await sim.setFaults({ fail_rate: 0, garbage_rate: 0, hang: false }).catch(() => undefined);
    }
    clearInterval(sampler);
    await sampling;
    // The router drains (aborted upstreams finish, counters settle).
    let last = await router.sample();
    for (let i = 0; i < 300 && (last.counters.active !== 0 || (last.limiter?.active ?? 0) !== 0 || last.workers.some((w) => w.inFlight !== 0)); i++) {
      await new Promise((r) => setTimeout(r, 100));
      last = await router.sample();
    }
    samples.push(last);
    const transitions = await breakerTransitions(router.metricsUrl);
    agent.destroy();

    const c = last.counters;
    const leaks: LeakCheck[] = [
      { name: 'router active requests', value: c.active },
      { name: 'router requests without an outcome (requests - completed - failed - aborted)', value: c.requests - c.completed - c.failed - c.aborted },
      { name: 'admission limiter slots held', value: last.limiter?.active ?? 0 },
      { name: 'admission queue', value: last.limiter?.queued ?? 0 },
      ...last.workers.map((w) => ({ name: `in-flight requests on ${w.url}`, value: w.inFlight })),
      ...last.workers.map((w) => ({ name: `in-flight tokens on ${w.url}`, value: w.inFlightTokens })),
    ];
    const lost = records.filter((r) => r.outcome.kind === 'lost');
    const lostReasons: Record<string, number> = {};
    for (const r of lost) if (r.outcome.kind === 'lost') lostReasons[r.outcome.why] = (lostReasons[r.outcome.why] ?? 0) + 1;
    const rss = memoryTrend(samples.map((s) => ({ t: s.at - samples[0]!.at, v: s.rss })), warmupMs);
    const heap = memoryTrend(samples.map((s) => ({ t: s.at - samples[0]!.at, v: s.heapUsed })), warmupMs);
    const sortedLags = [...lags].sort((a, b) => a - b);
    const summary: SoakSummary = {
      settings: {
        minutes: o.minutes,
        rate: o.rate,
        workers: o.workers,
        stream_fraction: o.streamFraction,
        long_stream_fraction: o.longStreamFraction,
        abort_fraction: o.abortFraction,
        max_tokens: o.maxTokens,
        time_scale: o.timeScale,
        policy: o.policy,
        warmup_s: warmupMs / 1000,
        sample_s: sampleMs / 1000,
        request_timeout_s: o.requestTimeoutSecs,
        node: process.version,
      },
      requests: {
        sent,
        ok: records.filter((r) => r.outcome.kind === 'ok').length,
        aborted: records.filter((r) => r.outcome.kind === 'aborted').length,
        errors: records.filter((r) => r.outcome.kind === 'error').length,
        lost: lost.length,
        streams,
        slowClients,
      },
      lostReasons,
      errors: tallyErrors(records, faults, o.requestTimeoutSecs * 1000 + 3000),
      faults,
      leaks,
      routerCounters: { ...c },
      rss,
      heap,
      loadGenerator: { sendLagP99Ms: Math.round(sortedLags[Math.floor(sortedLags.length * 0.99)] ?? 0), sendLagMaxMs: Math.round(sortedLags[sortedLags.length - 1] ?? 0) },
      breakerTransitions: transitions,
      verdict: judge(lost.length, leaks, rss, heap, { maxRssSlopeMbPerMin: o.maxRssSlopeMbPerMin, maxHeapSlopeMbPerMin: o.maxHeapSlopeMbPerMin }),
    };
    if (!summary.verdict.pass && router.log.length > 0) o.log(`router log (last lines):\n${router.log.join('\n')}`);
    return { summary, text: formatSoak(summary), samples };
  } finally {
    await router.close().catch(() => undefined);
    await Promise.all(sims.map((s) => s.kill()));
  }
}

/** sgl_router_cb_state_transitions_total summed per from->to (0 when the scrape fails). */
async function breakerTransitions(metricsUrl: string | undefined): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  if (metricsUrl === undefined) return out;
  try {
    const text = await new Promise<string>((resolve, reject) => {
      http
        .get(metricsUrl, { agent: false }, (res) => {
          let b = '';
          res.on('data', (d: Buffer) => (b += d.toString()));
          res.on('end', () => resolve(b));
        })
        .on('error', reject);
    });
    for (const m of text.matchAll(/^sgl_router_cb_state_transitions_total\{[^}]*from="([a-z_]+)",to="([a-z_]+)"\} (\d+)/gm)) {
      const key = `${m[1]}->${m[2]}`;
      out[key] = (out[key] ?? 0) + Number(m[3]);
    }
  } catch {
    // reported as no transitions
  }
  return out;
}
