/**
 * RedisLink: the ONE place that owns this replica's Redis connections (issue 9, docs/deployment.md).
 *
 * - Two connections: commands (get/mget, pipelined batches, Lua scripts, publish) and a subscriber.
 * - Fail fast: no offline queue, in-flight commands are not retried across a reconnect, and every command
 *   has a short timeout. While Redis is down every call resolves at once to `undefined` / `false` and the
 *   caller goes on with its local state: nothing on a request's path waits for a Redis that is not there.
 * - A state machine up/down with ONE log line per transition (never one per failed call). "Up" means both
 *   connections are ready; a run of command timeouts (a hung Redis keeps its TCP connections) also counts
 *   as down, until the heartbeat PING answers again.
 * - Metrics: `switchyard_redis_up`, `switchyard_redis_errors_total{op}`, `switchyard_redis_resyncs_total`.
 * - Resync: each user registers a hook (re-publish local state, reload shared state) run on every
 *   down -> up transition, and once at the first connection.
 *
 * Payloads of publish/subscribe are msgpackr maps wrapped as {o: origin replica id, d: data}; a replica
 * never receives its own messages. Typed arrays and Buffers arrive as what was sent (same type and bytes).
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { Redis, type ChainableCommander, type RedisOptions } from 'ioredis';
import { Packr } from 'msgpackr';
import type { Logger } from '../util/log.js';
import { labels, PromWriter } from '../metrics/prom-text.js';

export interface RedisLinkOptions {
  /** redis://[user:pass@]host:port[/db] (rediss:// for TLS). */
  readonly url: string;
  /** Prepended to every key and channel (default `switchyard:`): several deployments can share one Redis. */
  readonly keyPrefix?: string;
  /** This replica's id in shared state (default: host-pid-random). */
  readonly replicaId?: string;
  /** A command not answered within this is failed (default 500 ms). */
  readonly commandTimeoutMs?: number;
  /** TCP connect timeout (default 1000 ms). */
  readonly connectTimeoutMs?: number;
  /** Heartbeat PING interval; also how soon a hung Redis that recovers is seen as up (default 1000 ms). */
  readonly heartbeatMs?: number;
  /** Consecutive command timeouts that count as "down" (default 3). */
  readonly timeoutsForDown?: number;
  readonly logger: Logger;
}

export type LinkState = 'up' | 'down';

/** A Lua script registered once, run by EVALSHA (falling back to EVAL after a Redis restart). */
export type ScriptRunner = (keys: readonly string[], args: readonly (string | number | Buffer)[]) => Promise<unknown | undefined>;

export type MessageHandler = (data: unknown, origin: string) => void;

export type ResyncHook = () => Promise<void> | void;

const DEFAULT_PREFIX = 'switchyard:';

export class RedisLink {
  readonly replicaId: string;
  readonly prefix: string;
  /** Errors by operation (`switchyard_redis_errors_total{op}`). */
  readonly errors = new Map<string, number>();
  resyncs = 0;
  /** Transitions to up / down since start (tests, /stats). */
  readonly transitions = { up: 0, down: 0 };

  private readonly cmd: Redis;
  private readonly sub: Redis;
  /**
   * moreTypes: typed arrays keep their type across replicas (a Uint32Array arrives as a Uint32Array, not
   * as its bytes in a Buffer); a Buffer still travels as msgpack bin. Older replicas decode these
   * extensions too (msgpackr always registers them for unpacking).
   */
  private readonly packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: true });
  private readonly handlers = new Map<string, MessageHandler[]>();
  private readonly pendingSubscriptions = new Set<string>();
  private readonly rawUrl: string;
  private readonly resyncHooks: { name: string; fn: ResyncHook }[] = [];
  private readonly stateListeners: ((s: LinkState) => void)[] = [];
  private readonly log: Logger;
  private readonly timeoutsForDown: number;
  private state: LinkState = 'down';
  private everUp = false;
  private cmdReady = false;
  private subReady = false;
  private consecutiveTimeouts = 0;
  private hungDown = false;
  private heartbeat: NodeJS.Timeout | undefined;
  private closed = false;
  private scriptSeq = 0;
  private resyncing: Promise<void> | undefined;

  constructor(options: RedisLinkOptions) {
    this.log = options.logger;
    this.rawUrl = options.url;
    this.prefix = options.keyPrefix ?? DEFAULT_PREFIX;
    this.replicaId = options.replicaId ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
    this.timeoutsForDown = options.timeoutsForDown ?? 3;
    const common: RedisOptions = {
      lazyConnect: true,
      enableOfflineQueue: false,
      // In-flight commands fail on a disconnect instead of waiting for the reconnect.
      maxRetriesPerRequest: 0,
      commandTimeout: options.commandTimeoutMs ?? 500,
      connectTimeout: options.connectTimeoutMs ?? 1000,
      // Reconnect forever, quickly at first, then every second.
      retryStrategy: (times) => Math.min(50 * times, 1000),
      enableAutoPipelining: true,
      // A reply error (WRONGTYPE, NOSCRIPT...) is the caller's; never reconnect because of one.
      reconnectOnError: () => false,
    };
    this.cmd = new Redis(options.url, { ...common, connectionName: `switchyard-${this.replicaId}` });
    this.sub = new Redis(options.url, { ...common, commandTimeout: undefined, enableAutoPipelining: false, connectionName: `switchyard-sub-${this.replicaId}` });
    // ioredis emits 'error' for every failed reconnect attempt: counted, never logged one by one.
    this.cmd.on('error', () => this.count('connection'));
    this.sub.on('error', () => this.count('connection'));
    this.cmd.on('ready', () => {
      this.cmdReady = true;
      this.evaluate('command connection ready');
    });
    this.cmd.on('close', () => {
      this.cmdReady = false;
      this.evaluate('command connection closed');
    });
    this.sub.on('ready', () => {
      this.subReady = true;
      this.evaluate('subscriber connection ready');
    });
    this.sub.on('close', () => {
      this.subReady = false;
      this.evaluate('subscriber connection closed');
    });
    this.sub.on('messageBuffer', (channel: Buffer, message: Buffer) => this.onMessage(channel.toString(), message));
  }

  /**
   * Connect both connections, waiting at most `waitMs` (default 2 s) for Redis to answer. Never throws:
   * a Redis that is not there yet is "down" and the link keeps reconnecting in the background.
   */
  async start(waitMs = 2000): Promise<void> {
    this.heartbeat = setInterval(() => void this.ping(), 1000);
    this.heartbeat.unref();
    const connected = Promise.allSettled([this.cmd.connect(), this.sub.connect()]).then(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([connected, new Promise<void>((r) => (timer = setTimeout(r, waitMs)))]);
    clearTimeout(timer);
    if (this.state === 'up' && this.resyncing !== undefined) await this.resyncing;
    if (this.state === 'down') this.log.warn({ event: 'redis.down', url: this.url, replica: this.replicaId }, 'Redis is not reachable; running on local state until it is');
  }

  get up(): boolean {
    return this.state === 'up';
  }

  /** The Redis URL without its password (logs, /stats). */
  get url(): string {
    return redactUrl(this.rawUrl);
  }

  /** Prefixed key or channel name. */
  key(name: string): string {
    return this.prefix + name;
  }

  onStateChange(fn: (s: LinkState) => void): void {
    this.stateListeners.push(fn);
  }

  /**
   * Run `fn` whenever the link comes (back) up: re-publish local state, reload shared state. Registered
   * hooks run in registration order; a failing hook is counted (op `resync`) and does not stop the others.
   */
  onResync(name: string, fn: ResyncHook): void {
    this.resyncHooks.push({ name, fn });
  }

  // -----------------------------------------------------------------------------------------------
  // publish / subscribe

  /** Publish `data` (msgpackr) on a prefixed channel; fire and forget (dropped while down). */
  publish(channel: string, data: unknown): void {
    if (!this.up) return;
    const payload = Buffer.from(this.packr.pack({ o: this.replicaId, d: data }));
    this.cmd.publish(this.key(channel), payload).then(this.onOk, (err: unknown) => this.failed('publish', err));
  }

  /** Receive other replicas' messages on a prefixed channel (subscribed again after every reconnect). */
  subscribe(channel: string, handler: MessageHandler): void {
    const full = this.key(channel);
    let list = this.handlers.get(full);
    if (list === undefined) {
      list = [];
      this.handlers.set(full, list);
      // Safe while disconnected: ioredis remembers the subscription and (re)issues it when ready.
      if (this.sub.status === 'ready') this.sub.subscribe(full).catch((err: unknown) => this.failed('subscribe', err));
      else this.pendingSubscriptions.add(full);
    }
    list.push(handler);
  }

  // -----------------------------------------------------------------------------------------------
  // commands

  /**
   * Queue commands on one pipeline (`build` adds them; keys must already be prefixed with `key()`) and
   * send them in one write. Resolves true when every command succeeded, false when down or any failed.
   */
  async batch(op: string, build: (p: ChainableCommander) => void): Promise<boolean> {
    if (!this.up) return false;
    const p = this.cmd.pipeline();
    build(p);
    if (p.length === 0) return true;
    try {
      const results = await p.exec();
      let ok = true;
      if (results !== null) {
        for (const [err] of results) {
          if (err !== null) {
            ok = false;
            this.failed(op, err);
          }
        }
      }
      if (ok) this.onOk();
      return ok;
    } catch (err) {
      this.failed(op, err);
      return false;
    }
  }

  /** GET as a Buffer; undefined when down or failed, null when absent. */
  async get(key: string): Promise<Buffer | null | undefined> {
    if (!this.up) return undefined;
    try {
      const v = await this.cmd.getBuffer(key);
      this.onOk();
      return v;
    } catch (err) {
      this.failed('get', err);
      return undefined;
    }
  }

  /** MGET as Buffers (null per absent key); undefined when down or failed. */
  async mget(keys: readonly string[]): Promise<(Buffer | null)[] | undefined> {
    if (keys.length === 0) return [];
    if (!this.up) return undefined;
    try {
      const v = await this.cmd.mgetBuffer(...(keys as string[]));
      this.onOk();
      return v;
    } catch (err) {
      this.failed('mget', err);
      return undefined;
    }
  }

  /**
   * Register a Lua script; the runner resolves to the script's reply, or undefined when down or failed
   * (counted under op `script:<name>`). EVALSHA, with EVAL after NOSCRIPT (a restarted Redis).
   */
  script(name: string, lua: string, numberOfKeys: number): ScriptRunner {
    const cmdName = `syScript${++this.scriptSeq}`;
    this.cmd.defineCommand(cmdName, { lua, numberOfKeys });
    const op = `script:${name}`;
    return async (keys, args) => {
      if (!this.up) return undefined;
      try {
        const fn = (this.cmd as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[cmdName] as (...a: unknown[]) => Promise<unknown>;
        const v = await fn.call(this.cmd, ...keys, ...args);
        this.onOk();
        return v;
      } catch (err) {
        this.failed(op, err);
        return undefined;
      }
    };
  }

  /**
   * Escape hatch for a command this interface lacks (e.g. ZRANGE): `fn` gets the command connection.
   * Undefined when down or failed (counted under `op`).
   */
  async run<T>(op: string, fn: (redis: Redis) => Promise<T>): Promise<T | undefined> {
    if (!this.up) return undefined;
    try {
      const v = await fn(this.cmd);
      this.onOk();
      return v;
    } catch (err) {
      this.failed(op, err);
      return undefined;
    }
  }

  // -----------------------------------------------------------------------------------------------
  // metrics

  /** The link's Prometheus families (appended to /metrics). */
  metricsText(): string {
    const w = new PromWriter();
    w.family('switchyard_redis_up', 'gauge', 'Whether this replica reaches Redis (1) or runs on local state (0)');
    w.sample('switchyard_redis_up', '', this.up ? 1 : 0);
    w.family('switchyard_redis_errors_total', 'counter', 'Failed Redis operations by operation (connection: failed (re)connect attempts)');
    for (const [op, n] of this.errors) w.sample('switchyard_redis_errors_total', labels(['op', op]), n);
    w.family('switchyard_redis_resyncs_total', 'counter', 'Times this replica re-synchronised its shared state after Redis came back');
    w.sample('switchyard_redis_resyncs_total', '', this.resyncs);
    return w.text();
  }

  describe(): Record<string, unknown> {
    return { up: this.up, url: this.url, replica_id: this.replicaId, key_prefix: this.prefix, errors: Object.fromEntries(this.errors), resyncs: this.resyncs, transitions: { ...this.transitions } };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.heartbeat !== undefined) clearInterval(this.heartbeat);
    if (this.resyncing !== undefined) await this.resyncing.catch(() => undefined);
    this.cmd.disconnect();
    this.sub.disconnect();
  }

  // -----------------------------------------------------------------------------------------------

  private readonly onOk = (): void => {
    this.consecutiveTimeouts = 0;
  };

  private count(op: string): void {
    this.errors.set(op, (this.errors.get(op) ?? 0) + 1);
  }

  private failed(op: string, err: unknown): void {
    this.count(op);
    const msg = err instanceof Error ? err.message : String(err);
    if (/timed out/i.test(msg)) {
      this.consecutiveTimeouts++;
      if (this.consecutiveTimeouts >= this.timeoutsForDown && !this.hungDown) {
        this.hungDown = true;
        this.evaluate(`${this.consecutiveTimeouts} commands timed out in a row`);
      }
    }
  }

  private async ping(): Promise<void> {
    if (this.closed || !this.cmdReady) return;
    try {
      await this.cmd.ping();
      this.consecutiveTimeouts = 0;
      if (this.hungDown) {
        this.hungDown = false;
        this.evaluate('Redis answers again');
      }
    } catch (err) {
      this.failed('ping', err);
    }
  }

  private evaluate(reason: string): void {
    if (this.closed) return;
    if (this.subReady && this.pendingSubscriptions.size > 0) {
      const chans = [...this.pendingSubscriptions];
      this.pendingSubscriptions.clear();
      this.sub.subscribe(...chans).catch((err: unknown) => this.failed('subscribe', err));
    }
    const next: LinkState = this.cmdReady && this.subReady && !this.hungDown ? 'up' : 'down';
    if (next === this.state) return;
    this.state = next;
    this.transitions[next]++;
    if (next === 'up') {
      this.consecutiveTimeouts = 0;
      const again = this.everUp;
      this.everUp = true;
      if (again) this.log.warn({ event: 'redis.up', replica: this.replicaId, reason }, 'Redis is back; resynchronising shared state');
      else this.log.info({ event: 'redis.up', replica: this.replicaId }, 'connected to Redis; sharing state with other replicas');
      this.resyncing = this.runResync(again);
    } else if (this.everUp) {
      this.log.warn({ event: 'redis.down', replica: this.replicaId, reason }, 'Redis is unreachable; running on local state until it returns');
    }
    for (const l of this.stateListeners) l(next);
  }

  private async runResync(count: boolean): Promise<void> {
    if (count) this.resyncs++;
    for (const h of this.resyncHooks) {
      if (!this.up) break;
      try {
        await h.fn();
      } catch (err) {
        this.count('resync');
        this.log.debug({ event: 'redis.resync_failed', hook: h.name, err: (err as Error).message }, 'a resync hook failed');
      }
    }
    this.resyncing = undefined;
  }

  private onMessage(channel: string, message: Buffer): void {
    const list = this.handlers.get(channel);
    if (list === undefined) return;
    let env: { o?: unknown; d?: unknown };
    try {
      env = this.packr.unpack(message) as { o?: unknown; d?: unknown };
    } catch {
      this.count('decode');
      return;
    }
    if (env === null || typeof env !== 'object' || typeof env.o !== 'string' || env.o === this.replicaId) return;
    for (const h of list) {
      try {
        h(env.d, env.o);
      } catch (err) {
        this.count('handler');
        this.log.debug({ event: 'redis.handler_failed', channel, err: (err as Error).message }, 'a subscription handler threw');
      }
    }
  }
}

/** The URL without its password, for logs. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
}
