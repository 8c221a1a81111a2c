/**
 * The simulated SGLang server's own cost: one sim server (in a worker thread, as the router embeds
 * it) holding 2,000 concurrent streaming requests, closed loop (a client sends its next request when
 * one ends; 256 output tokens each, ignore_eos). time-scale 0.001 makes the modelled GPU ~1000x
 * faster than real, so the scheduler loop itself is the bottleneck and its cost is what we measure.
 *
 * Every running request gets one SSE chunk per step, and every chunk is one send() on its own socket,
 * so the floor of a request-step is the cost of one corked uWS write. The scenario measures that
 * floor in the same run (a bare uWS server writing 300-byte chunks to the same 2,000 client sockets)
 * and reports the sim's cost against it: on a shared machine the ratio is the figure to trust.
 *
 * Figures:
 *   bare_write_us                   one corked res.write of a 300-byte chunk to one of 2,000 streams
 *   <api>.us_per_request_step       scheduler step time (batching, token generation, chunk building
 *                                   and writing) per request-step; <api> = generate (SGLang's default
 *                                   cumulative text and output_ids per chunk) or chat (OpenAI deltas)
 *   <api>.vs_bare_write             us_per_request_step / bare_write_us
 *   <api>.step_share                step time / wall time of the sim thread
 *   <api>.loop_utilization          the sim thread's event-loop utilisation (steps + HTTP + I/O)
 *   <api>.tokens_per_s              tokens streamed per second with the loop saturated
 *   <api>.mean_batch                running requests per decode step (shows the 2,000 were held)
 * Times are wall-clock inside the measured code: on a loaded machine they include preemption.
 * With the loop saturated a step takes ~100+ ms, so a 256-token request outlives a measurement window:
 * the windows measure steady-state decode with all 2,000 streams running.
 * The 2,000 clients are raw keep-alive sockets in a worker thread that only look for the end of
 * each response.
 */
import { Worker } from 'node:worker_threads';
import uWS from 'uWebSockets.js';
import { assertNativeUws } from '../../src/frontend/http.js';
import { startSimFleetInThread } from '../../src/sim/fleet.js';
import type { SimStats } from '../../src/sim/server.js';
import { summarize, type BenchContext, type Figure, type Scenario } from '../lib/scenario.js';

const CONCURRENCY = 2000;
const OUTPUT_TOKENS = 256;
const TIME_SCALE = 0.001;
const BARE_CHUNK = 'data: ' + 'x'.repeat(292) + '\n\n';

type Api = 'generate' | 'chat';

/**
 * The client thread (node:net only, so it runs as eval'd CommonJS). Messages in: {port, requests:
 * string[] (one raw HTTP request per connection), repeat: boolean}; 'stop'. Out: {connected},
 * {stopped, completed, errors}.
 */
const CLIENT_THREAD = `
const net = require('node:net');
const { parentPort } = require('node:worker_threads');
const END = Buffer.from('\\r\\n0\\r\\n\\r\\n');
let sockets = [];
let completed = 0;
let errors = 0;
let stopping = false;
parentPort.on('message', (msg) => {
  if (msg === 'stop') {
    stopping = true;
    let open = sockets.length;
    if (open === 0) parentPort.postMessage({ stopped: true, completed, errors });
    for (const s of sockets) {
      s.once('close', () => { if (--open === 0) parentPort.postMessage({ stopped: true, completed, errors }); });
      s.destroy();
    }
    return;
  }
  let connected = 0;
  for (const raw of msg.requests) {
    const req = Buffer.from(raw);
    const s = net.connect(msg.port, '127.0.0.1');
    s.setNoDelay(true);
    let tail = Buffer.alloc(0);
    s.on('connect', () => {
      s.write(req);
      if (++connected === msg.requests.length) parentPort.postMessage({ connected });
    });
    s.on('data', (d) => {
      if (!msg.repeat) return;
      tail = tail.length === 0 ? d : Buffer.concat([tail, d]);
      if (tail.length > 64) tail = tail.subarray(tail.length - 64);
      if (tail.length >= END.length && tail.subarray(tail.length - END.length).equals(END)) {
        completed++;
        tail = Buffer.alloc(0);
        if (!stopping) s.write(req);
      }
    });
    s.on('error', () => { errors++; });
    sockets.push(s);
  }
});
`;

class Clients {
  private readonly worker = new Worker(CLIENT_THREAD, { eval: true });

  async start(port: number, requests: string[], repeat: boolean): Promise<void> {
    const connected = new Promise<void>((resolve) => this.worker.once('message', () => resolve()));
    this.worker.postMessage({ port, requests, repeat });
    await connected;
  }

  async stop(): Promise<{ completed: number; errors: number }> {
    const stopped = new Promise<{ completed: number; errors: number }>((resolve) => this.worker.once('message', (m: { completed: number; errors: number }) => resolve(m)));
    this.worker.postMessage('stop');
    const result = await stopped;
    await this.worker.terminate();
    return result;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function httpRequest(method: string, path: string, body: string): string {
  return `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

function simRequests(api: Api): string[] {
  const system = 'You are a helpful assistant. Answer briefly and precisely. '.repeat(4);
  return Array.from({ length: CONCURRENCY }, (_, i) =>
    api === 'generate'
      ? httpRequest('POST', '/generate', JSON.stringify({ text: `${system}Question ${i}: what is ${i} + ${i}?`, stream: true, sampling_params: { max_new_tokens: OUTPUT_TOKENS, ignore_eos: true } }))
      : httpRequest(
          'POST',
          '/v1/chat/completions',
          JSON.stringify({ messages: [{ role: 'system', content: system }, { role: 'user', content: `Question ${i}: what is ${i} + ${i}?` }], stream: true, max_tokens: OUTPUT_TOKENS, ignore_eos: true }),
        ),
  );
}

/** The floor: a bare uWS server (this thread) writing one chunk per open stream per loop turn. */
async function bareWriteUs(ctx: BenchContext): Promise<number[]> {
  assertNativeUws();
  const app = uWS.App();
  const streams: (uWS.HttpResponse & { gone?: boolean })[] = [];
  app.get('/s', (res) => {
    const r = res as uWS.HttpResponse & { gone?: boolean };
    r.onAborted(() => {
      r.gone = true;
    });
    r.cork(() => {
      r.writeStatus('200 OK').writeHeader('content-type', 'text/event-stream');
      r.write('');
    });
    streams.push(r);
  });
  const listen = await new Promise<uWS.us_listen_socket>((resolve, reject) => app.listen('127.0.0.1', 0, (s) => (s === false ? reject(new Error('cannot listen')) : resolve(s))));
  const port = uWS.us_socket_local_port(listen);
  const clients = new Clients();
  const results: number[] = [];
  try {
    await clients.start(port, Array.from({ length: CONCURRENCY }, () => 'GET /s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'), false);
    while (streams.length < CONCURRENCY) await sleep(20);
    const burst = async (ms: number): Promise<number> => {
      let writes = 0;
      let spent = 0;
      const end = performance.now() + ms;
      while (performance.now() < end) {
        const t0 = performance.now();
        for (const res of streams) {
          if (res.gone) continue;
          res.cork(() => res.write(BARE_CHUNK));
          writes++;
        }
        spent += performance.now() - t0;
        await new Promise((r) => setImmediate(r));
      }
      return (spent * 1000) / Math.max(1, writes);
    };
    await burst(ctx.quick ? 500 : 1500); // warm-up
    for (let run = 0; run < ctx.runs; run++) {
      const us = await burst(Math.max(1000, ctx.durationSec * 500));
      results.push(us);
      ctx.log(`bare uWS run ${run + 1}: ${us.toFixed(2)} us per corked write (2000 streams, ${BARE_CHUNK.length} B chunks)`);
    }
  } finally {
    await clients.stop();
    (app as uWS.TemplatedApp & { close(): void }).close();
  }
  return results;
}

interface Window {
  usPerRequestStep: number;
  stepShare: number;
  loopUtilization: number;
  tokensPerSec: number;
  meanBatch: number;
}

function windowOf(a: SimStats, b: SimStats, wallMs: number): Window {
  const stepMs = b.totals.stepCpuMs - a.totals.stepCpuMs;
  const tokens = b.totals.generatedTokens - a.totals.generatedTokens;
  const active = b.eventLoop.activeMs - a.eventLoop.activeMs;
  const idle = b.eventLoop.idleMs - a.eventLoop.idleMs;
  return {
    usPerRequestStep: (stepMs * 1000) / Math.max(1, tokens),
    stepShare: stepMs / wallMs,
    loopUtilization: active / Math.max(1e-9, active + idle),
    tokensPerSec: (tokens * 1000) / wallMs,
    meanBatch: (b.totals.decodeSeqSteps - a.totals.decodeSeqSteps) / Math.max(1, b.totals.decodeSteps - a.totals.decodeSteps),
  };
}

async function simWindows(api: Api, ctx: BenchContext): Promise<Window[]> {
  const fleet = await startSimFleetInThread({ port: 0, timeScale: TIME_SCALE, maxRunningRequests: 4096, maxTotalTokens: 10_000_000 });
  const server = fleet.servers[0]!;
  const clients = new Clients();
  const windows: Window[] = [];
  try {
    await clients.start(fleet.ports[0]!, simRequests(api), true);
    const warmDeadline = Date.now() + 60_000;
    while ((await server.stats()).running < CONCURRENCY * 0.95) {
      if (Date.now() > warmDeadline) throw new Error(`only ${(await server.stats()).running} of ${CONCURRENCY} requests running after 60 s`);
      await sleep(100);
    }
    await sleep(ctx.quick ? 1000 : 3000);
    for (let run = 0; run < ctx.runs; run++) {
      const a = await server.stats();
      const t0 = performance.now();
      await sleep(ctx.durationSec * 1000);
      const b = await server.stats();
      const w = windowOf(a, b, performance.now() - t0);
      windows.push(w);
      ctx.log(
        `${api} run ${run + 1}: ${w.usPerRequestStep.toFixed(2)} us per request-step, step share ${(w.stepShare * 100).toFixed(1)}%, ` +
          `loop ${(w.loopUtilization * 100).toFixed(1)}%, ${w.tokensPerSec.toFixed(0)} tok/s, mean batch ${w.meanBatch.toFixed(0)}, running ${b.running}, waiting ${b.waiting}`,
      );
    }
  } finally {
    const c = await clients.stop();
    ctx.log(`${api}: ${c.completed} requests completed, ${c.errors} client errors`);
    await fleet.close();
  }
  return windows;
}

const scenario: Scenario = {
  name: 'sim-step',
  description: `one simulated server holding ${CONCURRENCY} concurrent streams (closed loop, ${OUTPUT_TOKENS} tokens each, time-scale ${TIME_SCALE}): scheduler cost per request-step, against a bare uWS write`,
  async run(ctx: BenchContext): Promise<Figure[]> {
    const figures: Figure[] = [];
    const bare = summarize(await bareWriteUs(ctx));
    figures.push({ name: 'sim.step.bare_write_us', value: bare.median, unit: 'us', better: 'lower', spread: bare.spread, note: `reference: one corked uWS write, ${CONCURRENCY} streams` });
    for (const api of ['generate', 'chat'] as const) {
      const windows = await simWindows(api, ctx);
      const add = (name: string, values: number[], unit: string, better: 'lower' | 'higher', note: string): void => {
        const s = summarize(values);
        figures.push({ name: `sim.step.${api}.${name}`, value: s.median, unit, better, spread: s.spread, note });
      };
      add('us_per_request_step', windows.map((w) => w.usPerRequestStep), 'us', 'lower', `scheduler step time per running request per step, ${CONCURRENCY} streams`);
      add('vs_bare_write', windows.map((w) => w.usPerRequestStep / bare.median), 'x', 'lower', 'us_per_request_step / bare_write_us (same run)');
      add('step_share', windows.map((w) => w.stepShare), 'ratio', 'lower', 'scheduler step time / wall time of the sim thread');
      add('loop_utilization', windows.map((w) => w.loopUtilization), 'ratio', 'lower', 'sim thread event-loop utilisation (steps + HTTP + I/O)');
      add('tokens_per_s', windows.map((w) => w.tokensPerSec), 'tok/s', 'higher', 'streamed tokens per second with the loop saturated');
      add('mean_batch', windows.map((w) => w.meanBatch), 'requests', 'higher', `running requests per decode step (target ${CONCURRENCY})`);
    }
    return figures;
  },
};

export default scenario;
