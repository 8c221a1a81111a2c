/**
 * One simulated SGLang server: a uWS App on its own port in front of one SimEngine.
 *
 * Routes follow SGLang's HTTP API (docs/sim.md). Streaming responders respect backpressure: when
 * res.write returns false nothing more is written to that client until onWritable; the text is
 * cumulative (/generate) or a delta from what was sent (OpenAI), so the next chunk written then
 * covers everything skipped.
 */
import { performance } from 'node:perf_hooks';
import { OptionsError } from '../config/options.js';
import { SwitchyardError, toSwitchyardError } from '../errors.js';
import {
  createApp,
  Exchange,
  listen,
  parseContentLength,
  parseJsonObject,
  statusLine,
  type HttpRequest,
  type HttpResponse,
  type ListenSocket,
  type TemplatedApp,
} from '../frontend/http.js';
import { SimEngine, type EngineStats, type RequestSink, type SimRequest } from './engine.js';
import { FaultInjector } from './faults.js';
import { renderPrometheus } from './metrics.js';
import { parseFaultsPatch, type SimFaults, type SimOptions } from './options.js';
import { parseChat, parseCompletion, parseGenerate, type ApiKind, type ParsedRequest } from './protocol.js';
import { getLoadDocument, loadsDocument, modelInfoDocument, modelsDocument, serverInfoDocument, type InfoSource } from './info.js';
import { ChunkState, CollectResponder, StreamResponder, type Responder } from './responders.js';

export { SIM_VERSION } from './info.js';
/** SGLang's HEALTH_CHECK_TIMEOUT for /health_generate. */
const HEALTH_GENERATE_TIMEOUT_MS = 20_000;
const PROBE_PROMPT = new Uint32Array([128000, 9906]);
/** The body of a garbage answer (fault `garbage-rate`). */
const GARBAGE = Buffer.from([0x13, 0x37, 0x00, 0xff, 0xfe, 0x0d, 0x0a, 0x7b, 0x7b, 0x00]);

/** What tests and embedders may ask of a server, wherever it runs (in-process or in a thread). */
export interface SimServerHandle {
  readonly url: string;
  readonly port: number;
  readonly gpuId: number;
  stats(): SimStats | Promise<SimStats>;
  setFaults(patch: Partial<SimFaults>): SimFaults | Promise<SimFaults>;
}

export interface SimStats extends EngineStats {
  url: string;
  port: number;
  gpuId: number;
  crashed: boolean;
  /** Data requests accepted and deliberately never answered (hang faults), still connected. */
  hanging: number;
  /** Data requests waiting out the latency fault. */
  delayed: number;
  /** Open streaming responses currently blocked by backpressure. */
  blockedStreams: number;
  dataRequests: number;
  injectedFailures: number;
  /** Data requests answered with garbage (fault garbage-rate). */
  garbageAnswers: number;
  faults: SimFaults;
  /** This thread's event loop since start (ms): active vs idle. */
  eventLoop: { activeMs: number; idleMs: number; utilization: number };
}

export interface SimServerInit {
  opts: SimOptions;
  /** Server index in its fleet (GPU id = baseGpuId + index, seed = seed + index). */
  index: number;
  host: string;
  port: number;
  /** What crash-mode "process" does; defaults to exiting the process with code 1. */
  onCrash?: () => void;
}

type Handler = (res: HttpResponse, req: HttpRequest) => void;
type ClosableApp = TemplatedApp & { close(): void };

interface DelayedEntry {
  due: number;
  run: () => void;
  cancelled: boolean;
}

const NULL_SINK: RequestSink = { onTokens: () => undefined, onFinish: () => undefined };

function defaultCrash(): never {
  process.stderr.write('switchyard sim: crash-after reached, exiting with code 1\n');
  process.exit(1);
}

export class SimServer implements SimServerHandle {
  readonly engine: SimEngine;
  readonly gpuId: number;
  readonly opts: SimOptions;
  readonly headers: Record<string, string>;
  private readonly faults: FaultInjector;
  private readonly app: TemplatedApp;
  private socket: ListenSocket | null = null;
  private boundPort = 0;
  private readonly host: string;
  private readonly onCrash: () => void;
  private crashed = false;
  private closed = false;
  private hanging = 0;
  private delayedLive = 0;
  private readonly delayed: DelayedEntry[] = [];
  private delayedHead = 0;
  private delayTimer: NodeJS.Timeout | null = null;
  private readonly healthTimers = new Set<NodeJS.Timeout>();
  /** Streaming responders currently blocked by backpressure (for stats). */
  blockedStreams = 0;
  private readonly routes = new Map<string, Map<string, Handler>>();

  private constructor(init: SimServerInit) {
    this.opts = init.opts;
    this.host = init.host;
    this.gpuId = init.opts.baseGpuId + init.index;
    this.engine = new SimEngine(init.opts, init.index);
    this.faults = new FaultInjector(init.opts, init.opts.seed + init.index);
    this.onCrash = init.onCrash ?? defaultCrash;
    this.headers = { 'x-sim-gpu-id': String(this.gpuId) };
    this.app = createApp();
    if (typeof (this.app as Partial<ClosableApp>).close !== 'function') throw new Error('uWebSockets.js build lacks App.close (needed to drop connections on crash/close)');
    this.registerRoutes();
    this.app.any('/*', (res, req) => this.dispatchRoute(res, req));
  }

  static async start(init: SimServerInit): Promise<SimServer> {
    const server = new SimServer(init);
    const { socket, port } = await listen(server.app, init.host, init.port);
    server.socket = socket;
    server.boundPort = port;
    return server;
  }

  get port(): number {
    return this.boundPort;
  }

  get url(): string {
    const host = this.host === '0.0.0.0' || this.host === '::' ? '127.0.0.1' : this.host;
    return `http://${host.includes(':') ? `[${host}]` : host}:${this.boundPort}`;
  }

  get modelName(): string {
    return this.opts.servedModelName;
  }

  stats(): SimStats {
    const elu = performance.eventLoopUtilization();
    return {
      ...this.engine.stats(),
      url: this.url,
      port: this.port,
      gpuId: this.gpuId,
      crashed: this.crashed,
      hanging: this.hanging,
      delayed: this.delayedLive,
      blockedStreams: this.blockedStreams,
      dataRequests: this.faults.dataRequests,
      injectedFailures: this.faults.injectedFailures,
      garbageAnswers: this.faults.garbageAnswers,
      faults: this.faults.current,
      eventLoop: { activeMs: elu.active, idleMs: elu.idle, utilization: elu.utilization },
    };
  }

  /** Changes fault settings at runtime; throws OptionsError on invalid values. */
  setFaults(patch: Partial<SimFaults>): SimFaults {
    return this.faults.update(patch);
  }

  /** Closes the listen socket and every connection; drops all requests. Idempotent. */
  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.engine.stop();
      if (this.delayTimer !== null) clearTimeout(this.delayTimer);
      this.delayTimer = null;
      for (const t of this.healthTimers) clearTimeout(t);
      this.healthTimers.clear();
      // App.close (native, missing from this build's typings) closes the listen socket and
      // force-closes all connections (their onAborted handlers run).
      (this.app as ClosableApp).close();
      this.socket = null;
    }
    return Promise.resolve();
  }

  // ---------------------------------------------------------------- routing

  private route(path: string, methods: readonly string[], handler: Handler): void {
    let byMethod = this.routes.get(path);
    if (byMethod === undefined) {
      byMethod = new Map();
      this.routes.set(path, byMethod);
    }
    for (const m of methods) byMethod.set(m, handler);
  }

  private registerRoutes(): void {
    this.route('/generate', ['post', 'put'], this.dataRoute('generate'));
    this.route('/v1/chat/completions', ['post'], this.dataRoute('chat'));
    this.route('/v1/completions', ['post'], this.dataRoute('completion'));
    this.route('/health', ['get'], (res) => this.health(res));
    this.route('/health_generate', ['get'], (res) => this.healthGenerate(res));
    this.route('/get_load', ['get'], (res) => new Exchange(res).json(200, getLoadDocument(this.info()), this.headers));
    this.route('/v1/loads', ['get'], (res) => new Exchange(res).json(200, loadsDocument(this.info()), this.headers));
    this.route('/get_server_info', ['get'], (res) => new Exchange(res).json(200, serverInfoDocument(this.info()), this.headers));
    this.route('/server_info', ['get'], (res) => new Exchange(res).json(200, serverInfoDocument(this.info()), this.headers));
    this.route('/get_model_info', ['get'], (res) => new Exchange(res).json(200, modelInfoDocument(this.info()), this.headers));
    this.route('/model_info', ['get'], (res) => new Exchange(res).json(200, modelInfoDocument(this.info()), this.headers));
    this.route('/v1/models', ['get'], (res) => new Exchange(res).json(200, modelsDocument(this.info()), this.headers));
    this.route('/flush_cache', ['get', 'post'], (res) => this.flushCache(res));
    this.route('/metrics', ['get'], (res) =>
      new Exchange(res).text(200, renderPrometheus(this.engine.metricsSnapshot(), this.modelName), 'text/plain; version=0.0.4; charset=utf-8', this.headers),
    );
    this.route('/sim/faults', ['get', 'post'], (res, req) => this.adminFaults(res, req));
    this.route('/sim/stats', ['get'], (res) => new Exchange(res).json(200, this.stats(), this.headers));
  }

  private dispatchRoute(res: HttpResponse, req: HttpRequest): void {
    const method = req.getMethod().toLowerCase();
    const path = req.getUrl();
    const byMethod = this.routes.get(path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path);
    if (byMethod === undefined) {
      new Exchange(res).fail('not_found', `no route for ${method.toUpperCase()} ${path}`, this.headers);
      return;
    }
    const handler = byMethod.get(method);
    if (handler === undefined) {
      const allow = [...byMethod.keys()].map((m) => m.toUpperCase()).join(', ');
      new Exchange(res).fail('method_not_allowed', `method ${method.toUpperCase()} is not allowed on ${path} (allowed: ${allow})`, { ...this.headers, allow });
      return;
    }
    handler(res, req);
  }

  // ---------------------------------------------------------------- data requests

  private dataRoute(kind: ApiKind): Handler {
    return (res, req) => {
      const ex = new Exchange(res);
      const declared = parseContentLength(req.getHeader('content-length'));
      if (declared > this.opts.maxBodyBytes) {
        this.refuseOversize(res, declared);
        return;
      }
      ex.readBody(this.opts.maxBodyBytes, declared, (err, body) => {
        if (err !== null || ex.aborted) return;
        // Latencies start once the body is in, like SGLang's (FastAPI reads the body before the handler).
        this.onDataBody(ex, kind, body, performance.now());
      });
    };
  }

  private onDataBody(ex: Exchange, kind: ApiKind, body: Buffer, createdAt: number): void {
    const obj = parseJsonObject(body);
    if (obj instanceof SwitchyardError) {
      ex.error(obj, this.headers);
      return;
    }
    if (this.crashed || this.closed) return;
    const decision = this.faults.decide();
    if (decision === 'crash') {
      this.crash();
      return;
    }
    if (decision === 'hang') {
      this.hanging++;
      ex.onAbort = () => {
        this.hanging--;
      };
      return;
    }
    if (decision === 'garbage') {
      // uWS always writes "HTTP/1.1 " first; what follows is no status code, no headers, binary junk.
      const res = ex.res;
      res.cork(() => {
        res.writeStatus('\u00ff\u0000 garbage');
        res.end(GARBAGE, true);
      });
      ex.finished = true;
      return;
    }
    if (decision === 'fail') {
      const status = this.faults.current.statusCode;
      ex.error(new SwitchyardError('injected_failure', `injected failure (simulated server on GPU ${this.gpuId})`, { status }), this.headers);
      return;
    }
    let parsed: ParsedRequest;
    try {
      const limits = { maxSequenceLength: this.engine.maxSequenceLength };
      parsed = kind === 'generate' ? parseGenerate(obj, limits) : kind === 'chat' ? parseChat(obj, limits) : parseCompletion(obj, limits);
    } catch (err) {
      ex.error(toSwitchyardError(err), this.headers);
      return;
    }
    const model = typeof obj['model'] === 'string' && obj['model'].length > 0 ? obj['model'] : this.modelName;
    const latency = this.faults.current.latencyMs;
    if (latency > 0) this.delay(ex, latency, () => this.submit(ex, parsed, model, createdAt));
    else this.submit(ex, parsed, model, createdAt);
  }

  private submit(ex: Exchange, parsed: ParsedRequest, model: string, createdAt: number): void {
    if (ex.aborted || this.closed) return;
    const responder: Responder = parsed.stream ? new StreamResponder(this, ex, parsed, model) : new CollectResponder(this, ex, parsed, model);
    const reqs: SimRequest[] = [];
    for (let i = 0; i < parsed.items.length; i++) {
      const item = parsed.items[i]!;
      const r = this.engine.submit({ ...item, createdAt, index: i }, responder);
      r.tag = new ChunkState(i, JSON.stringify(item.rid));
      reqs.push(r);
    }
    responder.attach(reqs);
    ex.onAbort = () => {
      for (const r of reqs) this.engine.abort(r);
      responder.detach();
    };
  }

  /** 413 with our headers, closing the connection (the client may still be sending the body we refuse). */
  private refuseOversize(res: HttpResponse, declared: number): void {
    const err = new SwitchyardError('payload_too_large', `request body of ${declared} bytes exceeds the limit of ${this.opts.maxBodyBytes} bytes`);
    res.cork(() => {
      res.writeStatus(statusLine(err.status));
      res.writeHeader('content-type', 'application/json');
      for (const k in this.headers) res.writeHeader(k, this.headers[k] as string);
      res.end(JSON.stringify(err.toJSON()), true);
    });
  }

  /** FIFO of requests serving the latency fault: one timer for all of them. */
  private delay(ex: Exchange, ms: number, run: () => void): void {
    const entry: DelayedEntry = { due: performance.now() + ms, run, cancelled: false };
    this.delayed.push(entry);
    this.delayedLive++;
    ex.onAbort = () => {
      if (!entry.cancelled) {
        entry.cancelled = true;
        this.delayedLive--;
      }
    };
    if (this.delayTimer === null) this.delayTimer = setTimeout(this.pumpDelayed, ms);
  }

  private readonly pumpDelayed = (): void => {
    this.delayTimer = null;
    const now = performance.now();
    while (this.delayedHead < this.delayed.length) {
      const entry = this.delayed[this.delayedHead]!;
      if (!entry.cancelled && entry.due > now + 0.5) break;
      this.delayedHead++;
      if (!entry.cancelled) {
        entry.cancelled = true;
        this.delayedLive--;
        entry.run();
      }
    }
    if (this.delayedHead === this.delayed.length) {
      this.delayed.length = 0;
      this.delayedHead = 0;
    } else if (!this.closed) {
      this.delayTimer = setTimeout(this.pumpDelayed, Math.max(0, this.delayed[this.delayedHead]!.due - now));
    }
  };

  private crash(): void {
    if (this.faults.current.crashMode === 'process') {
      this.onCrash();
      return;
    }
    // crash-mode server: this server disappears (socket closed, connections reset); the process lives on.
    this.crashed = true;
    setImmediate(() => void this.close());
  }

  // ---------------------------------------------------------------- other endpoints

  private health(res: HttpResponse): void {
    const ex = new Exchange(res);
    if (this.faults.healthFailing()) ex.fail('service_unavailable', 'health check failing (injected)', this.headers);
    else ex.text(200, '', 'text/plain; charset=utf-8', this.headers);
  }

  /** SGLang's /health_generate: healthy once the scheduler completes a step after the probe was sent. */
  private healthGenerate(res: HttpResponse): void {
    const ex = new Exchange(res);
    if (this.faults.healthFailing()) {
      ex.fail('service_unavailable', 'health check failing (injected)', this.headers);
      return;
    }
    const probe = this.engine.submit(
      {
        rid: `HEALTH_CHECK_${Date.now()}`,
        promptIds: PROBE_PROMPT,
        maxNewTokens: 1,
        minNewTokens: 0,
        ignoreEos: true,
        stop: null,
        stopTokenIds: null,
        createdAt: performance.now(),
        index: 0,
        internal: true,
      },
      NULL_SINK,
    );
    let done = false;
    const finish = (healthy: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      this.healthTimers.delete(timer);
      this.engine.abort(probe, 'health check answered');
      if (healthy && !this.closed) ex.text(200, '', 'text/plain; charset=utf-8', this.headers);
      else ex.fail('service_unavailable', 'the scheduler did not answer the health probe in time', this.headers);
    };
    const timer = setTimeout(() => finish(false), HEALTH_GENERATE_TIMEOUT_MS);
    this.healthTimers.add(timer);
    this.engine.onNextStep(() => finish(!this.closed));
    ex.onAbort = () => {
      done = true;
      clearTimeout(timer);
      this.healthTimers.delete(timer);
      this.engine.abort(probe, 'health check client left');
    };
  }

  /** The server as the information documents see it (src/sim/info.ts). */
  private info(): InfoSource {
    return { engine: this.engine, opts: this.opts, gpuId: this.gpuId, host: this.host, port: this.port, modelName: this.modelName, faults: this.faults.current };
  }

  private flushCache(res: HttpResponse): void {
    const ex = new Exchange(res);
    if (this.engine.flushCache()) ex.text(200, 'Cache flushed.\n', 'text/plain; charset=utf-8', this.headers);
    else {
      ex.fail(
        'invalid_request',
        `Cache not flushed: ${this.engine.numRunning} running and ${this.engine.numWaiting} waiting requests (SGLang flushes only when idle).`,
        this.headers,
      );
    }
  }

  private adminFaults(res: HttpResponse, req: HttpRequest): void {
    const ex = new Exchange(res);
    if (req.getMethod().toLowerCase() === 'get') {
      ex.json(200, { faults: this.faults.current }, this.headers);
      return;
    }
    const declared = parseContentLength(req.getHeader('content-length'));
    ex.readBody(64 * 1024, declared, (err, body) => {
      if (err !== null || ex.aborted) return;
      const obj = parseJsonObject(body);
      if (obj instanceof SwitchyardError) {
        ex.error(obj, this.headers);
        return;
      }
      try {
        const faults = this.setFaults(parseFaultsPatch(obj));
        ex.json(200, { faults }, this.headers);
      } catch (e) {
        if (e instanceof OptionsError) ex.fail('invalid_request', e.message, this.headers);
        else ex.error(toSwitchyardError(e), this.headers);
      }
    });
  }
}
