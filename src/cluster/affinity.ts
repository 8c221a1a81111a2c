/**
 * Cache-aware affinity across router replicas, the main-thread side (docs/deployment.md).
 *
 * The cache_aware policy shards (in their actor threads, src/policies/affinity.ts) batch their insert
 * decisions and post them over BroadcastChannels; the AffinityRelay here publishes them on an
 * AffinityBus (Redis pub/sub in a deployment: affinity-redis.ts; InMemoryAffinityHub in tests) and hands
 * what the other replicas publish to the shard that owns each record's shard key. No request waits on
 * any of this: the policy decides on what it already knows, and the bus is fire-and-forget.
 *
 * Resynchronisation: when the bus comes up (first connect, or Redis back after an outage) the relay asks
 * its shards for a summary of what they published recently (re-published, since batches sent while the
 * bus was down were lost) and says hello; a replica that hears a hello sends its summary too (a new or
 * restarted replica thus learns the others' recent prefixes). Shards rate-limit summaries.
 */
import { randomBytes } from 'node:crypto';
import { BroadcastChannel } from 'node:worker_threads';
import { affinityChannelNames, RECORD_HEADER_WORDS, type AffinityBatch, type AffinityInMessage, type AffinityOutMessage } from '../policies/affinity.js';
import type { Logger } from '../util/log.js';

/** What travels between replicas. `o`: the sending replica (a receiver drops its own messages). */
export type AffinityWire =
  | { readonly k: 'batch'; readonly o: string; readonly batch: AffinityBatch; readonly summary?: boolean | undefined }
  | { readonly k: 'hello'; readonly o: string };

/** The shared medium between replicas: pub/sub with an up/down state. */
export interface AffinityBus {
  /** Whether messages can be published now. */
  readonly up: boolean;
  /** Fire and forget; false when not sent (bus down, or the send failed at once). */
  publish(msg: AffinityWire): boolean;
  /** Messages from the bus (including this replica's own, which the relay drops). */
  onMessage(cb: (msg: AffinityWire) => void): void;
  /** The bus came up (first connect or reconnect). Called at once if it is up already. */
  onUp(cb: () => void): void;
  close(): Promise<void>;
}

export interface AffinityRelayOptions {
  /** Channel name given to the policy (its `affinity.channel` option). */
  readonly channel: string;
  /** Policy shards (--policy-shards). */
  readonly shards: number;
  /** This replica's id on the bus (default: random). */
  readonly replicaId?: string;
  readonly logger?: Logger | undefined;
}

export interface AffinityRelayStats {
  readonly replica: string;
  readonly bus_up: boolean;
  readonly published_batches: number;
  readonly published_records: number;
  readonly summary_batches: number;
  /** Batches the bus did not take (down): their prefixes reach the peers with the next summary. */
  readonly unpublished_batches: number;
  readonly received_batches: number;
  readonly received_records: number;
  readonly hellos_received: number;
  readonly resyncs: number;
}

/** Hellos asked for within this window go out as one. */
const HELLO_COALESCE_MS = 20;

/** A fresh channel name for a router's policy shards and relay (unique within the process). */
export function newAffinityChannel(): string {
  return `switchyard-affinity-${process.pid}-${randomBytes(6).toString('hex')}`;
}

/** Records of a batch, counted without copying. */
export function countRecords(r: Int32Array): number {
  let p = 0;
  let n = 0;
  while (p + RECORD_HEADER_WORDS <= r.length) {
    const count = r[p + 2] as number;
    if (count < 0) break;
    p += RECORD_HEADER_WORDS + 2 * count;
    if (p > r.length) break;
    n++;
  }
  return n;
}

/** The records of `batch` owned by each of `shards` shards (shard key modulo shards); well-formed records only. */
export function splitByShard(batch: AffinityBatch, shards: number): AffinityBatch[] {
  const r = batch.r;
  const words = new Array<number>(shards).fill(0);
  let p = 0;
  while (p + RECORD_HEADER_WORDS <= r.length) {
    const count = r[p + 2] as number;
    const end = p + RECORD_HEADER_WORDS + 2 * count;
    if (count < 0 || end > r.length) break;
    const s = ((r[p + 1] as number) >>> 0) % shards;
    words[s] = (words[s] as number) + (end - p);
    p = end;
  }
  const parts = words.map((w) => new Int32Array(w));
  const fill = new Array<number>(shards).fill(0);
  p = 0;
  while (p + RECORD_HEADER_WORDS <= r.length) {
    const count = r[p + 2] as number;
    const end = p + RECORD_HEADER_WORDS + 2 * count;
    if (count < 0 || end > r.length) break;
    const s = ((r[p + 1] as number) >>> 0) % shards;
    (parts[s] as Int32Array).set(r.subarray(p, end), fill[s] as number);
    fill[s] = (fill[s] as number) + (end - p);
    p = end;
  }
  return parts.map((part) => ({ v: 1, b: batch.b, u: batch.u, r: part }));
}

export class AffinityRelay {
  readonly replicaId: string;
  readonly channel: string;
  private readonly bus: AffinityBus;
  private readonly shardCount: number;
  private readonly outs: BroadcastChannel[] = [];
  private readonly ins: BroadcastChannel[] = [];
  private readonly logger: Logger | undefined;
  private closed = false;
  private wasUp = false;
  private helloTimer: NodeJS.Timeout | null = null;
  private publishedBatches = 0;
  private publishedRecords = 0;
  private summaryBatches = 0;
  private unpublishedBatches = 0;
  private receivedBatches = 0;
  private receivedRecords = 0;
  private hellos = 0;
  private resyncs = 0;

  constructor(bus: AffinityBus, options: AffinityRelayOptions) {
    this.bus = bus;
    this.channel = options.channel;
    this.shardCount = options.shards;
    this.replicaId = options.replicaId ?? randomBytes(8).toString('hex');
    this.logger = options.logger;
    for (let i = 0; i < this.shardCount; i++) {
      const names = affinityChannelNames(this.channel, i);
      const out = new BroadcastChannel(names.out);
      out.unref();
      out.onmessage = (ev) => this.fromShard((ev as MessageEvent).data as AffinityOutMessage);
      const inbox = new BroadcastChannel(names.in);
      inbox.unref();
      this.outs.push(out);
      this.ins.push(inbox);
    }
    bus.onMessage((msg) => this.fromBus(msg));
    bus.onUp(() => this.onBusUp());
  }

  private fromShard(msg: AffinityOutMessage): void {
    if (this.closed || msg === null || typeof msg !== 'object') return;
    if (msg.t === 'hello') {
      this.sayHello();
      return;
    }
    if (msg.t !== 'batch') return;
    const records = countRecords(msg.batch.r);
    const wire: AffinityWire = msg.summary === true ? { k: 'batch', o: this.replicaId, batch: msg.batch, summary: true } : { k: 'batch', o: this.replicaId, batch: msg.batch };
    if (!this.bus.publish(wire)) {
      this.unpublishedBatches++;
      return;
    }
    this.publishedBatches++;
    this.publishedRecords += records;
    if (msg.summary === true) this.summaryBatches++;
  }

  private fromBus(msg: AffinityWire): void {
    if (this.closed || msg === null || typeof msg !== 'object' || msg.o === this.replicaId) return;
    if (msg.k === 'hello') {
      this.hellos++;
      this.toShards({ t: 'resync' });
      return;
    }
    if (msg.k !== 'batch' || msg.batch === null || typeof msg.batch !== 'object' || !(msg.batch.r instanceof Int32Array)) return;
    this.receivedBatches++;
    this.receivedRecords += countRecords(msg.batch.r);
    if (this.shardCount === 1) {
      (this.ins[0] as BroadcastChannel).postMessage({ t: 'remote', batch: msg.batch } satisfies AffinityInMessage);
      return;
    }
    const parts = splitByShard(msg.batch, this.shardCount);
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i] as AffinityBatch;
      if (part.r.length > 0) (this.ins[i] as BroadcastChannel).postMessage({ t: 'remote', batch: part } satisfies AffinityInMessage);
    }
  }

  private toShards(msg: AffinityInMessage): void {
    for (const inbox of this.ins) inbox.postMessage(msg);
  }

  private onBusUp(): void {
    if (this.closed) return;
    if (this.wasUp) this.logger?.info({ event: 'affinity.resync', replica: this.replicaId }, 'affinity: bus back, re-publishing recent prefixes');
    this.wasUp = true;
    this.resyncs++;
    this.toShards({ t: 'resync' });
    this.sayHello();
  }

  /** Ask the other replicas for their summaries (shards starting together send one hello). */
  private sayHello(): void {
    if (!this.bus.up || this.helloTimer !== null) return;
    this.helloTimer = setTimeout(() => {
      this.helloTimer = null;
      if (!this.closed) this.bus.publish({ k: 'hello', o: this.replicaId });
    }, HELLO_COALESCE_MS);
    this.helloTimer.unref();
  }

  stats(): AffinityRelayStats {
    return {
      replica: this.replicaId,
      bus_up: this.bus.up,
      published_batches: this.publishedBatches,
      published_records: this.publishedRecords,
      summary_batches: this.summaryBatches,
      unpublished_batches: this.unpublishedBatches,
      received_batches: this.receivedBatches,
      received_records: this.receivedRecords,
      hellos_received: this.hellos,
      resyncs: this.resyncs,
    };
  }

  /** Stop relaying (the bus is the caller's to close). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.helloTimer !== null) clearTimeout(this.helloTimer);
    for (const c of this.outs) c.close();
    for (const c of this.ins) c.close();
  }
}

/**
 * An in-process bus for tests and single-machine experiments: every member hears every message
 * (including its own, as with Redis pub/sub), delivered asynchronously as a structured clone (what a
 * wire would do). `setUp(false)` drops publishes; `setUp(true)` reconnects everyone (onUp callbacks).
 */
export class InMemoryAffinityHub {
  private readonly members = new Set<InMemoryBus>();
  private isUp = true;
  /** Messages published since creation (tests). */
  published = 0;

  get up(): boolean {
    return this.isUp;
  }

  bus(): AffinityBus {
    const b = new InMemoryBus(this);
    this.members.add(b);
    return b;
  }

  setUp(up: boolean): void {
    if (up === this.isUp) return;
    this.isUp = up;
    if (up) for (const m of this.members) m.fireUp();
  }

  /** @internal */
  send(msg: AffinityWire): boolean {
    if (!this.isUp) return false;
    this.published++;
    const members = [...this.members];
    setImmediate(() => {
      for (const m of members) if (this.members.has(m)) m.deliver(structuredClone(msg));
    });
    return true;
  }

  /** @internal */
  leave(b: InMemoryBus): void {
    this.members.delete(b);
  }
}

class InMemoryBus implements AffinityBus {
  private readonly listeners: ((msg: AffinityWire) => void)[] = [];
  private readonly upListeners: (() => void)[] = [];
  constructor(private readonly hub: InMemoryAffinityHub) {}

  get up(): boolean {
    return this.hub.up;
  }

  publish(msg: AffinityWire): boolean {
    return this.hub.send(msg);
  }

  onMessage(cb: (msg: AffinityWire) => void): void {
    this.listeners.push(cb);
  }

  onUp(cb: () => void): void {
    this.upListeners.push(cb);
    if (this.hub.up) setImmediate(cb);
  }

  deliver(msg: AffinityWire): void {
    for (const l of this.listeners) l(msg);
  }

  fireUp(): void {
    for (const l of this.upListeners) setImmediate(l);
  }

  close(): Promise<void> {
    this.hub.leave(this);
    return Promise.resolve();
  }
}
